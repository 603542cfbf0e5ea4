"""Who is asking, and may they: bearer tokens on every endpoint but the open ones."""

import functools

from flask import current_app, g, request

from registry.permissions import missing

from .errors import ApiError
from .results import current_peer
from .tokens import InvalidToken, verify

# Endpoints anyone may call: liveness and readiness probes, the OpenAPI document, and the
# dashboard's page and assets (they hold no registry data; the page asks for a token).
OPEN_ENDPOINTS = frozenset({"operations.healthz", "operations.readyz", "openapi.document", "ui.page", "ui.asset"})


def install(app, key):
    app.extensions["registry_token_key"] = key
    app.before_request(_authenticate)


def _authenticate():
    # Unmatched routes fall through to their 404/405; open endpoints need no token.
    if request.url_rule is None or request.endpoint in OPEN_ENDPOINTS:
        return
    g.caller = caller_of(current_app.extensions["registry_token_key"], request.headers.get("Authorization", ""))


def caller_of(key, authorization):
    """The caller an Authorization header's bearer token names; ApiError 401 if none can be trusted."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("missing bearer token: send the header 'Authorization: Bearer <token>'")
    try:
        return verify(key, token.strip())
    except InvalidToken as error:
        raise _unauthorized(str(error)) from None


def _unauthorized(message):
    return ApiError(401, message, {"WWW-Authenticate": 'Bearer realm="registry-svc"'})


def current_caller():
    return g.caller


def requires(permission):
    """Refuse with 403 unless the caller's permits (as this peer's replica has them) grant it.

    Writes are checked again, authoritatively, inside apply."""
    def decorate(view):
        @functools.wraps(view)
        def checked(*args, **kwargs):
            check_permission(current_peer(), current_caller(), permission)
            return view(*args, **kwargs)
        return checked
    return decorate


def check_permission(peer, caller, permission):
    """ApiError 403 unless the caller's permits, as this peer's replica has them, grant it."""
    granted = peer.grants(caller)
    if permission not in granted:
        raise ApiError(403, missing(permission))
