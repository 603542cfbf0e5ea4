"""GET /openapi.json: the HTTP API as an OpenAPI 3.1 document.

The document is generated, never written by hand where code already says it:
- the paths and methods are the app's own routes (app.url_map), each described by its entry in
  OPERATIONS below, keyed by Flask endpoint and method; a route without an entry is left out of
  the document and fails a test (tests/api/test_openapi_api.py), and so does an entry without
  a route;
- the request bodies' JSON Schemas come from the same field specs the validators read requests
  with (registry/fields.py: REGISTRATION, HEARTBEAT in registry/instances.py, LIST_REQUEST in
  registry/nodes.py, PERMITS in registry/permissions.py), so the document and the validation
  cannot drift;
- the response schemas are written once, here, and a schemathesis run against a live peer
  (tests/cluster/test_openapi_schemathesis.py) checks every answer against them.

The document is open (no token), like /healthz: it holds no secret, only the API's shape.
"""

import dataclasses
import re

from flask import Blueprint, current_app

from cluster.membership import ADD_PEER_REQUEST

from registry import VERSION
from registry import fields as f
from registry.instances import FILTERS, ID, REGISTRATION, HEARTBEAT, STATUSES
from registry.nodes import LIST_REQUEST
from registry.permissions import (
    CLUSTER_ADMIN, INSTANCE_DELETE, INSTANCE_EDIT, INSTANCE_VIEW, NODE_DELETE, NODE_VIEW, PERMISSIONS, PERMIT,
    PERMIT_EDIT, PERMIT_VIEW, PERMITS,
)

from .jsonio import respond

blueprint = Blueprint("openapi", __name__)

OPENAPI_VERSION = "3.1.0"
SECURITY_SCHEME = "bearerAuth"

# -- JSON Schemas from the validators' field specs ------------------------------------------------

_NOT_NULL = {"not": {"type": "null"}}


def field_schema(spec, *, nullable=True):
    """The JSON Schema of one field spec; nullable where the validator takes null as absent."""
    if isinstance(spec, f.Text):
        schema = {"type": "string"}
        if not spec.allow_empty:
            schema["minLength"] = 1
        schema["maxLength"] = spec.max_length
        if spec.enum is not None:
            schema["enum"] = list(spec.enum)
        elif spec.pattern:
            schema["pattern"] = spec.pattern
        else:
            allowed = f.CONTROL_CHARACTERS_EXCEPT_WHITESPACE if spec.multiline else f.CONTROL_CHARACTERS
            schema["pattern"] = f"^[^{allowed}]*$"
    elif isinstance(spec, f.Integer):
        schema = {"type": "integer", "minimum": spec.minimum, "maximum": spec.maximum}
    elif isinstance(spec, f.TextList):
        if spec.enum is not None:
            item = {"type": "string", "enum": list(spec.enum)}
        else:
            item = {"type": "string", "minLength": 1, "maxLength": spec.max_length,
                    "pattern": f"^[^{f.CONTROL_CHARACTERS}]*$"}
        schema = {"type": "array", "maxItems": spec.max_items, "items": item}
    elif isinstance(spec, f.Flag):
        return _described({"type": "boolean", "default": spec.default}, spec)
    elif isinstance(spec, f.Items):
        return _described({"type": "array", "maxItems": spec.max_items, "items": _ref(spec.body.name)}, spec)
    else:
        raise TypeError(f"no JSON Schema for field spec {spec!r}")
    if nullable:
        schema["type"] = [schema["type"], "null"]
        if "enum" in schema:
            schema["enum"] = schema["enum"] + [None]
    return _described(schema, spec)


def _described(schema, spec):
    if spec.description:
        schema["description"] = spec.description
    example = getattr(spec, "example", None)
    if example is not None:
        schema["examples"] = [example]
    return schema


def body_schema(body):
    """The JSON Schema of a request body: its fields, and the rules that join them."""
    schema = {
        "type": "object",
        "description": body.description,
        "properties": {name: field_schema(spec, nullable=name not in body.required)
                       for name, spec in body.fields.items()},
        "additionalProperties": False,
    }
    if body.required:
        schema["required"] = list(body.required)
    if body.alternatives:
        schema["anyOf"] = [{"required": list(group), "properties": {name: _NOT_NULL for name in group}}
                           for group in body.alternatives]
    if body.exactly_one_of:
        schema["oneOf"] = [{"required": [name], "properties": {name: _NOT_NULL}} for name in body.exactly_one_of]
    if body.example is not None:
        schema["examples"] = [body.example]
    return schema


