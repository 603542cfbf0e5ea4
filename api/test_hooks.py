"""Fault injection for tests, served only when the peer runs with REGISTRY_TEST_HOOKS=1.

A corruption check must be seen to catch a corrupted replica, and no honest path corrupts one:
this route does, on purpose, for the peer it is sent to alone. Never set the variable in
production; without it the route does not exist (404)."""

import os

from flask import Blueprint

from registry.permissions import CLUSTER_ADMIN

from .auth import requires
from .jsonio import respond
from .results import current_peer

ENVIRONMENT_VARIABLE = "REGISTRY_TEST_HOOKS"

blueprint = Blueprint("test_hooks", __name__)


def enabled():
    return os.environ.get(ENVIRONMENT_VARIABLE) == "1"


@blueprint.post("/registry-svc/test-hooks/corrupt-state")
@requires(CLUSTER_ADMIN)
def corrupt_state():
    """Drop one instance from this peer's replica only, bypassing Raft."""
    return respond({"droppedInstance": current_peer().corrupt_state_for_test()})
