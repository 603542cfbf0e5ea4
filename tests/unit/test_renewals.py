"""Instance heartbeats coalesced into one command per flush interval, against a peer without
Raft (tests/fake_peer.py)."""

import threading

import pytest

from cluster.renewals import RenewalCoalescer
from cluster.submit import WriteUnavailable
from registry.instances import validate_registration
from tests.fake_peer import FakePeer, unavailable

OWNER = {"slug": "svc", "roles": ["user"]}


@pytest.fixture
def peer():
    peer = FakePeer(write_timeout_seconds=2)
    for n in range(20):
        peer.register_instance(validate_registration({"id": f"inst_{n}", "url": f"http://127.0.0.1:{9000 + n}",
                                                      "slug": "svc"}))
    return peer


@pytest.fixture
def renewals(peer):
    coalescer = RenewalCoalescer(peer, flush_seconds=0.2).start()
    yield coalescer
    coalescer.stop()


def renew_all_at_once(renewals, ids, fields=None):
    answers = {}
    start = threading.Barrier(len(ids))

    def renew(instance_id):
        start.wait()
        try:
            answers[instance_id] = renewals.renew(instance_id, fields or {}, OWNER)
        except WriteUnavailable as error:
            answers[instance_id] = error

    threads = [threading.Thread(target=renew, args=(i,)) for i in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    return answers


def test_renewals_within_one_interval_share_one_command_and_each_gets_its_own_answer(peer, renewals):
    ids = [f"inst_{n}" for n in range(20)] + ["inst_missing"]
    before = len(peer.submitted)
    answers = renew_all_at_once(renewals, ids, {"status": "Degraded"})
    assert len(peer.submitted) == before + 1 and renewals.commands_sent == 1
    assert all(answers[f"inst_{n}"]["code"] == "ok" for n in range(20))
    assert answers["inst_missing"]["code"] == "not_found"
    assert len({answer["index"] for answer in answers.values()}) == 1  # the command's index, for each
    assert {peer.instance(f"inst_{n}")["status"] for n in range(20)} == {"Degraded"}


def test_a_renewal_of_someone_elses_instance_is_refused_in_apply(peer, renewals):
    peer.register_instance(validate_registration({"id": "inst_other", "url": "http://127.0.0.1:9100",
                                                  "slug": "other"}))
    assert renewals.renew("inst_other", {}, OWNER)["code"] == "forbidden"


def test_renewals_that_cannot_be_committed_all_say_so(peer, renewals):
    peer.unavailable = unavailable()
    answers = renew_all_at_once(renewals, ["inst_1", "inst_2"])
    assert all(isinstance(answer, WriteUnavailable) and "not applied" in answer.message
               for answer in answers.values())


def test_a_stopped_coalescer_refuses_new_renewals(peer):
    coalescer = RenewalCoalescer(peer, flush_seconds=0.05).start()
    coalescer.stop()
    with pytest.raises(WriteUnavailable):
        coalescer.renew("inst_1", {}, OWNER)
