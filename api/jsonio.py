"""JSON in and out of requests, with orjson for speed and strictness (no NaN, no >64-bit ints)."""

import orjson
from flask import Response, request

from registry.errors import ValidationError


def read_json(*, required):
    """The request's JSON body; None when optional and empty. Bad JSON is a 400."""
    # Flask enforces MAX_CONTENT_LENGTH here (413), with or without a Content-Length header.
    raw = request.get_data(cache=False)
    if not raw.strip():
        if required:
            raise ValidationError("the request body is empty; send a JSON object")
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise ValidationError(f"the request body is not valid JSON: {error}") from None


def respond(payload, status=200, headers=None):
    return respond_encoded(b"" if payload is None else orjson.dumps(payload), status, headers)


def respond_encoded(body, status=200, headers=None):
    """An answer whose JSON body is already encoded."""
    return Response(body, status=status, headers=headers, mimetype="application/json")
