"""Serving nodes: this peer's own record, the list, and removal by URL."""

from urllib.parse import unquote

from flask import Blueprint, g

from cluster.submit import WriteUnavailable
from registry import nodes
from registry.commands import NODES
from registry.permissions import NODE_DELETE, NODE_VIEW

from .auth import current_caller, requires
from .consistency import reads
from .errors import ApiError, unavailable
from .jsonio import read_json
from .results import current_peer, read_answer, write_answer

blueprint = Blueprint("nodes", __name__)


@blueprint.get("/registry-svc/node/self")
@requires(NODE_VIEW)
@reads(NODES)
def self_node():
    _no_other_parameters()
    peer = current_peer()
    read = peer.self_node()
    if read[1] is None:
        # Not committed yet (the first report is pending), or an admin removed it: report it now
        # instead of answering 503 until the next heartbeat.
        try:
            peer.report_self()
        except WriteUnavailable as error:
            raise unavailable(f"this peer's node record is not in the registry yet, and reporting it failed "
                              f"({error.message}); retry shortly") from None
        read = peer.self_node()
        if read[1] is None:
            raise unavailable("this peer's node record was removed again as it was reported; retry shortly")
    return read_answer(read, lambda record: {"node": record})


@blueprint.post("/registry-svc/nodes")
@requires(NODE_VIEW)
@reads(NODES)
def list_nodes():
    _no_other_parameters()
    ids = nodes.validate_list_request(read_json(required=False))
    return read_answer(current_peer().list_nodes_with_status(ids), lambda records: {"nodes": records})


@blueprint.delete("/registry-svc/node/<path:node_url>")
@requires(NODE_DELETE)
def remove_node(node_url):
    # Clients send the URL percent-encoded or raw; the server has decoded the first kind
    # already, and a second unquote is harmless for the URLs nodes have.
    url = unquote(node_url)
    peer = current_peer()
    if peer.node(url)[1] is None and peer.node(url.rstrip("/"))[1] is not None:
        url = url.rstrip("/")
    return write_answer(peer.remove_node(url, current_caller()), 204, None)


def _no_other_parameters():
    if g.query_pairs:
        names = ", ".join(sorted({name for name, _ in g.query_pairs}))
        raise ApiError(400, f"unknown query parameter(s) {names}; node reads take consistent, max_stale, index, wait")
