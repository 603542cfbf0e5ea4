"""What docs/deploy.md has an operator install, set up on machines made of network namespaces.

- `scripts/registry-svc.service` is read as systemd reads it (sections, comments, continuation
  lines, `${VAR}` and `$VAR` in ExecStart). Each peer is started with exactly its ExecStart
  after substituting `scripts/registry-svc.env.example` with the per-machine values changed;
  only the installed program's path becomes this checkout's `python -m api.cli`. It runs as
  systemd would run it: a clean environment (PATH, HOME, LANG, the unit's Environment=, then
  the env file), an unprivileged uid standing for User=registry that owns only the peer's data
  directory and the secret file (mode 0600), no new privileges, no capabilities, UMask=.
- `scripts/registry-svc.nginx.conf` is included into a minimal nginx.conf, in front of each
  peer in its namespace, with a certificate signed by a CA made here with openssl, exactly as
  the guide's commands make them.

What systemd itself adds (its sandbox: ProtectSystem=, namespaces, syscall filters; Restart=)
cannot be run without systemd as PID 1; `systemd-analyze verify` checks the unit's syntax.
"""

import functools
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import psutil

from api.local_clusters import netns
from tests.helpers import TEST_HTTP_WORKERS

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNIT_PATH = os.path.join(PROJECT_ROOT, "scripts", "registry-svc.service")
ENV_EXAMPLE_PATH = os.path.join(PROJECT_ROOT, "scripts", "registry-svc.env.example")
NGINX_SITE_PATH = os.path.join(PROJECT_ROOT, "scripts", "registry-svc.nginx.conf")

INSTALLED_PROGRAM = "/opt/registry-svc/bin/registry"
# The env file's values that differ from machine to machine (docs/deploy.md lists the same).
MACHINE_KEYS = ("REGISTRY_RAFT_ADDRESS", "REGISTRY_RAFT_PEERS", "OB_SELF_URL", "REGISTRY_DATA_DIR",
                "REGISTRY_CLUSTER_SECRET_FILE")
# Stands for User=registry: an unprivileged uid with no account, owning only the peer's files.
SERVICE_UID = SERVICE_GID = 61337
# The PATH systemd gives a service.
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"
NGINX_STOP_SECONDS = 10.0

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"


# -- the unit and the env file, read as systemd reads them --------------------------------------

class Unit:
    """A unit file: {section: [(key, value)]}, with systemd's comment and continuation rules."""

    def __init__(self, path):
        self.path = path
        self.sections = {}
        current, pending = None, None
        with open(path, encoding="utf-8") as source:
            for number, raw in enumerate(source, start=1):
                stripped = raw.strip()
                if not stripped or stripped[0] in "#;":
                    continue  # comments are skipped inside a continued line too
                if stripped.endswith("\\"):
                    pending = (pending or "") + stripped[:-1] + " "
                    continue
                line = (pending or "") + stripped
                pending = None
                if line.startswith("[") and line.endswith("]"):
                    current = self.sections.setdefault(line[1:-1], [])
                    continue
                key, equals, value = line.partition("=")
                if not equals or current is None:
                    raise ValueError(f"{path}:{number}: not a `Key=value` line inside a section: {line!r}")
                current.append((key.strip(), value.strip()))
        if pending is not None:
            raise ValueError(f"{path} ends inside a continued line")

    def values(self, section, key):
        return [value for name, value in self.sections.get(section, []) if name == key]

    def value(self, section, key):
        """The setting's effective value: the last assignment wins."""
        values = self.values(section, key)
        assert values, f"{self.path} sets no {key}= in [{section}]"
        return values[-1]

    def environment(self):
        """Environment= assignments of [Service], in order."""
        variables = {}
        for assignment in self.values("Service", "Environment"):
            for word in shlex.split(assignment):
                name, equals, value = word.partition("=")
                assert equals and re.fullmatch(_NAME, name), f"Environment={assignment!r} is not NAME=value"
                variables[name] = value
        return variables

    def exec_start(self, environment):
        """ExecStart's argv with the environment substituted as systemd does: `${NAME}` inside a
        word, `$NAME` as a whole word split on whitespace; an unset variable is empty."""
        command = self.value("Service", "ExecStart")
        # Prefixes (-@:+!) and specifiers (%) change what systemd runs; this reader has no use for them.
        assert command[:1] not in "-@:+!" and "%" not in command, f"unsupported ExecStart syntax: {command}"
        argv = []
        for word in shlex.split(command):
            whole = re.fullmatch(r"\$(" + _NAME + r")", word)
            if whole:
                argv.extend(environment.get(whole.group(1), "").split())
                continue
            argv.append(re.sub(r"\$\{(" + _NAME + r")\}", lambda m: environment.get(m.group(1), ""), word))
        return argv


