"""GET /openapi.json: the HTTP API as an OpenAPI 3.1 document.

The document is generated, never written by hand where code already says it:
- the paths and methods are the app's own routes (app.url_map), each described by its entry in
  OPERATIONS (api/openapi_operations.py), keyed by Flask endpoint and method; a route without an entry is left out of
  the document and fails a test (tests/api/test_openapi_api.py), and so does an entry without
  a route;
- the request bodies' JSON Schemas come from the same field specs the validators read requests
  with (registry/fields.py: REGISTRATION, HEARTBEAT in registry/instances.py, LIST_REQUEST in
  registry/nodes.py, PERMITS in registry/permissions.py), so the document and the validation
  cannot drift;
- the response schemas are written once (api/openapi_schemas.py), and a schemathesis run against a live peer
  (tests/cluster/test_openapi_schemathesis.py) checks every answer against them.

The document is open (no token), like /healthz: it holds no secret, only the API's shape.
"""

import re

from flask import Blueprint, current_app

from registry import VERSION

from .jsonio import respond
from .openapi_operations import (  # noqa: F401  (REGISTRY_HEADERS: tests read it here)
    HEADERS, OPERATIONS, READ_PARAMETERS, REGISTRY_HEADERS, STATUS_TEXT, TOKEN_ONLY,
)
from .openapi_schemas import REQUEST_BODIES, schema_ref, body_schema, response_schemas

blueprint = Blueprint("openapi", __name__)

OPENAPI_VERSION = "3.1.0"
SECURITY_SCHEME = "bearerAuth"

IGNORED_METHODS = {"HEAD", "OPTIONS"}
_ARGUMENT = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def routes(app):
    """((endpoint, method), rule) for every route and method the app serves, HEAD and OPTIONS aside."""
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        for method in sorted(rule.methods - IGNORED_METHODS):
            yield (rule.endpoint, method), rule


def undocumented_routes(app):
    return sorted(f"{method} {rule.rule} ({endpoint})" for (endpoint, method), rule in routes(app)
                  if (endpoint, method) not in OPERATIONS)


def _operation_object(operation, rule):
    result = {"operationId": operation.operation_id, "summary": operation.summary, "tags": [operation.tag]}
    if operation.extension:
        result["x-registry-extension"] = True
    if operation.permission is None:
        result["security"] = []
    elif operation.permission == TOKEN_ONLY:
        result["security"] = [{SECURITY_SCHEME: []}]
        result["description"] = "Any valid token."
    else:
        result["security"] = [{SECURITY_SCHEME: []}]
        result["x-registry-permission"] = operation.permission
        result["description"] = f"Needs the permission {operation.permission}."
    parameters = []
    for argument in rule.arguments:
        name, schema, description, example = operation.path[argument]
        parameters.append({"name": name, "in": "path", "required": True, "description": description,
                           "schema": schema, "example": example})
    parameters.extend(operation.query)
    if operation.read:
        parameters.extend({"$ref": f"#/components/parameters/{name}"} for name in READ_PARAMETERS)
    if parameters:
        result["parameters"] = parameters
    if operation.body is not None:
        result["requestBody"] = {"required": operation.body_required, "description": operation.body.description,
                                 "content": {"application/json": {"schema": schema_ref(operation.body.name)}}}
    statuses = set(operation.errors)
    if operation.permission is not None:
        statuses |= {401} if operation.permission == TOKEN_ONLY else {401, 403}
    if operation.body is not None:
        statuses |= {400, 413}
    if operation.read:
        statuses |= {400, 503}
    if operation.write:
        statuses |= {503}
    responses = {}
    status, schema = operation.success
    responses[str(status)] = _response(STATUS_TEXT[status], schema)
    for status, schema, description in operation.also:
        responses[str(status)] = _response(description, schema)
    for status in sorted(statuses):
        responses[str(status)] = _response(STATUS_TEXT[status], "Error", status)
    result["responses"] = responses
    return result


def _response(description, schema, status=None):
    headers = {name: {"$ref": f"#/components/headers/{name}"} for name in REGISTRY_HEADERS}
    if status == 503:
        headers["Retry-After"] = {"$ref": "#/components/headers/Retry-After"}
    if status == 401:
        headers["WWW-Authenticate"] = {"$ref": "#/components/headers/WWW-Authenticate"}
    response = {"description": description, "headers": headers}
    if isinstance(schema, dict):
        response["content"] = schema
    elif schema == "text":
        response["content"] = {"text/plain": {"schema": {"type": "string"}}}
    elif schema is not None:
        response["content"] = {"application/json": {"schema": schema_ref(schema)}}
    return response


def openapi_path(rule, operation):
    """The rule's path with OpenAPI's {name} for each Flask <converter:argument>."""
    return _ARGUMENT.sub(lambda match: "{" + operation.path[match.group(1)][0] + "}", rule.rule)


def document(app):
    rules = {}
    for key, rule in routes(app):
        # Undocumented routes are left out (undocumented_routes() names them, and a test fails);
        # of several rules of one view (/ui and /ui/) the shortest is documented.
        if key in OPERATIONS and (key not in rules or len(rule.rule) < len(rules[key].rule)):
            rules[key] = rule
    paths = {}
    for key, rule in rules.items():
        operation = OPERATIONS[key]
        paths.setdefault(openapi_path(rule, operation), {})[key[1].lower()] = _operation_object(operation, rule)
    schemas = {body.name: body_schema(body) for body in REQUEST_BODIES}
    schemas.update(response_schemas())
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Registry Svc",
            "version": VERSION,
            "description": "The service registry of 1Backend, replicated with Raft. Paths, fields, status codes "
                           "and operation ids of 1Backend's Registry Svc are kept; operations and fields marked "
                           "x-registry-extension are additive. Every error is {\"error\": \"...\"}. Any peer "
                           "answers every operation: reads from its replica, writes through the leader.",
        },
        "tags": [{"name": "instances"}, {"name": "nodes"}, {"name": "permits"}, {"name": "operations"}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": schemas,
            "parameters": READ_PARAMETERS,
            "headers": HEADERS,
            "securitySchemes": {SECURITY_SCHEME: {
                "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                "description": "A token from `registry token create` (HS256, signed with a key derived from "
                               "the cluster secret)"}},
        },
        "security": [{SECURITY_SCHEME: []}],
    }


@blueprint.get("/openapi.json", endpoint="document")
def document_view():
    cached = current_app.extensions.get("registry_openapi")
    if cached is None:
        cached = current_app.extensions["registry_openapi"] = document(current_app)
    return respond(cached)