def _ref(name):
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema):
    return {"anyOf": [schema, {"type": "null"}]}


# -- Response schemas, written once ---------------------------------------------------------------

TIMESTAMP = {"type": "string", "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{9}Z$",
             "description": "RFC 3339 with nanoseconds, UTC", "examples": ["2026-11-27T22:41:03.123456789Z"]}
RAFT_STATE = {"type": "string", "enum": ["leader", "follower", "candidate", "unknown"]}
COUNT = {"type": "integer", "minimum": 0}


def _object(properties, required=(), *, closed=True, description=None):
    schema = {"type": "object", "properties": properties, "required": list(required)}
    if closed:
        schema["additionalProperties"] = False
    if description:
        schema["description"] = description
    return schema


def _instance_schema():
    # A record holds what a registration gave (normalised), so it answers to the same field specs.
    properties = {name: field_schema(spec, nullable=False) for name, spec in REGISTRATION.fields.items()}
    properties["lastHeartbeat"] = dict(TIMESTAMP, description="When the instance was last registered, renewed "
                                                              "or found reachable")
    properties["unreachableSince"] = dict(TIMESTAMP, description="Extension: since when it is Unreachable")
    return _object(properties, ("id", "url", "status", "lastHeartbeat"),
                   description="One live process of a service")


def _usage_schema():
    return _object({"used": COUNT, "total": COUNT, "percent": {"type": "number", "minimum": 0}},
                   ("used", "total", "percent"))


def _gpu_schema():
    def maybe(schema):
        return {"type": [schema, "null"]}
    return _object({
        "id": {"type": "string", "description": "node url + ':' + index"},
        "intraNodeId": COUNT,
        "name": maybe("string"), "busId": maybe("string"), "temperature": maybe("number"),
        "performanceState": maybe("string"), "powerUsage": maybe("number"), "powerCap": maybe("number"),
        "memoryUsage": maybe("integer"), "memoryTotal": maybe("integer"), "gpuUtilization": maybe("number"),
        "computeMode": maybe("string"), "cudaVersion": maybe("string"),
        "processDetails": {"type": "array", "items": _object(
            {"pid": {"type": "integer"}, "processName": {"type": "string"}, "memoryUsage": {"type": "integer"}},
            ("pid", "processName", "memoryUsage"), closed=False)},
    }, ("id",), closed=False)


def _raft_status_schema():
    return _object({"address": {"type": "string"}, "state": RAFT_STATE, "term": COUNT, "commitIndex": COUNT,
                    "appliedIndex": COUNT}, ("address", "state"), closed=False,
                   description="Extension: the peer's Raft status at its last report")


def _node_schema():
    # Open to more fields: a node record is written by the peer it describes, which may run a
    # newer version during a rolling upgrade.
    return _object({
        "id": {"type": "string"},
        "url": {"type": "string"},
        "region": {"type": "string"},
        "availabilityZone": {"type": "string"},
        "lastHeartbeat": TIMESTAMP,
        "status": {"type": "string", "enum": ["Healthy", "Stale"],
                   "description": "Extension: Stale once three heartbeat periods pass without a report"},
        "usage": _object({"cpu": _ref("Usage"), "memory": _ref("Usage"), "disk": _ref("Usage")},
                         ("cpu", "memory", "disk"), closed=False,
                         description="cpu in millicores; memory and disk in bytes"),
        "gpus": {"type": "array", "items": _ref("Gpu")},
        "hostname": {"type": "string"}, "os": {"type": "string"}, "cpuCount": COUNT, "bootTime": TIMESTAMP,
        "registryVersion": {"type": "string"},
        "raft": _ref("RaftStatus"),
    }, ("id", "url", "lastHeartbeat"), closed=False, description="One registry server and its machine")


def _cluster_peer_schema():
    nullable_count = {"type": ["integer", "null"], "minimum": 0}
    return _object({
        "url": {"type": ["string", "null"]},
        "raft": {"type": "string"},
        "state": {"type": ["string", "null"], "enum": RAFT_STATE["enum"] + [None]},
        "isLeader": {"type": "boolean"},
        "lastContactMs": nullable_count,
        "commitIndex": nullable_count,
        "appliedIndex": nullable_count,
        "stateDigest": _object({"index": COUNT, "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"}},
                               ("index", "sha256")),
        "lastScan": {"type": ["object", "null"], "description": "This peer's last instance scan cycle"},
        "divergence": {"type": ["string", "null"],
                       "description": "Why this peer's state may differ from the cluster's (then it is not ready)"},
        "checkpoints": _object({"verified": COUNT, "lastVerifiedIndex": nullable_count},
                               ("verified", "lastVerifiedIndex"),
                               description="Corruption checks this peer passed, and the index of the last"),
    }, ("url", "raft", "state", "isLeader", "lastContactMs", "commitIndex", "appliedIndex"), closed=False)


