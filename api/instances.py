"""Serving instances: PUT /registry-svc/instance, GET /registry-svc/instances, DELETE one."""

from flask import Blueprint, request

from registry import instances

from .jsonio import read_json
from .results import current_peer, read_answer, write_answer

blueprint = Blueprint("instances", __name__)


@blueprint.put("/registry-svc/instance")
def register_instance():
    fields = instances.validate_registration(read_json(required=True))
    result = current_peer().register_instance(fields)
    return write_answer(result, 201, {})


@blueprint.get("/registry-svc/instances")
def list_instances():
    filters = instances.validate_filters(request.args.items(multi=True))
    return read_answer(current_peer().list_instances(filters), lambda records: {"instances": records})


@blueprint.delete("/registry-svc/instance/<instance_id>")
def remove_instance(instance_id):
    result = current_peer().remove_instance(instance_id)
    return write_answer(result, 204, None)
