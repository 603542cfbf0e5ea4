"""GET /openapi.json: a valid OpenAPI 3.1 document of every route, with 1Backend's operation ids,
whose request schemas refuse what the validators refuse (they are generated from the same field
specs). tests/cluster/test_openapi_schemathesis.py runs schemathesis with it against a live peer;
the regressions at the end are what that run found."""

from types import SimpleNamespace

import jsonschema
import pytest
from openapi_spec_validator import validate as validate_openapi
from werkzeug.routing import Map, Rule

from api import auth, consistency, openapi
from api.operations import validate_address
from cluster import membership
from registry import fields as f
from registry.errors import ValidationError
from registry.instances import HEARTBEAT, REGISTRATION, validate_heartbeat, validate_registration
from registry.nodes import LIST_REQUEST, validate_list_request
from registry.permissions import PERMIT, PERMITS, default_permits, validate_permits

ONE_BACKEND = {  # 1Backend's operation ids, methods and paths
    "registerInstance": ("put", "/registry-svc/instance"),
    "listInstances": ("get", "/registry-svc/instances"),
    "removeInstance": ("delete", "/registry-svc/instance/{id}"),
    "listNodes": ("post", "/registry-svc/nodes"),
    "selfNode": ("get", "/registry-svc/node/self"),
    "deleteNode": ("delete", "/registry-svc/node/{url}"),
}


@pytest.fixture(scope="module")
def document(app):
    response = app.test_client().get("/openapi.json")  # no token: the document is open
    assert response.status_code == 200 and response.mimetype == "application/json"
    return response.json


def operations(document):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def test_the_document_is_valid_openapi_3_1(document):
    assert document["openapi"] == "3.1.0"
    validate_openapi(document)


def test_every_route_has_an_operation_and_every_operation_a_route(app, document):
    assert openapi.undocumented_routes(app) == []
    served = {key for key, _ in openapi.routes(app)}
    assert set(openapi.OPERATIONS) - served == set(), "operations documented for routes the app does not serve"
    documented = {operation["operationId"] for _, _, operation in operations(document)}
    assert documented == {operation.operation_id for operation in openapi.OPERATIONS.values()}


def test_a_route_without_an_operation_is_named():
    served = SimpleNamespace(url_map=Map([
        Rule("/healthz", endpoint="operations.healthz", methods=["GET"]),
        Rule("/registry-svc/new-thing", endpoint="new.thing", methods=["PATCH"]),
    ]))
    assert openapi.undocumented_routes(served) == ["PATCH /registry-svc/new-thing (new.thing)"]


def test_one_backend_operation_ids_on_their_paths(document):
    found = {operation["operationId"]: (method, path) for path, method, operation in operations(document)}
    for operation_id, where in ONE_BACKEND.items():
        assert found[operation_id] == where
        assert "x-registry-extension" not in document["paths"][where[1]][where[0]]
    ids = [operation["operationId"] for _, _, operation in operations(document)]
    assert len(ids) == len(set(ids))
    extensions = [o for _, _, o in operations(document) if o["operationId"] not in ONE_BACKEND]
    assert extensions and all(o.get("x-registry-extension") is True for o in extensions)


def test_security_is_bearer_except_the_open_endpoints(document):
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": document["components"]["securitySchemes"]["bearerAuth"]["description"]}
    open_ids = {o.operation_id for (endpoint, _), o in openapi.OPERATIONS.items() if endpoint in auth.OPEN_ENDPOINTS}
    token_only = {o.operation_id for o in openapi.OPERATIONS.values() if o.permission == openapi.TOKEN_ONLY}
    assert token_only == {"getGrants"}
    for path, method, operation in operations(document):
        if operation["operationId"] in open_ids:
            assert operation["security"] == [] and "401" not in operation["responses"]
        elif operation["operationId"] in token_only:
            assert operation["security"] == [{"bearerAuth": []}]
            assert "401" in operation["responses"] and "403" not in operation["responses"]
        else:
            assert operation["security"] == [{"bearerAuth": []}]
            assert {"401", "403"} <= set(operation["responses"])


def test_the_document_holds_no_secret(app, peer, document):
    text = app.test_client().get("/openapi.json").get_data(as_text=True)
    assert peer.cluster_secret not in text


def _fill(path, operation):
    for parameter in operation.get("parameters", ()):
        if parameter.get("in") == "path":
            path = path.replace("{" + parameter["name"] + "}", "probe-value")
    return path


