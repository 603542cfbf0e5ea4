"""Logging: one line per event, as text for people or JSON for machines; access lines carry
the request id (the caller's X-Request-Id, or one made here) and never a token."""

import logging
import random
import re
import sys
import time

import orjson
from flask import g, request

access_log = logging.getLogger("registry.access")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
# Seeded from the OS once: ids only need to be distinct, and uuid4 asks the OS every request.
_request_ids = random.Random()


class JsonFormatter(logging.Formatter):
    def __init__(self, process_name=None):
        super().__init__()
        self.process_name = process_name

    def format(self, record):
        line = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.process_name:
            line["process"] = self.process_name
        line.update(getattr(record, "fields", {}))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line).decode()


def configure(level, log_format, process_name=None):
    """process_name: which of a peer's processes logs (its HTTP workers share its log)."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter(process_name))
    else:
        origin = f"[{process_name}] " if process_name else ""
        handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s {origin}%(name)s: %(message)s"))
    logging.basicConfig(level=getattr(logging, level.upper()), handlers=[handler], force=True)


def request_id(offered):
    """The caller's X-Request-Id when it is a sane one, else a new one."""
    return offered if _REQUEST_ID.match(offered) else "%032x" % _request_ids.getrandbits(128)


def log_access(request_id_, method, path, status, caller, started):
    """One access line, when the access log is on (`caller` is the verified caller, or None)."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    fields = {
        "requestId": request_id_, "method": method, "path": path, "status": status,
        "caller": (caller or {}).get("slug"), "ms": round((time.perf_counter() - started) * 1000, 2),
    }
    access_log.info("%s %s %d %.2fms caller=%s request=%s", fields["method"], fields["path"],
                    fields["status"], fields["ms"], fields["caller"], fields["requestId"],
                    extra={"fields": fields})


def install(app):
    @app.before_request
    def assign_request_id():
        g.request_id = request_id(request.headers.get("X-Request-Id", ""))
        g.access_started = time.perf_counter()

    @app.after_request
    def access_line(response):
        response.headers["X-Request-Id"] = g.get("request_id", "")
        log_access(g.get("request_id"), request.method, request.path, response.status_code, g.get("caller"),
                   g.get("access_started", time.perf_counter()))
        return response
