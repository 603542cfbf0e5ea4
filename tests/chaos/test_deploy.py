"""docs/deploy.md tried end to end: three machines (network namespaces), one peer each, started
with the systemd unit's own command line and env file, nginx with TLS in front of every peer,
`oo` and `registry` through TLS trusting the CA, a rolling restart one peer at a time (followers
first, then the leader) under writers, then a fourth machine added and removed again.

tests/chaos/deployment.py says what is taken from the shipped files and what stands in for
systemd."""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import psutil
import pytest
import requests

from api.client import ApiError, NoPeerAnswered, RegistryClient
from api.local_clusters import netns
from tests.chaos import deployment
from tests.chaos.deployment import (SERVICE_GID, SERVICE_UID, DeployedCluster, MachinePeer, NamespaceThreads, Nginx,
                                    command_environment, oo_command, registry_command, run_in)
from tests.chaos.workload import Writers, found_at_leader, record_figures, wait_converged
from tests.waiting import wait_until

pytestmark = pytest.mark.chaos

MACHINES = 3
# An operator's test cluster would keep the defaults; these make the run short. Scans are off
# (hourly): the instances written here name hosts that do not exist.
TUNINGS = {"REGISTRY_HEARTBEAT": "1", "REGISTRY_WRITE_TIMEOUT": "2", "REGISTRY_SCAN_INTERVAL": "3600"}
# The longest blocking read the API allows; nginx must wait longer than that for an answer.
LONGEST_BLOCKING_READ_SECONDS = 600


class Deployment:
    """Three running machines and a spare one, with what the test needs to reach them."""

    def __init__(self, base):
        self.base = base
        topology = netns.Topology(os.urandom(3).hex(), MACHINES + 1)
        peers = [MachinePeer(i, topology.namespace(i), topology.address(i), os.path.join(base, f"peer-{i}"),
                             os.path.join(base, "logs")) for i in range(1, MACHINES + 2)]
        self.spare = peers.pop()
        self.cluster = DeployedCluster(base, topology, peers, tunings=TUNINGS)
        self.nginx = {}
        self.threads = NamespaceThreads()
        self.ca_directory = os.path.join(base, "ca")
        self.ca = None

    def start(self):
        os.makedirs(os.path.join(self.base, "logs"))
        os.makedirs(self.ca_directory)
        self.ca = deployment.make_ca(self.ca_directory)
        # The secret: made once, the same file on every machine, owned by the service user, 0600.
        self.cluster.prepare_secret()
        os.chown(self.cluster.secret_path, SERVICE_UID, SERVICE_GID)
        os.chmod(self.cluster.secret_path, 0o600)
        for peer in self.cluster.peers:
            self.cluster.configure(peer, self.cluster.peers)
        self.cluster.start(ready_timeout=60)
        for peer in self.cluster.peers:
            self.start_nginx(peer)

    def start_nginx(self, peer):
        nginx = self.nginx.get(peer.index)
        if nginx is None:
            directory = os.path.join(self.base, f"nginx-{peer.name}")
            certificate, key = deployment.make_server_certificate(self.ca_directory, directory, peer.address)
            nginx = self.nginx[peer.index] = Nginx(peer, directory, certificate, key)
        nginx.start()
        wait_until(lambda: self.threads.run(peer.namespace, deployment.port_answers, peer.address, 443) or
                   (not nginx.running() and pytest.fail(f"nginx exited: {nginx.error_log()}")),
                   10, f"nginx on {peer.name} to listen")

    def https(self, peer, method, path, *, via=None, timeout=5.0, **kwargs):
        """A request to `peer`'s TLS address from machine `via` (default: the peer's own), trusting the CA."""
        via = via or peer

        def send():
            with netns.NamespacedSession(via.namespace, self.cluster.admin_token) as session:
                session.verify = self.ca
                return session.request(method, peer.https_url + path, timeout=timeout, **kwargs)
        return self.threads.run(via.namespace, send)

    def wait_ready_through_tls(self, peer, timeout=60.0):
        def ready():
            try:
                return self.https(peer, "GET", "/readyz", timeout=2.0).status_code == 200
            except requests.RequestException:
                return False
        wait_until(ready, timeout, f"{peer.https_url}/readyz to answer 200 through nginx", interval=0.1)

    def oo(self, via, *args, ca=True):
        environment = command_environment(OO_URL=",".join(p.https_url for p in self.cluster.peers),
                                          OO_TOKEN=self.cluster.admin_token,
                                          XDG_CONFIG_HOME=os.path.join(self.base, "oo-config"))
        if ca:
            environment["REQUESTS_CA_BUNDLE"] = self.ca
        return run_in(via.namespace, oo_command(*args), environment=environment)

    def registry(self, via, *args):
        environment = command_environment(SSL_CERT_FILE=self.ca, REGISTRY_TOKEN=self.cluster.admin_token)
        return run_in(via.namespace, registry_command(*args), environment=environment)

    def restart(self, peer):
        """One machine's step of the guide's upgrade: stop nginx (clients move on to the other
        peers), `systemctl restart registry-svc` (SIGTERM, wait for the exit, the same command
        again), wait for /readyz on the machine, start nginx. Returns the peer's exit status
        (0: systemd's Restart=on-failure does not count it a failure)."""
        self.nginx[peer.index].stop()
        peer.process.send_signal(signal.SIGTERM)
        status = peer.process.wait(timeout=30)
        self.cluster.start_peer(peer)
        self.cluster.wait_ready([peer], timeout=60, what=f"{peer.name} to answer /readyz on its machine")
        self.start_nginx(peer)
        return status

    def close(self, failed):
        errors = []
        if failed:
            print(f"namespaces {self.cluster.topology.namespaces}, files in {self.base}\n{self.cluster.logs()}")
            if self.spare.process is not None:
                print(f"--- spare {self.spare.log_path}\n{netns.tail(self.spare.log_path, 40)}")
            for nginx in self.nginx.values():
                print(f"--- nginx {nginx.peer.name} error log\n{nginx.error_log()}")
        for step in [nginx.stop for nginx in self.nginx.values()] + [
                lambda: self.cluster.stop_peers([self.spare]), self.threads.close, self.cluster.close]:
            try:
                step()
            except Exception as error:  # every step runs: a failed one must not leave processes or namespaces
                errors.append(repr(error))
        return errors


