"""Turning what a peer did into an HTTP answer: apply results, and the current peer itself."""

from flask import current_app, g

from registry import errors

from .errors import ApiError
from .jsonio import respond

_STATUS_OF = {errors.NOT_FOUND: 404, errors.CONFLICT: 409, errors.INVALID: 400, errors.FORBIDDEN: 403}


def current_peer():
    return current_app.extensions["registry_peer"]


def read_answer(read, shape):
    """The HTTP answer for a (index, data) read: the data shaped, the index in the headers."""
    index, data = read
    g.read_index = index
    return respond(shape(data))


def write_answer(result, status, payload):
    """The HTTP answer for a committed command's apply result."""
    g.write_index = result.get("index")
    if result["code"] != errors.OK:
        raise ApiError(_STATUS_OF.get(result["code"], 500), result["error"])
    return respond(payload, status)