def test_each_operation_asks_for_the_permission_it_documents(client_for, document):
    nobody = client_for("nobody")  # a valid token that grants nothing
    for path, method, operation in operations(document):
        permission = operation.get("x-registry-permission")
        response = nobody.open(_fill(path, operation), method=method.upper(), json={})
        if permission is None:
            assert response.status_code not in (401, 403), (method, path, response.json)
        else:
            assert response.status_code == 403, (method, path, response.status_code)
            assert response.json == {"error": f"missing permission {permission}"}


def test_read_parameters_are_the_ones_the_server_parses(document):
    assert tuple(document["components"]["parameters"]) == consistency.OPTION_NAMES


def test_errors_are_documented_as_the_server_sends_them(client, document):
    error = document["components"]["schemas"]["Error"]
    answer = client.put("/registry-svc/instance", json={"slugg": 1})
    assert answer.status_code == 400
    jsonschema.validate(answer.json, error)
    assert "400" in document["paths"]["/registry-svc/instance"]["put"]["responses"]


# -- drift: the schemas refuse what the validators refuse ---------------------------------------


def _schema_accepts(document, name, body):
    root = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    return jsonschema.Draft202012Validator(root).is_valid(body)


def _validator_accepts(validate, body):
    try:
        validate(body)
        return True
    except ValidationError:
        return False


BODIES = [
    (REGISTRATION, validate_registration, {"url": "http://my-service:8080", "slug": "s"}),
    (HEARTBEAT, validate_heartbeat, {"status": "Healthy"}),
    (LIST_REQUEST, validate_list_request, {"ids": ["node_1"]}),
    (PERMITS, validate_permits, {"permits": default_permits()}),
    (PERMIT, lambda permit: validate_permits({"permits": default_permits() + [permit]}),
     {"slug": "team-a", "permissions": ["registry-svc:instance:view"], "allInstances": True}),
]


def _wrong_values(spec):
    """Values a field spec refuses, whatever the other fields say."""
    if isinstance(spec, f.Text):
        yield 42
        yield "x" * (spec.max_length + 1)
        yield "a\x01b"
        if not spec.allow_empty:
            yield ""
        if spec.enum is not None:
            yield "Fine"
    elif isinstance(spec, f.Integer):
        yield from (spec.minimum - 1, spec.maximum + 1, "1", True, 1.5)
    elif isinstance(spec, f.TextList):
        yield from ("dev", [1], [""], ["a\nb"], ["x" * (spec.max_length + 1)], ["t"] * (spec.max_items + 1))
        if spec.enum is not None:
            yield ["no-such-permission"]
    elif isinstance(spec, f.Flag):
        yield from (None, "true", 1)
    elif isinstance(spec, f.Items):
        yield from (None, {}, [7], [{}] * (spec.max_items + 1))


@pytest.mark.parametrize("body_spec, validate, valid", BODIES, ids=[b[0].name for b in BODIES])
def test_what_a_validator_refuses_its_schema_refuses(document, body_spec, validate, valid):
    assert _validator_accepts(validate, valid) and _schema_accepts(document, body_spec.name, valid)
    refused = [[], "text", 3, dict(valid, unknownField=1)]
    for name, spec in body_spec.fields.items():
        refused.extend(dict(valid, **{name: value}) for value in _wrong_values(spec))
    for name in body_spec.required:
        refused.append({k: v for k, v in valid.items() if k != name})
    for body in refused:
        assert not _validator_accepts(validate, body), body
        assert not _schema_accepts(document, body_spec.name, body), f"the schema accepts {body!r}"


@pytest.mark.parametrize("body", [
    {}, {"slug": "x"}, {"scheme": "http", "port": 80}, {"host": "a", "port": 80}, {"scheme": "http", "host": "a"},
    {"scheme": "http", "host": "bad host", "port": 80}, {"scheme": "1http", "host": "a", "port": 80},
    {"url": None}, {"url": "http://a:1", "id": "has/slash"}, {"scheme": "http", "host": None, "port": 80},
])
def test_registrations_both_refuse(document, body):
    assert not _validator_accepts(validate_registration, body)
    assert not _schema_accepts(document, "RegisterInstanceRequest", body)


