"""Tables, ages and node status as `oo` shows them, without a cluster."""

from datetime import datetime, timedelta, timezone

import pytest

from api.oo import display

NOW = datetime(2026, 11, 27, 22, 41, 11, 500000, tzinfo=timezone.utc)


def stamp(seconds_before):
    return (NOW - timedelta(seconds=seconds_before)).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"


@pytest.mark.parametrize("seconds, shown", [
    (0, "0s ago"), (8.2, "8s ago"), (59.9, "59s ago"), (60, "1m ago"), (3599, "59m ago"), (3600, "1h ago"),
    (86400 * 3 + 5, "3d ago"), (-5, "0s ago"),
])
def test_heartbeats_read_as_ages(seconds, shown):
    assert display.ago(stamp(seconds), NOW) == shown


def test_nanosecond_timestamps_of_the_contract_parse():
    assert display.ago("2026-11-27T22:41:03.123456789Z", NOW) == "8s ago"
    assert display.ago(None, NOW) == "-"
    assert display.ago("yesterday", NOW) == "yesterday"


def test_node_status_is_the_records_own_else_judged_by_heartbeat():
    assert display.node_status({"status": "Degraded", "lastHeartbeat": stamp(1)}, NOW) == "Degraded"
    assert display.node_status({"lastHeartbeat": stamp(44)}, NOW) == "Healthy"
    assert display.node_status({"lastHeartbeat": stamp(46)}, NOW) == "Stale"
    assert display.node_status({}, NOW) == "Unknown"


def test_node_usage_columns():
    node = {"id": "node_1", "url": "http://n:1", "lastHeartbeat": stamp(3), "gpus": [{}, {}],
            "usage": {"cpu": {"used": 1000, "total": 8000, "percent": 12.5},
                      "memory": {"used": 1, "total": 16 * 1024 ** 3, "percent": 34.4},
                      "disk": {"used": 1, "total": 0, "percent": 61.0}}}
    header, rows = display.node_rows([node, {"id": "node_2", "url": "http://m:1"}], NOW)
    assert header == ("NODE ID", "URL", "STATUS", "CPU", "MEM", "DISK", "GPUS", "LAST HEARTBEAT")
    assert rows[1] == ("node_1", "http://n:1", "Healthy", "12% of 8", "34% of 16.0 GiB", "61%", 2, "3s ago")
    assert rows[0][3:] == ("-", "-", "-", 0, "-")


def test_tables_align_columns_and_mark_empty_cells():
    text = display.table(("A", "LONG NAME"), [("x", None), ("yyyy", "z")])
    assert text.splitlines() == ["A     LONG NAME", "x     -", "yyyy  z"]


def test_instance_rows_show_tags():
    header, rows = display.instance_rows([
        {"id": "b", "url": "http://b:1", "status": "Healthy", "slug": "s", "tags": ["prod", "eu"],
         "lastHeartbeat": stamp(2)},
        {"id": "a", "url": "http://a:1", "slug": "s"},
    ], NOW)
    assert header == ("INSTANCE ID", "URL", "STATUS", "OWNER SLUG", "TAGS", "LAST HEARTBEAT")
    assert rows == [("a", "http://a:1", None, "s", "", "-"), ("b", "http://b:1", "Healthy", "s", "prod,eu", "2s ago")]