@pytest.fixture
def machines(namespace_support, request):
    assert shutil.which("nginx"), "the deployment test puts nginx in front of the peers: install nginx (.ci/run does)"
    assert shutil.which("openssl") and shutil.which("setpriv"), "the deployment test needs openssl and setpriv"
    # Not under pytest's tmp_path: the service uid must be able to reach its data directory.
    base = tempfile.mkdtemp(prefix="registry-deploy-")
    os.chmod(base, 0o711)
    made = Deployment(base)
    try:
        made.start()
        yield made
    finally:
        report = getattr(request.node, "chaos_report_call", None)
        errors = made.close(failed=report is None or report.failed)
        if not errors and not (report is None or report.failed):
            shutil.rmtree(base, ignore_errors=True)
        assert not errors, errors


class TlsWriter:
    """One client over every peer's TLS address (the Python client behind `oo`), writing from machine 1."""

    def __init__(self, made, via, max_writes=400):
        self.made = made
        self.via = via
        self.max_writes = max_writes
        self.outcomes = []  # (url, status or what went wrong)
        self._condition = threading.Condition()
        self._paused = False
        self._in_flight = False
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="tls-writer", daemon=True)

    def _run(self):
        netns.enter_namespace(self.via.namespace)
        session = netns.NamespacedSession(self.via.namespace)
        session.verify = self.made.ca
        client = RegistryClient([p.https_url for p in self.made.cluster.peers], self.made.cluster.admin_token,
                                session=session, connect_timeout=2, read_timeout=10)
        try:
            for number in range(self.max_writes):
                with self._condition:
                    while self._paused and not self._stopping:
                        self._condition.wait()
                    if self._stopping:
                        return
                    self._in_flight = True
                url = f"http://tls-{number}:80"
                try:
                    client.register_instance({"url": url, "slug": "tls-writer"})
                    outcome = 201
                except ApiError as error:
                    outcome = error.status
                except NoPeerAnswered:
                    outcome = "no peer answered"
                with self._condition:
                    self.outcomes.append((url, outcome))
                    self._in_flight = False
                    self._condition.notify_all()
                    self._condition.wait_for(lambda: self._stopping, timeout=0.1)
        finally:
            session.close()

    def start(self):
        self._thread.start()
        return self

    def pause(self):
        """Returns once no write is in flight."""
        with self._condition:
            self._paused = True
            self._condition.wait_for(lambda: not self._in_flight)

    def resume(self):
        with self._condition:
            self._paused = False
            self._condition.notify_all()

    def stop(self):
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "the TLS writer did not stop"

    def acknowledged(self):
        return {url for url, status in self.outcomes if status == 201}

    def counts(self):
        counts = {}
        for _url, status in self.outcomes:
            counts[str(status)] = counts.get(str(status), 0) + 1
        return counts


