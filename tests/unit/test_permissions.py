import pytest

from registry import commands
from registry.errors import ValidationError
from registry.instances import validate_registration
from registry.permissions import (
    CLUSTER_ADMIN, INSTANCE_DELETE, INSTANCE_EDIT, INSTANCE_VIEW, NODE_DELETE, NODE_VIEW, PERMIT_EDIT, PERMIT_VIEW, caller,
    default_permits, grants, validate_permits,
)
from registry.state import RegistryState

A = caller("team-a", ["user"])
B = caller("team-b", ["user"])
PROXY = caller("proxy-svc", ["user"])
DEPLOY = caller("deploy-svc", ["user"])
ADMIN = caller("root", ["admin"])
NOBODY = caller("guest", [])


def register(state, body, who, generated="inst_gen"):
    command = commands.register_instance(validate_registration(body), generated, 1, who)
    return state.apply(command, state.index + 1)


def test_default_permits_follow_the_contract():
    permits = default_permits()
    assert set(grants(permits, ADMIN)) == {INSTANCE_VIEW, INSTANCE_EDIT, INSTANCE_DELETE, NODE_VIEW, NODE_DELETE,
                                           PERMIT_VIEW, PERMIT_EDIT, CLUSTER_ADMIN}
    assert all(grants(permits, ADMIN).values())
    assert grants(permits, A) == {INSTANCE_VIEW: False, INSTANCE_EDIT: False, NODE_VIEW: False}
    assert grants(permits, PROXY)[INSTANCE_VIEW] is True and grants(permits, PROXY)[INSTANCE_EDIT] is False
    assert grants(permits, DEPLOY) == {INSTANCE_VIEW: True, INSTANCE_EDIT: True, INSTANCE_DELETE: True,
                                       NODE_VIEW: False}
    assert grants(permits, NOBODY) == {}


def test_a_new_instance_belongs_to_its_registrant():
    state = RegistryState()
    assert register(state, {"url": "http://a:1"}, A)["code"] == "ok"
    [record] = state.list_instances({})
    assert record["slug"] == "team-a"


def test_non_admins_register_only_under_their_own_slug():
    state = RegistryState()
    result = register(state, {"url": "http://a:1", "slug": "team-b"}, A)
    assert result["code"] == "forbidden" and "own slug 'team-a'" in result["error"]
    assert register(state, {"url": "http://a:1", "slug": "team-a"}, A)["code"] == "ok"


def test_another_slug_cannot_take_over_by_url_or_by_id():
    state = RegistryState()
    register(state, {"id": "inst_a", "url": "http://a:1"}, A)
    for body in ({"url": "http://a:1"}, {"id": "inst_a", "url": "http://other:1"}):
        result = register(state, body, B)
        assert result["code"] == "forbidden"
        assert "inst_a" in result["error"] and "DELETE /registry-svc/instance/inst_a" in result["error"]
    assert state.list_instances({})[0]["url"] == "http://a:1"


def test_owner_deploy_svc_and_admin_may_update():
    state = RegistryState()
    register(state, {"id": "inst_a", "url": "http://a:1"}, A)
    assert register(state, {"id": "inst_a", "url": "http://a:1", "status": "Healthy"}, A)["code"] == "ok"
    assert register(state, {"id": "inst_a", "url": "http://a:1", "status": "Degraded"}, DEPLOY)["code"] == "ok"
    assert register(state, {"id": "inst_a", "url": "http://a:1", "status": "Error"}, ADMIN)["code"] == "ok"
    [record] = state.list_instances({})
    assert record["slug"] == "team-a" and record["status"] == "Error"


def test_deploy_svc_registers_for_a_service_slug():
    state = RegistryState()
    assert register(state, {"url": "http://svc:1", "slug": "my-service"}, DEPLOY)["code"] == "ok"
    assert state.list_instances({})[0]["slug"] == "my-service"