@pytest.mark.parametrize("body", [
    {"url": "http://a:1"}, {"scheme": "http", "host": "svc", "port": 9000, "path": "v1"},
    {"scheme": "http", "ip": "::1", "port": 80}, {"url": "http://svc:80/x", "host": "svc", "port": 80, "path": "/x"},
    {"url": "http://a:1", "slug": None, "tags": None, "status": None, "details": ""},
    {"url": "http://a:1", "ttl": "30s", "deregisterAfter": "5m", "status": "Error", "details": "line\nline"},
    {"id": "x" * 256, "scheme": "a" * 32, "host": "h" * 253, "port": 65535, "tags": ["t" * 256] * 64},
])
def test_registrations_both_accept(document, body):
    assert _validator_accepts(validate_registration, body)
    assert _schema_accepts(document, "RegisterInstanceRequest", body)


@pytest.mark.parametrize("permit", [{}, {"role": "admin", "slug": "s", "permissions": []}, {"role": None}])
def test_a_permit_names_exactly_one_of_role_and_slug(document, permit):
    body = {"permits": default_permits() + [permit]}
    assert not _validator_accepts(validate_permits, body)
    assert not _schema_accepts(document, "SetPermitsRequest", body)


def test_add_peer_requests_both_refuse(document):
    for body in ({}, {"raft": None}, {"raft": "x" * 301}, {"raft": "h:1", "other": 1}, [], {"raft": 5}):
        assert not _validator_accepts(validate_address, body), body
        assert not _schema_accepts(document, "AddClusterPeerRequest", body), body
    assert _schema_accepts(document, "AddClusterPeerRequest", {"raft": "10.0.0.4:21337"})


# -- answers match the response schemas (the live run checks every one) -------------------------


def _answer_matches(document, operation_path, method, response):
    declared = document["paths"][operation_path][method]["responses"][str(response.status_code)]
    schema = declared["content"]["application/json"]["schema"]
    root = dict(schema, components=document["components"])
    jsonschema.Draft202012Validator(root).validate(response.json)
    for name in openapi.REGISTRY_HEADERS:
        assert response.headers[name]


def test_listings_match_their_schemas(client, document):
    assert client.put("/registry-svc/instance", json={"url": "http://schema-check:1", "tags": ["a"],
                                                       "ttl": "30s"}).status_code == 201
    _answer_matches(document, "/registry-svc/instances", "get", client.get("/registry-svc/instances"))
    _answer_matches(document, "/registry-svc/nodes", "post", client.post("/registry-svc/nodes"))
    _answer_matches(document, "/registry-svc/node/self", "get", client.get("/registry-svc/node/self"))
    _answer_matches(document, "/registry-svc/cluster", "get", client.get("/registry-svc/cluster"))
    _answer_matches(document, "/registry-svc/permits", "get", client.get("/registry-svc/permits"))
    _answer_matches(document, "/registry-svc/snapshot", "get", client.get("/registry-svc/snapshot"))


# -- regressions: what the schemathesis run (and writing the response schemas) found ------------


def test_a_unicode_digit_index_is_a_400_not_a_500(client):
    # str.isdigit() took '²' and int() then raised: a 500.
    response = client.get("/registry-svc/instances?index=%C2%B2")
    assert response.status_code == 400 and "index" in response.json["error"]


def test_a_removed_self_node_is_reported_again_at_once(client, peer):
    # It answered 503 "not committed yet (no leader so far)" until the next heartbeat.
    assert client.delete(f"/registry-svc/node/{peer.url}").status_code == 204
    response = client.get("/registry-svc/node/self")
    assert response.status_code == 200 and response.json["node"]["url"] == peer.url


def test_every_503_says_when_to_retry(client, peer, monkeypatch):
    # Membership answers 503 through ApiError without a Retry-After header.
    def refuse(*_):
        raise membership.MembershipError(membership.UNAVAILABLE, "adding it: no leader is known")
    monkeypatch.setattr(peer, "add_member", refuse)
    response = client.post("/registry-svc/cluster/peers", json={"raft": "127.0.0.1:1"})
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"


@pytest.mark.parametrize("url, fragment", [
    ("a" * 33 + "://host:1", "the scheme in field 'url' is 33 characters long"),
    ("http://[fe80::1%25" + "e" * 80 + "]:80", "the ip in field 'url' is"),
])
def test_parts_taken_from_a_url_keep_their_fields_limits(client, document, url, fragment):
    # A record listed a 33-character scheme that a registration giving `scheme` could not.
    response = client.put("/registry-svc/instance", json={"url": url})
    assert response.status_code == 400 and fragment in response.json["error"]
