import pytest


@pytest.mark.parametrize("header", [None, "Basic YWRtaW46YWRtaW4=", "Bearer", "Bearer    ", "Bearer not.a.jwt"])
def test_requests_without_a_valid_bearer_token_are_401(app, header):
    client = app.test_client()
    headers = {} if header is None else {"Authorization": header}
    for method, path in (("get", "/registry-svc/instances"), ("put", "/registry-svc/instance"),
                         ("delete", "/registry-svc/instance/x"), ("get", "/registry-svc/node/self"),
                         ("post", "/registry-svc/nodes"), ("delete", "/registry-svc/node/http://n:1"),
                         ("get", "/registry-svc/cluster"), ("get", "/registry-svc/permits"),
                         ("put", "/registry-svc/permits")):
        response = getattr(client, method)(path, headers=headers)
        assert response.status_code == 401, (method, path, response.json)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert response.json["error"]


def test_probes_are_open_and_unknown_routes_stay_404(app):
    client = app.test_client()
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.get("/registry-svc/nothing-here").status_code == 404


def test_a_user_is_told_which_permission_is_missing(client_for):
    response = client_for("team-a", "user").get("/registry-svc/permits")
    assert response.status_code == 403
    assert response.json == {"error": "missing permission registry-svc:permit:view"}


def test_a_token_without_roles_can_do_nothing(client_for):
    response = client_for("nobody").get("/registry-svc/instances")
    assert response.status_code == 403 and "registry-svc:instance:view" in response.json["error"]


def test_permits_round_trip_for_an_admin(client):
    listed = client.get("/registry-svc/permits")
    assert listed.status_code == 200
    roles = {p.get("role") for p in listed.json["permits"]}
    assert {"admin", "user"} <= roles
    assert client.put("/registry-svc/permits", json=listed.json).status_code == 200
    bad = client.put("/registry-svc/permits", json={"permits": [{"role": "admin", "permissions": []}]})
    assert bad.status_code == 400 and "must keep" in bad.json["error"]


def test_any_token_learns_what_it_may_do(client_for):
    admin = client_for("root", "admin").get("/registry-svc/grants")
    assert admin.status_code == 200 and admin.json["slug"] == "root" and admin.json["roles"] == ["admin"]
    assert admin.json["permissions"]["registry-svc:instance:delete"] is True
    user = client_for("team-a", "user").get("/registry-svc/grants").json
    # The default permits: users see and edit their own slug's instances, and see nodes.
    assert user["permissions"] == {"registry-svc:instance:view": False, "registry-svc:instance:edit": False,
                                   "registry-svc:node:view": False}
    assert client_for("guest").get("/registry-svc/grants").json == {"slug": "guest", "roles": [], "permissions": {}}
    assert client_for().get("/registry-svc/grants").status_code == 401
