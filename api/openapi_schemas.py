"""The OpenAPI document's JSON Schemas: request bodies compiled from the field specs the
validators read requests with (registry/fields.py), and the response schemas, written once.
"""

from registry import fields as f
from registry.instances import HEARTBEAT, REGISTRATION
from registry.nodes import LIST_REQUEST
from registry.permissions import PERMISSIONS, PERMIT, PERMITS

from .operations import ADD_PEER_REQUEST


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
        return _described({"type": "array", "maxItems": spec.max_items, "items": schema_ref(spec.body.name)}, spec)
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


def schema_ref(name):
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
        "usage": _object({"cpu": schema_ref("Usage"), "memory": schema_ref("Usage"), "disk": schema_ref("Usage")},
                         ("cpu", "memory", "disk"), closed=False,
                         description="cpu in millicores; memory and disk in bytes"),
        "gpus": {"type": "array", "items": schema_ref("Gpu")},
        "hostname": {"type": "string"}, "os": {"type": "string"}, "cpuCount": COUNT, "bootTime": TIMESTAMP,
        "registryVersion": {"type": "string"},
        "raft": schema_ref("RaftStatus"),
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
        "reachable": {"type": "boolean", "description": "Whether this peer can tell the peer is up: by Raft "
                                                       "contact to and from the leader, else by node heartbeats"},
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
        "InstanceList": _object({"instances": {"type": "array", "items": schema_ref("Instance")}}, ("instances",)),
        "Usage": _usage_schema(),
        "Gpu": _gpu_schema(),
        "RaftStatus": _raft_status_schema(),
        "Node": _node_schema(),
        "NodeAnswer": _object({"node": schema_ref("Node")}, ("node",)),
        "NodeList": _object({"nodes": {"type": "array", "items": schema_ref("Node")}}, ("nodes",)),
        "ClusterPeer": _cluster_peer_schema(),
        "ClusterView": _object({
            "self": schema_ref("ClusterPeer"),
            "leader": _nullable(schema_ref("ClusterPeer")),
            "peers": {"type": "array", "items": schema_ref("ClusterPeer"), "minItems": 1},
            "quorum": _object({"members": COUNT, "reachable": COUNT, "needed": COUNT},
                              ("members", "reachable", "needed"),
                              description="Members, those reachable from this peer, and the majority writes need"),
        }, ("self", "leader", "peers"), closed=False),
        "Grants": _object({
            "slug": {"type": "string"}, "roles": {"type": "array", "items": {"type": "string"}},
            "permissions": {"type": "object", "propertyNames": {"enum": list(PERMISSIONS)},
                            "additionalProperties": {"type": "boolean"},
                            "description": "Each permission held: true when it reaches every instance, false "
                                           "when only the caller's own slug's"},
        }, ("slug", "roles", "permissions"), description="What the caller's token may do"),
        "PermitRecord": _permit_schema(),
        "PermitList": _object({"permits": {"type": "array", "items": schema_ref("PermitRecord")}}, ("permits",)),
        "Snapshot": _object({
            "format": {"type": "integer"}, "index": COUNT,
            "instances": {"type": "array", "items": schema_ref("Instance")},
            "nodes": {"type": "array", "items": schema_ref("Node")},
            "permits": {"type": "array", "items": schema_ref("PermitRecord")},
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
