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
    status, problem = result_status(result, status)
    if problem is not None:
        raise ApiError(status, problem)
    return respond(payload, status)


def result_status(result, success_status):
    """The HTTP status of a committed command's apply result, and what went wrong (None if nothing)."""
    if result["code"] == errors.OK:
        return success_status, None
    return _STATUS_OF.get(result["code"], 500), result["error"]


def registry_headers(peer, index):
    """What every answer says of this peer's replica: the Raft index of the data (the last
    change it reflects, or this request's write), whether a leader is known, and how long ago
    the leader was last heard."""
    return [
        ("X-Registry-Index", str(index if index is not None else peer.state_index())),
        ("X-Registry-Known-Leader", "true" if peer.known_leader() is not None else "false"),
        ("X-Registry-Last-Contact", str(peer.last_contact_ms())),
    ]
