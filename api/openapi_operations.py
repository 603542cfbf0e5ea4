"""The OpenAPI document's table of operations: what it says of each route and method that the
code cannot tell (operation ids, permissions, statuses, parameters), keyed by Flask endpoint.
"""

import dataclasses

from registry import fields as f
from registry.instances import FILTERS, ID, REGISTRATION, HEARTBEAT, STATUSES
from registry.nodes import LIST_REQUEST
from registry.permissions import (
    CLUSTER_ADMIN, INSTANCE_DELETE, INSTANCE_EDIT, INSTANCE_VIEW, NODE_DELETE, NODE_VIEW, PERMIT_EDIT, PERMIT_VIEW,
    PERMITS,
)

from .openapi_schemas import field_schema
from .operations import ADD_PEER_REQUEST


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


# The permission of an operation any valid token may call.
TOKEN_ONLY = ""


@dataclasses.dataclass(frozen=True)
class Operation:
    """What the document says about one route and method that the code cannot tell."""

    operation_id: str
    summary: str
    tag: str
    permission: str = None  # None: open, no token needed (api/auth.py OPEN_ENDPOINTS); TOKEN_ONLY: any valid token
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
    ("permits.caller_grants", "GET"): Operation(
        "getGrants", "What the caller's token may do: each permission, true when it reaches every instance",
        "permits", TOKEN_ONLY, (200, "Grants")),
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