def test_removal_under_default_permits_is_for_deploy_svc_and_admins():
    state = RegistryState()
    for n, who in enumerate((DEPLOY, ADMIN)):
        register(state, {"id": f"inst_{n}", "url": f"http://a:{n + 1}"}, A)
        for refused in (A, B, PROXY):  # role user has no instance:delete, not even for its own
            result = state.apply(commands.remove_instance(f"inst_{n}", refused), 10)
            assert result == {"code": "forbidden", "error": f"missing permission {INSTANCE_DELETE}"}
        assert state.apply(commands.remove_instance(f"inst_{n}", who), 12)["code"] == "ok"
    assert state.apply(commands.remove_instance("inst_missing", ADMIN), 13)["code"] == "not_found"


def test_a_delete_permit_without_all_instances_reaches_only_the_callers_own():
    state = RegistryState()
    permits = default_permits() + [{"role": "user", "permissions": [INSTANCE_DELETE], "allInstances": False}]
    state.apply(commands.set_permits(validate_permits({"permits": permits}), ADMIN), 1)
    register(state, {"id": "inst_a", "url": "http://a:1"}, A)
    result = state.apply(commands.remove_instance("inst_a", B), 3)
    assert result["code"] == "forbidden" and "belongs to slug 'team-a'" in result["error"]
    assert state.apply(commands.remove_instance("inst_a", A), 4)["code"] == "ok"


def test_listing_shows_non_admins_only_their_own():
    state = RegistryState()
    register(state, {"url": "http://a:1"}, A, generated="inst_1")
    register(state, {"url": "http://b:1"}, B, generated="inst_2")
    slugs = lambda who, filters=None: [r["slug"] for r in state.list_instances(filters or {}, who)]  # noqa: E731
    assert slugs(A) == ["team-a"]
    assert slugs(A, {"slug": "team-b"}) == []
    assert slugs(B) == ["team-b"]
    assert slugs(PROXY) == slugs(DEPLOY) == slugs(ADMIN) == ["team-a", "team-b"]


def test_node_removal_and_permits_need_their_permissions():
    state = RegistryState()
    state.apply(commands.report_node({"id": "n", "url": "http://n:1"}, 1), 1)
    assert state.apply(commands.remove_node("http://n:1", A), 2)["code"] == "forbidden"
    assert state.apply(commands.set_permits(default_permits(), A), 3)["code"] == "forbidden"
    assert state.apply(commands.remove_node("http://n:1", ADMIN), 4)["code"] == "ok"


def test_changed_permits_take_effect_in_apply():
    state = RegistryState()
    register(state, {"id": "inst_a", "url": "http://a:1"}, A)
    # Refused first, so the state has remembered what team-b is granted...
    assert state.apply(commands.remove_instance("inst_a", B), 2)["code"] == "forbidden"
    permits = validate_permits({"permits": default_permits() + [{"slug": "team-b", "permissions": [INSTANCE_DELETE],
                                                                   "allInstances": True}]})
    assert state.apply(commands.set_permits(permits, ADMIN), 3)["code"] == "ok"
    # ...and forgets it when the permits change.
    assert state.apply(commands.remove_instance("inst_a", B), 4)["code"] == "ok"
    restored = RegistryState.from_snapshot(state.to_snapshot())
    assert restored.permits == state.permits and restored.grants(B) == grants(permits, B)


@pytest.mark.parametrize("body, fragment", [
    ({"permits": "all"}, "must be an array"),
    ({"permits": [{"permissions": []}]}, "exactly one of 'role' or 'slug'"),
    ({"permits": [{"role": "a", "slug": "b", "permissions": []}]}, "exactly one of"),
    ({"permits": [{"role": "admin", "permissions": ["registry-svc:everything"]}]}, "unknown permission"),
    ({"permits": [{"role": "admin", "permissions": [PERMIT_EDIT], "allInstances": "yes"}]}, "true or false"),
    ({"permits": [{"role": "user", "permissions": list(default_permits()[0]["permissions"])}]}, "must keep"),
    ({"permits": [], "extra": 1}, "unknown field"),
])
def test_bad_permits_are_refused(body, fragment):
    with pytest.raises(ValidationError) as caught:
        validate_permits(body)
    assert fragment in caught.value.message
