"""Permissions, permits and the caller they apply to.

A permit grants permissions to a role or to a slug; with `allInstances` those permissions
reach every instance instead of only the caller's own. The permits live in the replicated
state, so a change takes effect on every peer, and apply decides with them.
"""

from . import fields as f
from .errors import FORBIDDEN, ValidationError, failure, ok

INSTANCE_VIEW = "registry-svc:instance:view"
INSTANCE_EDIT = "registry-svc:instance:edit"
INSTANCE_DELETE = "registry-svc:instance:delete"
NODE_VIEW = "registry-svc:node:view"
NODE_DELETE = "registry-svc:node:delete"
PERMIT_VIEW = "registry-svc:permit:view"  # extension
PERMIT_EDIT = "registry-svc:permit:edit"  # extension
CLUSTER_ADMIN = "registry-svc:cluster:admin"  # extension: backups

PERMISSIONS = (INSTANCE_VIEW, INSTANCE_EDIT, INSTANCE_DELETE, NODE_VIEW, NODE_DELETE, PERMIT_VIEW, PERMIT_EDIT,
               CLUSTER_ADMIN)

ADMIN_ROLE = "admin"
USER_ROLE = "user"

DEFAULT_PERMITS = (
    {"role": ADMIN_ROLE, "permissions": list(PERMISSIONS), "allInstances": True},
    {"role": USER_ROLE, "permissions": [INSTANCE_VIEW, INSTANCE_EDIT, NODE_VIEW], "allInstances": False},
    {"slug": "proxy-svc", "permissions": [INSTANCE_VIEW], "allInstances": True},
    {"slug": "deploy-svc", "permissions": [INSTANCE_VIEW, INSTANCE_EDIT, INSTANCE_DELETE], "allInstances": True},
)

# A caller that is the cluster itself (a peer's own node report, or a journal entry written
# before callers were recorded): it may do anything.
SYSTEM = None


def default_permits():
    return [dict(permit, permissions=list(permit["permissions"])) for permit in DEFAULT_PERMITS]


def caller(slug, roles):
    return {"slug": slug, "roles": sorted(set(roles))}


def grants(permits, who):
    """{permission: reaches every instance} for a caller under the given permits."""
    if who is SYSTEM:
        return {permission: True for permission in PERMISSIONS}
    roles = set(who.get("roles") or ())
    granted = {}
    for permit in permits:
        if permit.get("role") in roles or ("slug" in permit and permit["slug"] == who.get("slug")):
            for permission in permit["permissions"]:
                granted[permission] = granted.get(permission, False) or bool(permit.get("allInstances"))
    return granted


def missing(permission):
    return f"missing permission {permission}"


PERMIT = f.Body(
    "Permit",
    {
        "role": f.Text(256, "The role granted (exactly one of role and slug)."),
        "slug": f.Text(256, "The slug granted (exactly one of role and slug)."),
        "permissions": f.TextList(len(PERMISSIONS), 64, "Permissions granted; absent or null grants none.",
                                  enum=PERMISSIONS),
        "allInstances": f.Flag(False, "The permissions reach every instance, not only the caller's own."),
    },
    "Permissions granted to a role or to a slug.",
    exactly_one_of=("role", "slug"),
)
PERMITS = f.Body(
    "SetPermitsRequest",
    {"permits": f.Items(PERMIT, 1000, "Every permit: they replace the current ones whole.")},
    f"Extension: replaces every permit. Role '{ADMIN_ROLE}' must keep {PERMIT_EDIT}.",
    required=("permits",),
    example={"permits": default_permits()},
)


def validate_permits(body):
    """The body of PUT /registry-svc/permits: {"permits": [...]}, replacing every permit."""
    PERMITS.check_shape(body)
    permits = body.get("permits")
    if not isinstance(permits, list):
        raise ValidationError(f"field 'permits' must be an array, got {f.json_type_name(permits)}")
    if len(permits) > PERMITS.fields["permits"].max_items:
        raise ValidationError(f"at most {PERMITS.fields['permits'].max_items} permits")
    out = []
    for position, permit in enumerate(permits):
        what = f"permit {position}"
        PERMIT.check_shape(permit, what)
        role = PERMIT.read(permit, "role")
        slug = PERMIT.read(permit, "slug")
        if (role is None) == (slug is None):
            raise ValidationError(f"{what} must name exactly one of 'role' or 'slug'")
        granted = PERMIT.read(permit, "permissions") or []
        unknown = sorted(set(granted) - set(PERMIT.fields["permissions"].enum))
        if unknown:
            raise ValidationError(f"{what} has unknown permission(s) {', '.join(unknown)}; "
                                  f"known ones are {', '.join(PERMISSIONS)}")
        all_instances = permit.get("allInstances", PERMIT.fields["allInstances"].default)
        if not isinstance(all_instances, bool):
            raise ValidationError(f"{what}: 'allInstances' must be true or false")
        entry = {"role": role} if role is not None else {"slug": slug}
        entry.update(permissions=sorted(set(granted), key=PERMISSIONS.index), allInstances=all_instances)
        out.append(entry)
    if PERMIT_EDIT not in grants(out, caller("", [ADMIN_ROLE])):
        raise ValidationError(f"the permits must keep {PERMIT_EDIT} for role '{ADMIN_ROLE}', "
                              "or no one could change them again")
    return out


def apply_set(state, command):
    if PERMIT_EDIT not in state.grants(command.get("caller", SYSTEM)):
        return failure(FORBIDDEN, missing(PERMIT_EDIT))
    permits = command["permits"]
    if not isinstance(permits, list) or not all(isinstance(p, dict) and isinstance(p.get("permissions"), list)
                                                for p in permits):
        raise TypeError("permits must be a list of permit objects")
    state.permits = [dict(p, permissions=list(p["permissions"])) for p in permits]
    return ok()
