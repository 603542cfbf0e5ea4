"""Nodes: the registry servers and the machines they run on, keyed by their URL.

Each peer reports its own record through the cluster; the record's contents come from the
reporting peer (psutil, NVML), and apply only stamps the heartbeat time the proposer chose.
"""

from . import fields as f
from .errors import FORBIDDEN, INVALID, NOT_FOUND, failure, ok
from .permissions import NODE_DELETE, SYSTEM, missing
from .timestamps import format_ns

LIST_REQUEST = f.Body(
    "ListNodesRequest",
    {"ids": f.TextList(10000, 256, "Node ids to list; absent, null or an empty body lists every node.")},
    "The body is optional.",
)
LIST_REQUEST_FIELDS = tuple(LIST_REQUEST.fields)


def validate_list_request(body):
    """The ids filter of POST /registry-svc/nodes; None or {} lists every node."""
    if body is None:
        return None
    LIST_REQUEST.check_shape(body)
    return LIST_REQUEST.read(body, "ids")


def apply_report(state, command):
    record = command.get("node")
    if not isinstance(record, dict) or not isinstance(record.get("url"), str) or not record["url"]:
        return failure(INVALID, "a node report needs a record with a url")
    record = dict(record, lastHeartbeat=format_ns(command["now"]))
    # A node that changed its URL keeps its id: drop the record it left under the old URL.
    stale_urls = [url for url, other in state.nodes.items()
                  if other.get("id") == record.get("id") and url != record["url"]]
    for url in stale_urls:
        del state.nodes[url]
    state.nodes[record["url"]] = record
    return ok(url=record["url"])


def apply_remove(state, command):
    if NODE_DELETE not in state.grants(command.get("caller", SYSTEM)):
        return failure(FORBIDDEN, missing(NODE_DELETE))
    if state.nodes.pop(command["url"], None) is None:
        return failure(NOT_FOUND, f"Node Not Found: no node has url {command['url']}")
    return ok(url=command["url"])


def select(nodes, ids):
    if ids is None:
        return list(nodes)
    wanted = set(ids)
    return [node for node in nodes if node.get("id") in wanted]