def test_the_unit_the_env_file_and_the_nginx_site_agree_with_the_guide():
    unit = deployment.Unit(deployment.UNIT_PATH)
    example = deployment.read_env_file(deployment.ENV_EXAMPLE_PATH)
    assert set(deployment.MACHINE_KEYS) <= set(example), "the env file lost a per-machine setting"
    assert "REGISTRY_JOIN" in deployment.commented_keys(deployment.ENV_EXAMPLE_PATH)
    assert unit.value("Service", "EnvironmentFile") == "/etc/registry-svc/env"
    assert unit.value("Service", "User") == "registry"
    assert unit.value("Service", "Restart") == "on-failure"
    # The data directory the env file names is the one the sandbox lets the peer write.
    data_dir = example["REGISTRY_DATA_DIR"]
    assert unit.value("Service", "ReadWritePaths") == data_dir
    assert "/var/lib/" + unit.value("Service", "StateDirectory") == data_dir
    # Every variable ExecStart names is set by the env file.
    named = unit.exec_start({name: f"<{name}>" for name in example})
    assert not [word for word in named if "$" in word], named
    for name in deployment.MACHINE_KEYS + ("REGISTRY_HTTP_ADDRESS",):
        assert f"<{name}>" in named, f"ExecStart does not pass {name}"
    # nginx waits longer than the longest blocking read.
    with open(deployment.NGINX_SITE_PATH, encoding="utf-8") as site:
        text = site.read()
    read_timeout = int(text.split("proxy_read_timeout", 1)[1].split(";", 1)[0].strip().rstrip("s"))
    assert read_timeout > LONGEST_BLOCKING_READ_SECONDS
    assert "proxy_pass http://registry_svc;" in text and example["REGISTRY_HTTP_ADDRESS"] in text


def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed (it comes with systemd)")
    # A root holding systemd's own units, the unit and a stand-in for the installed program,
    # so that verify checks everything but what it would find on a real machine.
    root = tmp_path / "root"
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(deployment.UNIT_PATH, root / "etc/systemd/system/registry-svc.service")
    program = root / deployment.INSTALLED_PROGRAM.lstrip("/")
    program.parent.mkdir(parents=True)
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    done = subprocess.run(["systemd-analyze", "verify", f"--root={root}",
                           str(root / "etc/systemd/system/registry-svc.service")],
                          capture_output=True, text=True, timeout=60)
    # Unknown or misspelt settings are only warnings (exit 0): any output at all fails.
    assert done.returncode == 0 and not done.stdout.strip() and not done.stderr.strip(), (
        f"systemd-analyze verify: exit {done.returncode}\n{done.stdout}{done.stderr}")


