from urllib.parse import quote

import psutil
import pytest

from registry import commands


@pytest.fixture(scope="module")
def peer(real_peer):
    """The real peer's own node record: its id on disk, its Raft address."""
    return real_peer


def test_self_node_is_this_peer_with_real_readings(client, peer):
    response = client.get("/registry-svc/node/self")
    assert response.status_code == 200
    node = response.json["node"]
    assert node["url"] == peer.url and node["id"] == peer.node_id and node["id"].startswith("node_")
    usage = node["usage"]
    assert usage["memory"]["total"] == psutil.virtual_memory().total
    assert 0 < usage["memory"]["used"] <= usage["memory"]["total"]
    assert usage["disk"]["total"] == psutil.disk_usage(peer.config.data_dir).total
    assert usage["cpu"]["total"] == psutil.cpu_count() * 1000 and 0 <= usage["cpu"]["percent"] <= 100
    assert node["gpus"] == [] or all("memoryTotal" in gpu for gpu in node["gpus"])
    assert node["cpuCount"] == psutil.cpu_count() and node["registryVersion"]
    assert node["raft"]["address"] == peer.config.raft_address
    assert node["lastHeartbeat"].endswith("Z")


def test_node_id_is_kept_across_restarts(peer):
    from cluster.identity import node_id
    assert node_id(peer.config.data_dir) == peer.node_id


def test_list_all_nodes_and_by_id(client, peer):
    listed = client.post("/registry-svc/nodes")
    assert listed.status_code == 200
    assert peer.url in [n["url"] for n in listed.json["nodes"]]
    by_id = client.post("/registry-svc/nodes", json={"ids": [peer.node_id]})
    assert [n["id"] for n in by_id.json["nodes"]] == [peer.node_id]
    assert client.post("/registry-svc/nodes", json={"ids": ["node_nobody"]}).json == {"nodes": []}
    assert client.post("/registry-svc/nodes", json={}).json["nodes"] == listed.json["nodes"]


@pytest.mark.parametrize("data, fragment", [
    (b"{oops", "not valid JSON"),
    (b'{"ids": "node_1"}', "array of strings"),
    (b'{"ids": [1]}', "item 0 is number"),
    (b'{"id": ["x"]}', "unknown field"),
    (b"[]", "must be a JSON object"),
])
def test_bad_node_list_requests_are_400(client, data, fragment):
    response = client.post("/registry-svc/nodes", data=data, content_type="application/json")
    assert response.status_code == 400 and fragment in response.json["error"]


@pytest.mark.parametrize("encode", [True, False], ids=["percent-encoded", "raw"])
def test_delete_node_by_url(client, peer, encode):
    url = "https://node.example.com:11337"
    peer.submit(commands.report_node({"id": "node_remote_example", "url": url}, 1))
    path = quote(url, safe="") if encode else url
    response = client.delete(f"/registry-svc/node/{path}")
    assert response.status_code == 204
    assert url not in [n["url"] for n in client.post("/registry-svc/nodes").json["nodes"]]
    missing = client.delete(f"/registry-svc/node/{path}")
    assert missing.status_code == 404 and url in missing.json["error"]
