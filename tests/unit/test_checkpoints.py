"""The checkpoint ledger: digests of the state at a point of the log, compared with the leader's."""

from cluster.checkpoints import CheckpointLedger
from registry import commands
from registry.instances import validate_registration
from registry.state import DIGEST_FORMAT, RegistryState

NOW = 1_795_000_000_000_000_000


def state_with(*urls):
    state = RegistryState()
    for n, url in enumerate(urls, start=1):
        state.apply(commands.register_instance(validate_registration({"url": url}), f"inst_{n}", NOW), n)
    return state


def test_equal_states_pass_and_a_different_one_is_named():
    leader, follower = CheckpointLedger(), CheckpointLedger()
    leader.taken("c1", state_with("http://127.0.0.1:1").copy_parts())
    follower.taken("c1", state_with("http://127.0.0.1:1").copy_parts())
    digest, index = leader.own_digest("c1", timeout=10)
    follower.published("c1", digest, DIGEST_FORMAT, index)
    assert follower.own_digest("c1", timeout=10) == (digest, 1)
    assert follower.verified == 1 and follower.last_verified_index == 1 and follower.mismatch is None

    follower.taken("c2", state_with("http://127.0.0.1:2").copy_parts())
    leader.taken("c2", state_with("http://127.0.0.1:1").copy_parts())
    digest, index = leader.own_digest("c2", timeout=10)
    follower.published("c2", digest, DIGEST_FORMAT, index)
    follower.own_digest("c2", timeout=10)
    assert follower.mismatch is not None and "checkpoint c2" in follower.mismatch.describe()
    assert follower.verified == 1


def test_a_digest_of_another_format_or_of_an_unknown_checkpoint_is_not_compared():
    ledger = CheckpointLedger()
    ledger.taken("c1", state_with("http://127.0.0.1:1").copy_parts())
    ledger.published("c1", "0" * 64, DIGEST_FORMAT + 1, 1)
    ledger.published("c-unknown", "0" * 64, DIGEST_FORMAT, 1)
    ledger.own_digest("c1", timeout=10)
    assert ledger.mismatch is None and ledger.verified == 0


def test_a_peer_that_applied_only_a_later_copy_of_a_checkpoint_does_not_compare_it():
    # The checkpoint committed twice (re-submitted); this peer started from a dump between them.
    ledger = CheckpointLedger()
    ledger.taken("c1", state_with("http://127.0.0.1:1", "http://127.0.0.1:2").copy_parts())  # index 2
    ledger.published("c1", "0" * 64, DIGEST_FORMAT, 1)  # the leader's digest of its point, index 1
    ledger.own_digest("c1", timeout=10)
    assert ledger.mismatch is None and ledger.verified == 0


def test_a_resubmitted_checkpoint_keeps_its_first_point():
    ledger = CheckpointLedger()
    first = state_with("http://127.0.0.1:1")
    ledger.taken("c1", first.copy_parts())
    ledger.taken("c1", state_with("http://127.0.0.1:1", "http://127.0.0.1:2").copy_parts())
    assert ledger.own_digest("c1", timeout=10) == (first.digest()["sha256"], 1)


def test_of_several_wanted_at_once_only_the_newest_is_hashed():
    ledger = CheckpointLedger()
    for n in range(1, 4):
        ledger.taken(f"c{n}", state_with(*[f"http://127.0.0.1:{i}" for i in range(1, n + 1)]).copy_parts())
    with ledger._cv:  # as when a journal replay applies them all before the hasher runs
        for n in range(1, 4):
            ledger._want(f"c{n}")
    assert ledger.own_digest("c3", timeout=10) is not None
    assert ledger.own_digest("c1", timeout=10) is None  # passed over