@pytest.mark.timeout(240)
def test_three_machines_behind_tls_survive_a_rolling_restart_and_take_a_fourth(machines):
    started = time.monotonic()
    made = machines
    cluster = made.cluster
    first, second, third = cluster.peers

    # -- the peers run as the unit says -------------------------------------------------------
    for peer in cluster.peers:
        process = psutil.Process(peer.pid)
        if cluster.as_service_user:
            assert process.uids().real == SERVICE_UID and process.gids().real == SERVICE_GID
        assert "--cluster-secret-file" in process.cmdline() and cluster.secret_path in process.cmdline()
        assert process.environ().get("REGISTRY_DATA_DIR") == peer.data_dir
    # The HTTP port answers on the machine's loopback only; Raft on the machine's address.
    assert not made.threads.run(second.namespace, deployment.port_answers, first.address, 11337)
    assert made.threads.run(second.namespace, deployment.port_answers, first.address, 21337)

    # -- TLS: oo and plain requests through nginx, trusting the CA ------------------------------
    code, out, err = made.oo(first, "put", "/registry-svc/instance", "--url=http://through-tls:8080",
                             "--slug=through-tls")
    assert code == 0, f"oo put through TLS: {err}"
    code, out, err = made.oo(third, "i", "ls", "--slug", "through-tls", "-o", "json")
    assert code == 0, f"oo i ls through TLS: {err}"
    assert [i["url"] for i in json.loads(out)] == ["http://through-tls:8080"], out
    code, out, err = made.oo(third, "i", "ls", ca=False)
    assert code == 1 and "certificate was not accepted" in err and "REQUESTS_CA_BUNDLE" in err, \
        f"oo without the CA: exit {code}: {err}"

    # Blocking reads through nginx: held for their wait when nothing changes, answered as soon
    # as their kind of data changes.
    listed = made.https(second, "GET", "/registry-svc/instances")
    assert listed.status_code == 200
    index = int(listed.headers["X-Registry-Index"])
    began = time.monotonic()
    held = made.https(second, "GET", "/registry-svc/instances", params={"index": index, "wait": "1s"})
    assert held.status_code == 200 and time.monotonic() - began >= 0.9, (held.status_code, held.text)
    waited = {}

    def blocking_read():
        began = time.monotonic()
        answer = made.https(second, "GET", "/registry-svc/instances", timeout=30,
                            params={"index": index, "wait": "20s"})
        waited["seconds"], waited["answer"] = time.monotonic() - began, answer
    reader = threading.Thread(target=blocking_read)
    reader.start()
    time.sleep(0.3)  # most likely waiting by now; if not, it answers at once with the write, as it should
    written = made.https(first, "PUT", "/registry-svc/instance", json={"url": "http://wakes-watchers:80"})
    assert written.status_code == 201, written.text
    reader.join(timeout=30)
    assert "http://wakes-watchers:80" in {i["url"] for i in waited["answer"].json()["instances"]}
    assert waited["seconds"] < 10, waited

    # -- a rolling restart: followers first, then the leader, under writers ---------------------
    writers = Writers(cluster, "rolling", per_peer=1, pace_seconds=0.1, max_writes=1000, max_seconds=150)
    tls_writer = TlsWriter(made, via=first)
    leader = cluster.leader(timeout=30)
    order = [p for p in cluster.peers if p is not leader] + [leader]
    restarts, found, converged = [], None, False
    writers.start()
    tls_writer.start()
    try:
        writers.wait_for_acks(10, timeout=20)
        for peer in order:
            was_leader = peer is leader
            stopped_at = time.monotonic()
            status = made.restart(peer)
            assert status == 0, f"{peer.name} exited {status} on SIGTERM: systemd would count a failure"
            made.wait_ready_through_tls(peer, timeout=10)
            ready_after = round(time.monotonic() - stopped_at, 2)
            others = [p for p in cluster.peers if p is not peer]
            # The others kept acknowledging writes while it was down (a new leader, if it led).
            writers.wait_for_acks(3, at=others, after=stopped_at, timeout=20)
            writers.wait_for_acks(3, at=[peer], after=stopped_at, timeout=30)
            # Between steps, as the guide says: every peer ready, one stateDigest everywhere.
            writers.pause()
            tls_writer.pause()
            wait_converged(cluster, writers.acknowledged_urls() | tls_writer.acknowledged(), timeout=30)
            writers.resume()
            tls_writer.resume()
            restarts.append({"peer": peer.name, "wasLeader": was_leader, "readyAfterSeconds": ready_after})
            print(f"restarted {peer.name}{' (the leader)' if was_leader else ''}: ready through TLS "
                  f"{ready_after} s after SIGTERM")
        assert cluster.leader(timeout=30) is not None

        # -- a fourth machine joins, then leaves again ------------------------------------------
        fourth = made.spare
        cluster.configure(fourth, cluster.peers + [fourth], join=True)
        cluster.start_peer(fourth)
        made.start_nginx(fourth)
        wait_until(lambda: made.threads.run(first.namespace, deployment.port_answers, fourth.address, 21337),
                   30, "the fourth peer's Raft port")
        code, out, err = made.registry(first, "cluster", "add-peer", fourth.raft, "--url", first.https_url,
                                       "--data-dir", os.path.join(made.base, "no-local-cluster"))
        assert code == 0, f"registry cluster add-peer: {out}{err}"
        cluster.peers.append(fourth)
        made.wait_ready_through_tls(fourth, timeout=60)
        assert made.https(fourth, "PUT", "/registry-svc/instance",
                          json={"url": "http://written-at-the-fourth:80"}).status_code == 201
        writers.pause()
        tls_writer.pause()
        wait_converged(cluster, writers.acknowledged_urls() | tls_writer.acknowledged()
                       | {"http://written-at-the-fourth:80"}, timeout=30)
        writers.resume()
        tls_writer.resume()
        for peer in cluster.peers:
            members = made.https(peer, "GET", "/registry-svc/cluster/peers").json()["members"]
            assert sorted(members) == sorted(p.raft for p in cluster.peers), (peer.name, members)

        code, out, err = made.registry(second, "cluster", "remove-peer", fourth.raft, "--url", second.https_url,
                                       "--data-dir", os.path.join(made.base, "no-local-cluster"))
        assert code == 0, f"registry cluster remove-peer: {out}{err}"
        cluster.peers.remove(fourth)
        fourth.process.send_signal(signal.SIGTERM)
        assert fourth.process.wait(timeout=30) == 0
        made.nginx.pop(fourth.index).stop()
        # Its node record stays (Stale) until an admin removes it.
        code, out, err = made.oo(first, "n", "rm", fourth.https_url)
        assert code == 0, f"oo n rm: {err}"
        code, out, err = made.oo(first, "n", "ls", "-o", "json")
        assert code == 0 and fourth.https_url not in {n["url"] for n in json.loads(out)}, out + err
        for peer in cluster.peers:
            members = made.https(peer, "GET", "/registry-svc/cluster/peers").json()["members"]
            assert sorted(members) == sorted(p.raft for p in cluster.peers), (peer.name, members)

        tls_writer.stop()
        writers.stop()
        acknowledged = writers.acknowledged_urls() | tls_writer.acknowledged() | {"http://written-at-the-fourth:80"}
        found = wait_converged(cluster, acknowledged, timeout=30)
        converged = True
        assert acknowledged <= found
        # The guide's backup, through TLS from machine 3.
        backup = os.path.join(made.base, "backup.json")
        code, out, err = made.registry(third, "snapshot", "save", backup, "--url", third.https_url)
        assert code == 0, f"registry snapshot save: {out}{err}"
        assert os.stat(backup).st_mode & 0o777 == 0o600
        with open(backup, encoding="utf-8") as saved:
            assert {i["url"] for i in json.load(saved)["instances"]} == found
        # With nginx stopped first, the client moved on to another peer instead of getting 502s;
        # a 503 is only possible while a new leader is elected.
        assert tls_writer.acknowledged(), f"no write through TLS was acknowledged: {tls_writer.counts()}"
        assert set(tls_writer.counts()) <= {"201", "503"}, tls_writer.counts()
        if cluster.as_service_user:
            # Everything the peers wrote is theirs alone (User=, UMask=0077).
            for peer in cluster.peers:
                for name in os.listdir(peer.data_dir):
                    info = os.stat(os.path.join(peer.data_dir, name))
                    assert info.st_uid == SERVICE_UID and not info.st_mode & 0o077, (name, oct(info.st_mode))
    finally:
        tls_writer.stop()
        writers.stop()
        record_figures("deploy-rolling-restart", writers, found if converged else found_at_leader(cluster),
                       converged=converged, restarts=restarts, tlsWrites=tls_writer.counts(),
                       asServiceUser=cluster.as_service_user, seconds=round(time.monotonic() - started, 1))