def read_env_file(path):
    """An EnvironmentFile=: KEY=value lines, # or ; comments, optional matching quotes."""
    variables = {}
    with open(path, encoding="utf-8") as source:
        for number, raw in enumerate(source, start=1):
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            name, equals, value = line.partition("=")
            name, value = name.strip(), value.strip()
            if not equals or not re.fullmatch(_NAME, name):
                raise ValueError(f"{path}:{number}: not a KEY=value line: {line!r}")
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            variables[name] = value
    return variables


def commented_keys(path):
    """Keys the env file shows commented out (the optional settings it documents)."""
    with open(path, encoding="utf-8") as source:
        return {m.group(1) for m in re.finditer(r"^#(" + _NAME + r")=", source.read(), re.MULTILINE)}


# -- certificates, made with the guide's openssl commands ----------------------------------------

def openssl(*args, cwd):
    done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"openssl {' '.join(args)} failed: {done.stderr}"


def make_ca(directory):
    openssl("req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=registry-svc test CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            cwd=directory)
    return os.path.join(directory, "ca.crt")


def make_server_certificate(ca_directory, directory, address):
    """(certificate, key) for `address` (an IP SAN), signed by the CA in ca_directory."""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "server.ext"), "w", encoding="utf-8") as extensions:
        extensions.write(f"subjectAltName=IP:{address}\nextendedKeyUsage=serverAuth\n"
                         "keyUsage=critical,digitalSignature\nbasicConstraints=critical,CA:FALSE\n"
                         "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n")
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "server.key", "-out", "server.csr", "-subj", f"/CN={address}", cwd=directory)
    openssl("x509", "-req", "-in", "server.csr", "-CA", os.path.join(ca_directory, "ca.crt"),
            "-CAkey", os.path.join(ca_directory, "ca.key"), "-CAcreateserial", "-out", "server.crt",
            "-days", "2", "-extfile", "server.ext", cwd=directory)
    return os.path.join(directory, "server.crt"), os.path.join(directory, "server.key")


# -- nginx in front of one peer ----------------------------------------------------------------

