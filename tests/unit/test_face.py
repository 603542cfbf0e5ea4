"""The peer's face (cluster/face.py) is all the HTTP layer asks of a peer: the real peer, an HTTP
worker's replica of it and the tests' peer without Raft all implement all of it, and nothing
under api/ asks for more."""

import ast
import inspect
import pathlib

from cluster.face import PeerFace
from cluster.peer import Peer
from cluster.worker_replica import WorkerReplica
from tests.fake_peer import FakePeer

API = pathlib.Path(__file__).resolve().parents[2] / "api"
# The HTTP layer. The local-cluster tooling, the CLIs and the client hold LocalPeers and URLs,
# never a peer object.
HTTP_MODULES = [p for p in API.glob("*.py") if not p.name.startswith(("cli", "client"))]
ATTRIBUTES = {"url", "config", "cluster_secret"}


def face_methods():
    return {name: member for name, member in vars(PeerFace).items()
            if callable(member) and not name.startswith("_")}


def parameters(function):
    return [name for name in inspect.signature(function).parameters if name != "self"]


def test_the_real_peer_a_workers_replica_and_the_fake_implement_every_method_with_the_same_parameters():
    for name, declared in face_methods().items():
        for implementation in (Peer, WorkerReplica, FakePeer):
            method = getattr(implementation, name, None)
            assert callable(method), f"{implementation.__name__} lacks {name}"
            assert parameters(method) == parameters(declared), (implementation.__name__, name)


def test_the_fake_has_the_attributes_of_the_face():
    fake = FakePeer()
    assert all(getattr(fake, name, None) is not None for name in ATTRIBUTES)


def _peer_expression(node):
    """True for `peer`, `self.peer`, `self._peer` and `current_peer()`."""
    if isinstance(node, ast.Name):
        return node.id == "peer"
    if isinstance(node, ast.Attribute):
        return isinstance(node.value, ast.Name) and node.value.id == "self" and node.attr in ("peer", "_peer")
    if isinstance(node, ast.Call):
        return isinstance(node.func, ast.Name) and node.func.id == "current_peer"
    return False


def test_the_http_layer_asks_a_peer_only_for_what_the_face_names():
    allowed = set(face_methods()) | ATTRIBUTES
    asked = {}
    for path in HTTP_MODULES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and _peer_expression(node.value):
                asked.setdefault(node.attr, set()).add(path.name)
    assert asked, "the scan found no use of a peer at all"
    assert {name: files for name, files in asked.items() if name not in allowed} == {}


def test_no_http_module_names_raft_or_the_replica():
    for path in API.rglob("*.py"):
        tree = ast.parse(path.read_text())
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert not any(name.startswith(("pysyncobj", "cluster.replica", "cluster.transport")) for name in imported), path
        assert not any(isinstance(node, ast.Attribute) and node.attr == "replica" for node in ast.walk(tree)), path
