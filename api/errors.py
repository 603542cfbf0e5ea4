"""Every error as `{"error": "..."}` with the right status, whatever raised it."""

import logging
import uuid

from flask import request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound, RequestEntityTooLarge

from cluster.submit import WriteUnavailable
from registry.errors import ValidationError

from .jsonio import respond

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = "1"


class ApiError(Exception):
    def __init__(self, status, message, headers=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def unavailable(message):
    return ApiError(503, message, {"Retry-After": RETRY_AFTER_SECONDS})


def register_error_handlers(app):
    @app.errorhandler(ApiError)
    def api_error(error):
        headers = dict(error.headers)
        if error.status == 503:
            # The contract: every 503 says when to retry, whichever code raised it.
            headers.setdefault("Retry-After", RETRY_AFTER_SECONDS)
        return respond({"error": error.message}, error.status, headers)

    @app.errorhandler(ValidationError)
    def validation_error(error):
        return respond({"error": error.message}, 400)

    @app.errorhandler(WriteUnavailable)
    def write_unavailable(error):
        recorder = app.extensions.get("registry_request_metrics")
        if recorder is not None:
            recorder.write_failure(error.outcome_unknown)
        return respond({"error": error.message}, 503, {"Retry-After": RETRY_AFTER_SECONDS})

    @app.errorhandler(HTTPException)
    def http_error(error):
        headers = {}
        if isinstance(error, RequestEntityTooLarge):
            message = f"the request body is larger than {app.config['MAX_CONTENT_LENGTH']} bytes"
        elif isinstance(error, NotFound):
            message = f"no endpoint at {request.method} {request.path}"
        elif isinstance(error, MethodNotAllowed):
            allowed = sorted(set(error.valid_methods or ()) - {"HEAD", "OPTIONS"})
            message = f"{request.method} is not allowed on {request.path}; use {', '.join(allowed)}"
            headers["Allow"] = ", ".join(error.valid_methods or ())
        else:
            message = error.description or error.name
        return respond({"error": message}, error.code or 500, headers)

    @app.errorhandler(Exception)
    def unexpected(error):
        return respond({"error": report_unexpected(request.method, request.path)}, 500)


def report_unexpected(method, path, error=None):
    """Log the exception being handled (or `error`, on a thread that only learnt of it) under a
    new incident id; what the caller is told."""
    incident = uuid.uuid4().hex[:12]
    log.error("unhandled error in %s %s (incident %s)", method, path, incident,
              exc_info=error if error is not None else True)
    return f"internal error (incident {incident}); the server log has details"
