import json
import logging
import re

from api.logs import JsonFormatter


def test_requests_get_an_id_and_one_access_line_without_the_token(client, caplog):
    caplog.set_level(logging.INFO, logger="registry.access")
    given = client.get("/registry-svc/instances", headers={"X-Request-Id": "trace-42"})
    made = client.get("/registry-svc/instances", headers={"X-Request-Id": "bad id with spaces"})
    assert given.headers["X-Request-Id"] == "trace-42"
    assert made.headers["X-Request-Id"] not in ("", "bad id with spaces")
    lines = [r for r in caplog.records if r.name == "registry.access"]
    assert len(lines) == 2
    assert lines[0].fields == {"requestId": "trace-42", "method": "GET", "path": "/registry-svc/instances",
                               "status": 200, "caller": "admin", "ms": lines[0].fields["ms"]}
    token = client.environ_base["HTTP_AUTHORIZATION"].split()[1]
    assert all(token not in record.getMessage() for record in caplog.records)
    made_ids = {client.get("/registry-svc/instances").headers["X-Request-Id"] for _ in range(50)}
    assert len(made_ids) == 50 and all(re.fullmatch(r"[0-9a-f]{32}", made) for made in made_ids)


def test_json_lines_for_machines():
    record = logging.LogRecord("registry.access", logging.INFO, __file__, 1, "GET %s", ("/x",), None)
    record.fields = {"requestId": "r1", "status": 200}
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "GET /x" and line["level"] == "info" and line["requestId"] == "r1"
    assert line["logger"] == "registry.access" and line["time"]