class Nginx:
    """nginx with scripts/registry-svc.nginx.conf in a peer's namespace; stopped by pid, workers too."""

    def __init__(self, peer, directory, certificate, key):
        self.peer = peer
        self.directory = directory
        self.certificate = certificate
        self.key = key
        self.process = None

    def site(self):
        with open(NGINX_SITE_PATH, encoding="utf-8") as source:
            text = source.read()
        # Per machine: its name and its certificate, as the guide says; the rest as shipped.
        replaced = {"server_name 10.0.0.11;": f"server_name {self.peer.address};",
                    "/etc/registry-svc/tls/server.crt;": f"{self.certificate};",
                    "/etc/registry-svc/tls/server.key;": f"{self.key};"}
        for old, new in replaced.items():
            assert text.count(old) == 1, f"{NGINX_SITE_PATH} no longer holds `{old}` once"
            text = text.replace(old, new)
        return text

    def start(self):
        os.makedirs(os.path.join(self.directory, "temp"), exist_ok=True)
        site_path = os.path.join(self.directory, "registry-svc.conf")
        with open(site_path, "w", encoding="utf-8") as site:
            site.write(self.site())
        temp = os.path.join(self.directory, "temp")
        main = f"""
daemon off;
worker_processes 1;
pid {self.directory}/nginx.pid;
error_log {self.directory}/error.log info;
events {{ worker_connections 512; }}
http {{
    access_log {self.directory}/access.log;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {site_path};
}}
"""
        config = os.path.join(self.directory, "nginx.conf")
        with open(config, "w", encoding="utf-8") as target:
            target.write(main)
        command = ["ip", "netns", "exec", self.peer.namespace, "nginx", "-p", self.directory, "-c", config]
        checked = subprocess.run(command + ["-t", "-q"], capture_output=True, text=True, timeout=30)
        assert checked.returncode == 0, f"nginx -t refused the site: {checked.stderr}"
        with open(os.path.join(self.directory, "stderr.log"), "ab") as log:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                            cwd=self.directory)
        return self

    def running(self):
        return self.process is not None and self.process.poll() is None

    def stop(self):
        """SIGQUIT (finish requests, then exit); SIGKILL to the master and its workers, by pid, if it lingers."""
        if self.process is None:
            return
        try:
            workers = [child.pid for child in psutil.Process(self.process.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            workers = []
        if self.running():
            self.process.send_signal(signal.SIGQUIT)
        try:
            self.process.wait(timeout=NGINX_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=NGINX_STOP_SECONDS)
        for pid in workers:
            try:
                worker = psutil.Process(pid)
                if "nginx" in worker.name():
                    worker.kill()
                    worker.wait(NGINX_STOP_SECONDS)
            except psutil.NoSuchProcess:
                pass

    def error_log(self, lines=20):
        return netns.tail(os.path.join(self.directory, "error.log"), lines)


# -- the peers: the unit's command line in each namespace --------------------------------------

class MachinePeer(netns.NetnsPeer):
    """A peer whose HTTP API listens where its env file says (loopback of its own machine)."""

    def __init__(self, index, namespace, address, data_dir, log_dir):
        super().__init__(index, namespace, address, data_dir)
        self.log_dir = log_dir
        self.environment = None  # the machine's env file, set by DeployedCluster.configure

    @property
    def url(self):
        # Reached by the test from threads inside this peer's namespace, as on the machine itself.
        return "http://" + self.environment["REGISTRY_HTTP_ADDRESS"]

    @property
    def https_url(self):
        return f"https://{self.address}"

    @property
    def log_path(self):
        # Where journald would keep it: outside the data directory.
        return os.path.join(self.log_dir, f"{self.name}.log")


class DeployedCluster(netns.NetnsCluster):
    def __init__(self, directory, topology, peers, *, tunings):
        super().__init__(directory, topology, peers)
        self.unit = Unit(UNIT_PATH)
        self.env_example = read_env_file(ENV_EXAMPLE_PATH)
        self.tunings = dict(tunings)

    def configure(self, peer, members, *, join=False):
        """The machine's /etc/registry-svc/env: the example with this machine's values."""
        environment = dict(self.env_example)
        environment.update({
            "REGISTRY_RAFT_ADDRESS": peer.raft,
            "REGISTRY_RAFT_PEERS": ",".join(p.raft for p in members),
            "OB_SELF_URL": peer.https_url,
            "REGISTRY_DATA_DIR": peer.data_dir,
            "REGISTRY_CLUSTER_SECRET_FILE": self.secret_path,
        })
        environment.update(self.tunings)
        if join:
            environment["REGISTRY_JOIN"] = "true"
        peer.environment = environment
        # StateDirectory= makes the data directory, owned by User=, mode StateDirectoryMode=.
        os.makedirs(peer.data_dir, exist_ok=True)
        os.chown(peer.data_dir, SERVICE_UID, SERVICE_GID)
        os.chmod(peer.data_dir, int(self.unit.value("Service", "StateDirectoryMode"), 8))
        return environment

    def process_environment(self, peer):
        """What systemd hands the process: its own few variables, Environment=, then EnvironmentFile=."""
        environment = {"PATH": SYSTEMD_PATH, "LANG": "C.UTF-8", "HOME": peer.data_dir}
        environment.update(self.unit.environment())
        environment.update(peer.environment)
        if TEST_HTTP_WORKERS != "0":
            # The chaos-workers env: as an operator sets it in the env file (docs/deploy.md).
            environment["REGISTRY_HTTP_WORKERS"] = TEST_HTTP_WORKERS
        return environment

    def serve_command(self, peer):
        environment = self.process_environment(peer)
        argv = self.unit.exec_start(environment)
        assert argv[:2] == [INSTALLED_PROGRAM, "serve"], f"the unit no longer runs `{INSTALLED_PROGRAM} serve`: {argv}"
        sandbox = []
        if self.as_service_user:
            sandbox += ["setpriv", f"--reuid={SERVICE_UID}", f"--regid={SERVICE_GID}", "--clear-groups"]
            if self.unit.value("Service", "NoNewPrivileges") == "yes":
                sandbox.append("--no-new-privs")
            if self.unit.value("Service", "CapabilityBoundingSet") == "":
                sandbox.append("--bounding-set=-all")
        # ip netns exec, env and setpriv each exec the next in place: the pid is the peer's own.
        return ["ip", "netns", "exec", peer.namespace,
                "env", "-i", *(f"{name}={value}" for name, value in environment.items()),
                *sandbox, sys.executable, "-m", "api.cli", *argv[1:]]

    @functools.cached_property
    def as_service_user(self):
        """Whether an unprivileged uid can run this interpreter and this checkout (not where the
        interpreter lives under a private home); otherwise the peers run as root, and say so."""
        probe = subprocess.run(
            ["setpriv", f"--reuid={SERVICE_UID}", f"--regid={SERVICE_GID}", "--clear-groups", "--no-new-privs",
             sys.executable, "-c", "import sys, api.cli, cluster.peer; print(sys.base_prefix)"],
            capture_output=True, text=True, timeout=60, cwd=PROJECT_ROOT)
        usable = probe.returncode == 0 and probe.stdout.strip() == sys.base_prefix
        if not usable:
            print(f"uid {SERVICE_UID} cannot run {sys.executable} with its own library ({probe.stdout.strip()} "
                  f"{probe.stderr.strip()[-300:]}): the peers run as root, not as the unit's User=")
        return usable

    def start_peer(self, peer, detach=False):
        previous = os.umask(int(self.unit.value("Service", "UMask"), 8))
        try:
            return super().start_peer(peer, detach=detach)
        finally:
            os.umask(previous)


class NamespaceThreads:
    """Run callables on threads that live in one namespace each (a command typed on that machine)."""

    def __init__(self):
        self._pools = {}

    def run(self, namespace, function, *args, **kwargs):
        if namespace not in self._pools:
            self._pools[namespace] = ThreadPoolExecutor(max_workers=2, thread_name_prefix=f"on-{namespace}",
                                                        initializer=netns.enter_namespace, initargs=(namespace,))
        return self._pools[namespace].submit(function, *args, **kwargs).result()

    def close(self):
        for pool in self._pools.values():
            pool.shutdown(wait=True, cancel_futures=True)
        self._pools.clear()


def port_answers(host, port, timeout=1.0):
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def command_environment(**extra):
    """This process's environment without proxies or CA overrides, plus `extra`."""
    dropped = {"http_proxy", "https_proxy", "all_proxy", "no_proxy", "requests_ca_bundle", "curl_ca_bundle",
               "ssl_cert_file", "ssl_cert_dir"}
    environment = {k: v for k, v in os.environ.items() if k.lower() not in dropped}
    environment.update(extra)
    return environment


def run_in(namespace, command, *, environment, timeout=60):
    """Run a command on a machine (in its namespace) as the operator would; (returncode, stdout, stderr)."""
    done = subprocess.run(["ip", "netns", "exec", namespace, *command], capture_output=True, text=True,
                          timeout=timeout, cwd=PROJECT_ROOT, env=environment, stdin=subprocess.DEVNULL)
    return done.returncode, done.stdout, done.stderr


def registry_command(*args):
    return [sys.executable, "-m", "api.cli", *args]


def oo_command(*args):
    return [sys.executable, "-m", "api.oo", *args]