def _permit_schema():
    # As stored and answered: exactly one of role and slug, the permissions known, allInstances set.
    permit = body_schema(PERMIT)
    return _object({
        "role": {"type": "string"}, "slug": {"type": "string"},
        "permissions": {"type": "array", "items": {"type": "string", "enum": list(PERMISSIONS)}},
        "allInstances": {"type": "boolean"},
    }, ("permissions", "allInstances"), description=permit["description"]) | {"oneOf": permit["oneOf"]}


def _members_schema(**extra):
    return _object({"members": {"type": "array", "items": {"type": "string"}}, **extra}, ("members", *extra))


def response_schemas():
    return {
        "Error": _object({"error": {"type": "string", "minLength": 1}}, ("error",),
                         description="Every error: a human-readable reason"),
        "Empty": {"type": "object", "maxProperties": 0},
        "Instance": _instance_schema(),
        "InstanceList": _object({"instances": {"type": "array", "items": _ref("Instance")}}, ("instances",)),
        "Usage": _usage_schema(),
        "Gpu": _gpu_schema(),
        "RaftStatus": _raft_status_schema(),
        "Node": _node_schema(),
        "NodeAnswer": _object({"node": _ref("Node")}, ("node",)),
        "NodeList": _object({"nodes": {"type": "array", "items": _ref("Node")}}, ("nodes",)),
        "ClusterPeer": _cluster_peer_schema(),
        "ClusterView": _object({
            "self": _ref("ClusterPeer"),
            "leader": _nullable(_ref("ClusterPeer")),
            "peers": {"type": "array", "items": _ref("ClusterPeer"), "minItems": 1},
        }, ("self", "leader", "peers"), closed=False),
        "PermitRecord": _permit_schema(),
        "PermitList": _object({"permits": {"type": "array", "items": _ref("PermitRecord")}}, ("permits",)),
        "Snapshot": _object({
            "format": {"type": "integer"}, "index": COUNT,
            "instances": {"type": "array", "items": _ref("Instance")},
            "nodes": {"type": "array", "items": _ref("Node")},
            "permits": {"type": "array", "items": _ref("PermitRecord")},
            "kindIndex": {"type": "object", "additionalProperties": COUNT},
        }, ("format", "index", "instances", "nodes", "permits"), closed=False),
        "Health": _object({"status": {"const": "ok"}}, ("status",)),
        "Readiness": _object({"status": {"const": "ready"}, "leader": {"type": "string"}, "appliedIndex": COUNT},
                             ("status", "leader", "appliedIndex")),
        "ClusterMembers": _members_schema(leader={"type": ["string", "null"]}),
        "ClusterPeerAdded": _members_schema(added={"type": "boolean"}, message={"type": "string"}),
        "ClusterPeerRemoved": _members_schema(removed={"const": True}, message={"type": "string"}),
        "OpenApiDocument": {"type": "object", "required": ["openapi", "info", "paths"]},
    }


REQUEST_BODIES = (REGISTRATION, HEARTBEAT, LIST_REQUEST, PERMITS, PERMIT, ADD_PEER_REQUEST)

# -- Parameters and headers -----------------------------------------------------------------------

DURATION = "a duration: 30s, 5m, 1h30m, 250ms, or plain seconds"

READ_PARAMETERS = {
    "consistent": {"name": "consistent", "in": "query", "allowEmptyValue": True,
                   "description": "Extension, a flag: a linearizable read (the peer confirms with a quorum that it "
                                  "is current first). Give it bare, or true/false (1/0).",
                   "schema": {"type": "string", "pattern": "^(|[Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee]|1|0)$"}},
    "max_stale": {"name": "max_stale", "in": "query",
                  "description": f"Extension: refuse with 503 if this peer last heard from the leader longer ago; "
                                 f"{DURATION}.",
                  "schema": {"type": "string", "minLength": 1}},
    "index": {"name": "index", "in": "query",
              "description": "Extension: a blocking read; answers once this kind of data changed at a Raft index "
                             "above this one (as X-Registry-Index gave it), or after `wait`.",
              "schema": {"type": "string", "pattern": "^[0-9]+$"}},
    "wait": {"name": "wait", "in": "query",
             "description": f"Extension, with `index`: how long a blocking read may wait (default 60s, at most 10m); "
                            f"{DURATION}.",
             "schema": {"type": "string", "minLength": 1}},
}

