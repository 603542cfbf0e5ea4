"""Serving instances: PUT /registry-svc/instance, GET /registry-svc/instances, DELETE one."""

from flask import Blueprint, current_app, g

from registry import instances
from registry.commands import INSTANCES
from registry.permissions import INSTANCE_DELETE, INSTANCE_EDIT, INSTANCE_VIEW

from .auth import current_caller, requires
from .consistency import reads
from .jsonio import read_json, respond_encoded
from .results import current_peer, write_answer

blueprint = Blueprint("instances", __name__)

# (method, path, endpoint) of the two routes api/hot_path.py also serves, in front of Flask, with
# the same steps as the views below.
REGISTER = ("PUT", "/registry-svc/instance", "instances.register_instance")
LIST = ("GET", "/registry-svc/instances", "instances.list_instances")


def register(peer, caller, body):
    """The apply result of registering the decoded JSON `body` for an allowed caller: the one
    way both this view and the hot path register (ValidationError for a refused body)."""
    return peer.register_instance(instances.validate_registration(body), caller)


def register_later(peer, caller, body, on_done):
    """register without a waiting thread, where the peer's face can (peer.registers_later()):
    on_done(result, None) or on_done(None, error) follows on the thread that learns it."""
    peer.register_instance_later(instances.validate_registration(body), caller, on_done)


def listing(listings, peer, caller, pairs):
    """(X-Registry-Index, the encoded list) for the query `pairs` of an allowed caller: the one
    way both this view and the hot path list (ValidationError for a refused filter)."""
    return listings.listing(peer, instances.validate_filters(pairs), caller)


@blueprint.route(REGISTER[1], methods=[REGISTER[0]])
@requires(INSTANCE_EDIT)
def register_instance():
    result = register(current_peer(), current_caller(), read_json(required=True))
    return write_answer(result, 201, {})


@blueprint.route(LIST[1], methods=[LIST[0]])
@requires(INSTANCE_VIEW)
@reads(INSTANCES, slug_of=lambda pairs: instances.validate_filters(pairs).get("slug"))
def list_instances():
    g.read_index, body = listing(current_app.extensions["registry_listings"], current_peer(), current_caller(),
                                 g.query_pairs)
    return respond_encoded(body)


@blueprint.delete("/registry-svc/instance/<instance_id>")
@requires(INSTANCE_DELETE)
def remove_instance(instance_id):
    result = current_peer().remove_instance(instance_id, current_caller())
    return write_answer(result, 204, None)


@blueprint.put("/registry-svc/instance/<instance_id>/heartbeat")
@requires(INSTANCE_EDIT)
def renew_instance(instance_id):
    """Extension: the instance says it is alive (Consul TTL check, Eureka renewal)."""
    fields = instances.validate_heartbeat(read_json(required=False))
    result = current_peer().renew_instance(instance_id, fields, current_caller())
    return write_answer(result, 200, {})
