"""Operating a peer: liveness, readiness, the cluster as this peer sees it, and backups."""

from flask import Blueprint

from cluster import membership
from cluster.config import split_address
from cluster.submit import WriteUnavailable
from registry import errors, fields
from registry.errors import ValidationError
from registry.permissions import CLUSTER_ADMIN, NODE_VIEW

from .auth import requires
from .errors import ApiError, unavailable
from .jsonio import read_json, respond
from .results import current_peer

blueprint = Blueprint("operations", __name__)

ADD_PEER_REQUEST = fields.Body(
    "AddClusterPeerRequest",
    {"raft": fields.Text(300, "The new peer's Raft address, host:port (port 1..65535).", example="10.0.0.4:21337")},
    "Extension: adds a peer, started with --join, to the Raft cluster.",
    required=("raft",),
)


def validate_address(body):
    ADD_PEER_REQUEST.check_shape(body)
    address = ADD_PEER_REQUEST.read(body, "raft")
    if address is None:
        raise ValidationError("field 'raft' is required: the peer's Raft address, host:port")
    try:
        split_address(address, "field 'raft'")
    except ValueError as error:
        raise ValidationError(str(error)) from None
    return address


def _membership_refusal(error):
    if error.code == membership.UNAVAILABLE:
        return unavailable(error.message)
    return ApiError({errors.NOT_FOUND: 404, errors.CONFLICT: 409}[error.code], error.message)


@blueprint.get("/healthz")
def healthz():
    return respond({"status": "ok"})


@blueprint.get("/readyz")
def readyz():
    status = current_peer().status()
    if status.divergence is not None:
        raise unavailable(f"not ready: replicas diverged: {status.divergence}")
    if status.leader is None:
        raise unavailable("not ready: this peer knows no leader")
    worker = status.http_worker
    if worker is not None and worker["behind"]:
        raise unavailable(f"not ready: this peer's HTTP worker {worker['number']} holds a replica "
                          f"{worker['lagMs']} ms behind its Raft process")
    if not status.caught_up:
        if status.leader_commit_index is None or status.applied_index >= status.leader_commit_index:
            raise unavailable("not ready: this peer has not yet caught up with the leader's log since it started")
        raise unavailable(
            f"not ready: applied index {status.applied_index} has been behind the leader's commit index "
            f"{status.leader_commit_index} for {status.owed_apply_ms} ms"
        )
    return respond({"status": "ready", "leader": status.leader, "appliedIndex": status.applied_index})


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


def _membership_deadline():
    # A change may wait for a leadership handoff and a commit: more than one write's deadline.
    return 2 * current_peer().config.write_timeout_seconds


@blueprint.get("/registry-svc/cluster/peers")
@requires(NODE_VIEW)
def cluster_members():
    """Extension: the Raft members as this peer knows them."""
    status = current_peer().status()
    return respond({"members": list(status.members), "leader": status.leader})


@blueprint.post("/registry-svc/cluster/peers")
@requires(CLUSTER_ADMIN)
def add_cluster_peer():
    """Extension: add a peer (started with --join) to the Raft cluster."""
    address = validate_address(read_json(required=True))
    try:
        result = current_peer().add_member(address, _membership_deadline())
    except membership.MembershipError as error:
        raise _membership_refusal(error) from None
    return respond(result, 201 if result["added"] else 200)


@blueprint.delete("/registry-svc/cluster/peers/<path:raft_address>")
@requires(CLUSTER_ADMIN)
def remove_cluster_peer(raft_address):
    """Extension: remove a peer from the Raft cluster (a leader hands leadership off first)."""
    try:
        result = current_peer().remove_member(raft_address, _membership_deadline())
    except membership.MembershipError as error:
        raise _membership_refusal(error) from None
    return respond(result)