HEADERS = {
    "X-Registry-Index": {"description": "Extension: on a read, the Raft index of the last change to the kind of "
                                        "data returned; on a write, that write's index; else the last applied",
                         "required": True, "schema": {"type": "string", "pattern": "^[0-9]+$"}},
    "X-Registry-Known-Leader": {"description": "Extension: whether this peer knows a live leader",
                                "required": True, "schema": {"type": "string", "enum": ["true", "false"]}},
    "X-Registry-Last-Contact": {"description": "Extension: milliseconds since this peer last heard from the "
                                               "leader (0 on the leader)",
                                "required": True, "schema": {"type": "string", "pattern": "^[0-9]+$"}},
    "Retry-After": {"description": "Seconds to wait before retrying", "required": True,
                    "schema": {"type": "string", "pattern": "^[0-9]+$"}},
    "WWW-Authenticate": {"description": "The bearer scheme", "required": True, "schema": {"type": "string"}},
}
REGISTRY_HEADERS = ("X-Registry-Index", "X-Registry-Known-Leader", "X-Registry-Last-Contact")

STATUS_TEXT = {
    200: "OK", 201: "Created", 204: "Done, no content",
    400: "Invalid request: bad JSON, an unknown or mistyped field or parameter, a value out of range",
    401: "No token, or a bad or expired one", 403: "The caller's permits do not allow it",
    404: "Not found", 409: "Conflicts with the registry's state", 413: "The request body is over the limit",
    503: "Unavailable for now (no leader, no quorum, not committed in time, not ready); retry after Retry-After",
}

# -- Operations -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Operation:
    """What the document says about one route and method that the code cannot tell."""

    operation_id: str
    summary: str
    tag: str
    permission: str = None  # None: open, no token needed (api/auth.py OPEN_ENDPOINTS)
    # (status, answer): a schema's name, None for no content, "text" for Prometheus text, or a
    # content map of its own
    success: tuple = (200, "Empty")
    body: f.Body = None
    body_required: bool = False
    read: bool = False  # takes the read-consistency parameters (api/consistency.py)
    write: bool = False  # committed through Raft: 503 when it cannot be
    errors: tuple = ()  # statuses beyond those the flags above imply
    query: tuple = ()  # more query parameter objects
    # Flask argument -> (name, schema, description, example)
    path: dict = dataclasses.field(default_factory=dict)
    extension: bool = True  # not part of 1Backend's contract
    also: tuple = ()  # more success answers: ((status, schema, description), ...)


_INSTANCE_ID = {"instance_id": ("id", field_schema(ID, nullable=False), "The instance id", "my-service-1")}


def _filter_parameters():
    parameters = []
    for name, description in FILTERS.items():
        if name == "tag":
            schema = {"type": "array", "items": {"type": "string", "minLength": 1}}
        elif name == "status":
            schema = {"type": "string", "enum": list(STATUSES)}
        else:
            schema = {"type": "string", "minLength": 1}
        parameters.append({"name": name, "in": "query", "description": f"Only instances with {description}",
                           "schema": schema, **({"style": "form", "explode": True} if name == "tag" else {})})
    return tuple(parameters)


