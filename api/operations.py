"""Operating a peer: liveness, readiness, the cluster as this peer sees it, and backups."""

from flask import Blueprint

from cluster.submit import WriteUnavailable
from registry.permissions import CLUSTER_ADMIN, NODE_VIEW

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


@blueprint.get("/registry-svc/snapshot")
@requires(CLUSTER_ADMIN)
def snapshot():
    """Extension: a consistent backup of the whole registry (restore it with `registry snapshot restore`)."""
    try:
        return respond(current_peer().snapshot())
    except WriteUnavailable as error:
        raise unavailable(f"a consistent snapshot needs the leader and a majority ({error.message}); retry") from None
