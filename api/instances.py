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


@blueprint.route(REGISTER[1], methods=[REGISTER[0]])
@requires(INSTANCE_EDIT)
def register_instance():
    fields = instances.validate_registration(read_json(required=True))
    result = current_peer().register_instance(fields, current_caller())
    return write_answer(result, 201, {})


@blueprint.route(LIST[1], methods=[LIST[0]])
@requires(INSTANCE_VIEW)
@reads(INSTANCES, slug_of=lambda pairs: instances.validate_filters(pairs).get("slug"))
def list_instances():
    filters = instances.validate_filters(g.query_pairs)
    index, body = current_app.extensions["registry_listings"].listing(current_peer(), filters, current_caller())
    g.read_index = index
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
    result = current_peer().renewals.renew(instance_id, fields, current_caller())
    return write_answer(result, 200, {})
