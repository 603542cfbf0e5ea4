"""Serving permits (extension): admins list and replace who may do what, cluster-wide; any caller
asks what its own token may do."""

from flask import Blueprint

from registry.commands import PERMITS
from registry.permissions import PERMIT_EDIT, PERMIT_VIEW, validate_permits

from .auth import current_caller, requires
from .consistency import reads
from .jsonio import read_json, respond
from .results import current_peer, read_answer, write_answer

blueprint = Blueprint("permits", __name__)


@blueprint.get("/registry-svc/permits")
@requires(PERMIT_VIEW)
@reads(PERMITS)
def list_permits():
    return read_answer(current_peer().permits(), lambda permits: {"permits": permits})


@blueprint.put("/registry-svc/permits")
@requires(PERMIT_EDIT)
def set_permits():
    permits = validate_permits(read_json(required=True))
    return write_answer(current_peer().set_permits(permits, current_caller()), 200, {"permits": permits})


@blueprint.get("/registry-svc/grants")
def caller_grants():
    """Extension: what the caller's token may do, as this peer's permits have it (the dashboard
    offers only the actions it may take). Any valid token may ask."""
    caller = current_caller()
    return respond({"slug": caller["slug"], "roles": caller["roles"], "permissions": current_peer().grants(caller)})