OPERATIONS = {
    ("instances.register_instance", "PUT"): Operation(
        "registerInstance", "Register or update an instance", "instances", INSTANCE_EDIT, (201, "Empty"),
        body=REGISTRATION, body_required=True, write=True, errors=(409,), extension=False),
    ("instances.list_instances", "GET"): Operation(
        "listInstances", "List instances (non-admins see their own slug's)", "instances", INSTANCE_VIEW,
        (200, "InstanceList"), read=True, query=_filter_parameters(), extension=False),
    ("instances.remove_instance", "DELETE"): Operation(
        "removeInstance", "Remove an instance", "instances", INSTANCE_DELETE, (204, None), write=True,
        errors=(404,), path=_INSTANCE_ID, extension=False),
    ("instances.renew_instance", "PUT"): Operation(
        "renewInstance", "Renew an instance's heartbeat (and status)", "instances", INSTANCE_EDIT, (200, "Empty"),
        body=HEARTBEAT, write=True, errors=(404,), path=_INSTANCE_ID),
    ("nodes.self_node", "GET"): Operation(
        "selfNode", "This peer's own node record", "nodes", NODE_VIEW, (200, "NodeAnswer"), read=True,
        extension=False),
    ("nodes.list_nodes", "POST"): Operation(
        "listNodes", "List nodes", "nodes", NODE_VIEW, (200, "NodeList"), body=LIST_REQUEST, read=True,
        extension=False),
    ("nodes.remove_node", "DELETE"): Operation(
        "deleteNode", "Remove a node record by its URL (percent-encoded or raw)", "nodes", NODE_DELETE, (204, None),
        write=True, errors=(404,), extension=False,
        path={"node_url": ("url", {"type": "string", "minLength": 1}, "The node's URL, percent-encoded or raw",
                            "https://node.example.com:11337")}),
    ("operations.healthz", "GET"): Operation(
        "checkHealth", "Liveness: 200 while the process serves HTTP", "operations", success=(200, "Health")),
    ("operations.readyz", "GET"): Operation(
        "checkReadiness", "Readiness: 200 once this peer knows a leader and has caught up", "operations",
        success=(200, "Readiness"), errors=(503,)),
    ("operations.cluster", "GET"): Operation(
        "getClusterView", "The cluster as this peer sees it, with its state digest", "operations", NODE_VIEW,
        (200, "ClusterView")),
    ("operations.snapshot", "GET"): Operation(
        "getSnapshot", "A consistent backup of the whole registry", "operations", CLUSTER_ADMIN,
        (200, "Snapshot"), errors=(503,)),
    ("operations.cluster_members", "GET"): Operation(
        "listClusterPeers", "The Raft members as this peer knows them", "operations", NODE_VIEW,
        (200, "ClusterMembers")),
    ("operations.add_cluster_peer", "POST"): Operation(
        "addClusterPeer", "Add a peer (started with --join) to the Raft cluster", "operations", CLUSTER_ADMIN,
        (200, "ClusterPeerAdded"), body=ADD_PEER_REQUEST, body_required=True, errors=(409, 503),
        also=((201, "ClusterPeerAdded", "Added"),)),
    ("operations.remove_cluster_peer", "DELETE"): Operation(
        "removeClusterPeer", "Remove a peer from the Raft cluster (a leader hands off first)", "operations",
        CLUSTER_ADMIN, (200, "ClusterPeerRemoved"), errors=(404, 409, 503),
        path={"raft_address": ("address", {"type": "string", "minLength": 1}, "The peer's Raft address, host:port",
                               "10.0.0.4:21337")}),
    ("permits.list_permits", "GET"): Operation(
        "listPermits", "Who may do what", "permits", PERMIT_VIEW, (200, "PermitList"), read=True),
    ("permits.set_permits", "PUT"): Operation(
        "setPermits", "Replace every permit", "permits", PERMIT_EDIT, (200, "PermitList"), body=PERMITS,
        body_required=True, write=True),
    ("metrics.metrics", "GET"): Operation(
        "getMetrics", "Prometheus metrics", "operations", NODE_VIEW, (200, "text")),
    ("ui.page", "GET"): Operation(
        "getDashboard", "The web dashboard's page (it asks for a token; the page itself is open)", "operations",
        success=(200, {"text/html": {"schema": {"type": "string"}}}), also=((304, None, "Not modified"),)),
    ("ui.asset", "GET"): Operation(
        "getDashboardAsset", "One of the dashboard's script, style and icon", "operations",
        success=(200, {media: {"schema": {"type": "string"}}
                       for media in ("text/html", "text/javascript", "text/css", "image/svg+xml")}),
        also=((304, None, "Not modified"),), errors=(404,),
        path={"name": ("name", {"type": "string", "minLength": 1}, "The asset's file name", "app.js")}),
    ("openapi.document", "GET"): Operation(
        "getOpenApiDocument", "This document", "operations", success=(200, "OpenApiDocument")),
}

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
                                 "content": {"application/json": {"schema": _ref(operation.body.name)}}}
    statuses = set(operation.errors)
    if operation.permission is not None:
        statuses |= {401, 403}
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
        response["content"] = {"application/json": {"schema": _ref(schema)}}
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
