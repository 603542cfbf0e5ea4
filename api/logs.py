"""Logging: one line per event, as text for people or JSON for machines; access lines carry
the request id (the caller's X-Request-Id, or one made here) and never a token."""

import logging
import re
import sys
import time
import uuid

import orjson
from flask import g, request

access_log = logging.getLogger("registry.access")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class JsonFormatter(logging.Formatter):
    def format(self, record):
        line = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(getattr(record, "fields", {}))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line).decode()


def configure(level, log_format):
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=getattr(logging, level.upper()), handlers=[handler], force=True)


def install(app):
    @app.before_request
    def assign_request_id():
        offered = request.headers.get("X-Request-Id", "")
        g.request_id = offered if _REQUEST_ID.match(offered) else uuid.uuid4().hex
        g.access_started = time.perf_counter()

    @app.after_request
    def log_access(response):
        response.headers["X-Request-Id"] = g.get("request_id", "")
        if access_log.isEnabledFor(logging.INFO):
            caller = g.get("caller") or {}
            fields = {
                "requestId": g.get("request_id"), "method": request.method, "path": request.path,
                "status": response.status_code, "caller": caller.get("slug"),
                "ms": round((time.perf_counter() - g.get("access_started", time.perf_counter())) * 1000, 2),
            }
            access_log.info("%s %s %d %.2fms caller=%s request=%s", fields["method"], fields["path"],
                            fields["status"], fields["ms"], fields["caller"], fields["requestId"],
                            extra={"fields": fields})
        return response
