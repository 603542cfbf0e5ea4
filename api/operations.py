"""Operating a peer: liveness, readiness and the cluster as this peer sees it."""

from flask import Blueprint

from registry.permissions import NODE_VIEW

from .auth import requires
from .errors import unavailable
from .jsonio import respond
from .results import current_peer

blueprint = Blueprint("operations", __name__)


@blueprint.get("/healthz")
def healthz():
    return respond({"status": "ok"})


@blueprint.get("/readyz")
def readyz():
    replica = current_peer().replica
    if replica.leader_address is None:
        raise unavailable("not ready: this peer knows no leader")
    if not replica.is_caught_up():
        raise unavailable(
            f"not ready: applied index {replica.raftLastApplied} is behind the leader's commit index "
            f"{replica.leader_commit_index}"
        )
    return respond({"status": "ready", "leader": replica.leader_address, "appliedIndex": replica.raftLastApplied})


@blueprint.get("/registry-svc/cluster")
@requires(NODE_VIEW)
def cluster():
    return respond(current_peer().cluster_view())
