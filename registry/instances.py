"""Instances: what a registration request may say, how it becomes a record, and how lists filter.

An instance is one live process of a service, addressed by a full `url` or by its parts
(scheme + host or ip + port + path). The address group is replaced as a whole on every
registration; the other fields are merged, so re-registering without `status` keeps it.
"""

import ipaddress
import re
from urllib.parse import urlsplit

from . import fields as f
from .durations import parse_seconds
from .errors import CONFLICT, FORBIDDEN, NOT_FOUND, ValidationError, failure, ok
from .permissions import INSTANCE_DELETE, INSTANCE_EDIT, INSTANCE_VIEW, SYSTEM, grants, missing
from .timestamps import format_ns

STATUSES = ("Unknown", "Healthy", "Degraded", "Unreachable", "Error")
DEFAULT_STATUS = "Unknown"

ADDRESS_FIELDS = ("url", "scheme", "host", "ip", "port", "path")
MERGED_FIELDS = ("slug", "status", "details", "tags", "nodeUrl", "deploymentId", "ttl", "deregisterAfter")
REQUEST_FIELDS = ("id",) + ADDRESS_FIELDS + MERGED_FIELDS
# Field order of a record as listed, for humans reading raw JSON.
RECORD_ORDER = REQUEST_FIELDS + ("lastHeartbeat", "unreachableSince")
HEARTBEAT_FIELDS = ("status", "details")

# Single-valued exact-match filters of GET /registry-svc/instances; `tag` may repeat.
SINGLE_FILTERS = ("id", "slug", "host", "ip", "scheme", "path", "deploymentId", "nodeUrl", "status")
FILTER_NAMES = SINGLE_FILTERS + ("tag",)

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+-]*$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*$")
_HOST = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?$")
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443, "grpc": 80, "grpcs": 443}


def validate_registration(body):
    """Turn a PUT /registry-svc/instance body into the normalised fields a command carries."""
    f.require_object(body)
    f.reject_unknown(body, REQUEST_FIELDS)
    out = {}
    instance_id = f.string(body, "id", max_length=256)
    if instance_id is not None:
        if not _ID.match(instance_id):
            raise ValidationError(
                "field 'id' may hold letters, digits and . _ : @ + - and must start with a letter or digit"
            )
        out["id"] = instance_id
    out.update(_address(body))
    for name in ("slug", "nodeUrl", "deploymentId"):
        value = f.string(body, name, max_length=2048 if name == "nodeUrl" else 256)
        if value is not None:
            out[name] = value
    out.update(_status_and_details(body))
    tags = f.string_list(body, "tags", max_items=64, max_length=256)
    if tags is not None:
        out["tags"] = tags
    for name in ("ttl", "deregisterAfter"):  # extensions: "30s", "5m"
        value = f.string(body, name, max_length=32)
        if value is not None:
            seconds = parse_seconds(value, f"field '{name}'")
            if seconds < 1 or seconds > 366 * 86400:
                raise ValidationError(f"field '{name}' must be between 1s and 366d, got {value!r}")
            out[name] = value
    return out


def validate_heartbeat(body):
    """The optional body of PUT /registry-svc/instance/{id}/heartbeat: status and details."""
    if body is None:
        return {}
    f.require_object(body)
    f.reject_unknown(body, HEARTBEAT_FIELDS)
    return _status_and_details(body)


def _status_and_details(body):
    out = {}
    status = f.string(body, "status", max_length=32)
    if status is not None:
        out["status"] = validate_status(status)
    details = f.string(body, "details", max_length=16384, multiline=True, allow_empty=True)
    if details is not None:
        out["details"] = details
    return out


def validate_status(status):
    if status not in STATUSES:
        raise ValidationError(f"unknown status '{status}'; use one of {', '.join(STATUSES)}")
    return status


def _address(body):
    url = f.string(body, "url", max_length=2048)
    scheme = f.string(body, "scheme", max_length=32)
    host = f.string(body, "host", max_length=253)
    ip = f.string(body, "ip", max_length=64)
    port = f.integer(body, "port", minimum=1, maximum=65535)
    path = f.string(body, "path", max_length=2048, allow_empty=True)
    if scheme is not None and not _SCHEME.match(scheme):
        raise ValidationError(f"field 'scheme' is not a URL scheme: '{scheme}' (e.g. http, https, grpc)")
    if host is not None and not _HOST.match(host):
        raise ValidationError(f"field 'host' is not a host name: '{host}'")
    if ip is not None:
        ip = _parse_ip(ip)
    if path is not None:
        if any(c.isspace() for c in path):
            raise ValidationError("field 'path' must not contain whitespace")
        if path and not path.startswith("/"):
            path = "/" + path

    if url is None:
        if scheme is None and host is None and ip is None and port is None:
            raise ValidationError(
                "give either 'url' (e.g. http://my-service:8080) or 'scheme' + 'host' or 'ip' + 'port'"
            )
        if host is None and ip is None:
            raise ValidationError("both 'host' and 'ip' are missing: give one of them, or give 'url'")
        if scheme is None:
            raise ValidationError("field 'scheme' is missing: give it (e.g. http), or give 'url'")
        if port is None:
            raise ValidationError("field 'port' is missing: give it (1..65535), or give 'url'")
        authority = host if host is not None else (f"[{ip}]" if ":" in ip else ip)
        built = {"url": f"{scheme}://{authority}:{port}{path or ''}", "scheme": scheme, "port": port}
        for name, value in (("host", host), ("ip", ip), ("path", path)):
            if value:
                built[name] = value
        return built

    parsed = _parse_url(url)
    given = {"scheme": scheme, "host": host, "ip": ip, "port": port, "path": path}
    for name, value in given.items():
        if value is None:
            continue
        derived = parsed.get(name)
        if name == "path" and (value or "/") == (derived or "/"):
            continue
        if name == "scheme" and derived is not None and value.lower() == derived.lower():
            continue
        if name == "host" and derived is not None and value.lower() == derived.lower():
            continue
        if value != derived:
            raise ValidationError(
                f"field '{name}' ({value!r}) disagrees with url {url!r}; give only 'url', or parts that match it"
            )
    return {"url": url, **{k: v for k, v in parsed.items() if v not in (None, "")}}


def _parse_ip(text):
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValidationError(f"field 'ip' is not an IPv4 or IPv6 address: '{text}'") from None


def _parse_url(url):
    """The parts of an absolute URL, or a ValidationError that says what is wrong with it."""
    if any(c.isspace() for c in url):
        raise ValidationError("field 'url' must not contain whitespace")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise ValidationError(f"field 'url' is malformed ({error}): {url!r}") from None
    if not parts.scheme or not _SCHEME.match(parts.scheme) or not url.startswith(parts.scheme + "://"):
        raise ValidationError(f"field 'url' must be absolute, like http://my-service:8080; got {url!r}")
    if not parts.hostname:
        raise ValidationError(f"field 'url' has no host: {url!r}")
    if parts.username is not None or parts.password is not None:
        raise ValidationError("field 'url' must not carry credentials (user:password@): every lister would see them")
    if parts.fragment or url.endswith("#"):
        raise ValidationError("field 'url' must not have a fragment (#...)")
    if port == 0:
        raise ValidationError("field 'url' has port 0; use a port between 1 and 65535")
    hostname = parts.hostname
    derived = {"scheme": parts.scheme, "path": parts.path, "port": port}
    try:
        derived["ip"] = str(ipaddress.ip_address(hostname))
    except ValueError:
        if not _HOST.match(hostname):
            raise ValidationError(f"field 'url' has an invalid host {hostname!r}") from None
        derived["host"] = hostname
    if port is None:
        derived["port"] = _DEFAULT_PORTS.get(parts.scheme.lower())
    return derived


def validate_filters(pairs):
    """Parse query pairs into filters; unknown names, repeats and bad values are 400s."""
    filters = {}
    tags = []
    for name, value in pairs:
        if name not in FILTER_NAMES:
            raise ValidationError(
                f"unknown filter '{name}'; filters are {', '.join(FILTER_NAMES)}"
            )
        if value == "":
            raise ValidationError(f"filter '{name}' needs a value")
        if name == "tag":
            tags.append(value)
            continue
        if name in filters:
            raise ValidationError(f"filter '{name}' is given twice; only 'tag' may repeat")
        if name == "status":
            validate_status(value)
        filters[name] = value
    if tags:
        filters["tags"] = tags
    return filters


def matches(record, filters):
    for name, wanted in filters.items():
        if name == "tags":
            have = record.get("tags") or ()
            if not all(tag in have for tag in wanted):
                return False
        elif record.get(name) != wanted:
            return False
    return True


def listing_slug(permits, who):
    """The only slug whose instances `who` may list, or None when it may list every instance."""
    granted = grants(permits, who)
    return None if granted.get(INSTANCE_VIEW) else who["slug"]


def _owner_refusal(record, who):
    return failure(
        FORBIDDEN,
        f"instance {record['id']} belongs to slug '{record.get('slug', '')}', not to '{who['slug']}'; "
        f"only its owner, deploy-svc or an admin may change it (an admin frees it with "
        f"DELETE /registry-svc/instance/{record['id']})",
    )


def apply_register(state, command):
    fields = command["fields"]
    who = command.get("caller", SYSTEM)
    granted = grants(state.permits, who)
    if INSTANCE_EDIT not in granted:
        return failure(FORBIDDEN, missing(INSTANCE_EDIT))
    everywhere = granted[INSTANCE_EDIT]
    url = fields["url"]
    owner_of_url = state.instance_by_url.get(url)
    instance_id = fields.get("id")
    if not everywhere:
        # Ownership is decided here, against the committed state, so two racing writers
        # cannot both pass: the first to commit owns the instance, the other is refused.
        if fields.get("slug", who["slug"]) != who["slug"]:
            return failure(FORBIDDEN, f"you may register instances only under your own slug '{who['slug']}'")
        for taken in (owner_of_url, instance_id):
            record = state.instances.get(taken) if taken else None
            if record is not None and record.get("slug") != who["slug"]:
                return _owner_refusal(record, who)
    if instance_id is None:
        instance_id = owner_of_url or command["generatedId"]
    elif owner_of_url is not None and owner_of_url != instance_id:
        return failure(
            CONFLICT,
            f"url {url} is already registered as instance {owner_of_url}; "
            f"update that instance (id {owner_of_url}) or remove it first",
        )
    existing = state.instances.get(instance_id)
    record = {"id": instance_id, "status": DEFAULT_STATUS}
    if existing is not None:
        record.update({k: v for k, v in existing.items() if k not in ADDRESS_FIELDS})
        if existing["url"] != url:
            state.instance_by_url.pop(existing["url"], None)
    elif who is not SYSTEM and "slug" not in fields:
        record["slug"] = who["slug"]
    record.update(fields)
    if record["status"] != "Unreachable":
        record.pop("unreachableSince", None)
    record["lastHeartbeat"] = format_ns(command["now"])
    # Records are replaced, never changed in place: readers and snapshots hold old ones safely.
    state.instances[instance_id] = {k: record[k] for k in RECORD_ORDER if k in record}
    state.instance_by_url[url] = instance_id
    return ok(id=instance_id, created=existing is None)


def checked_instance(state, who, permission, instance_id):
    """(the instance `who` may act on with `permission`, None), or (None, the failure to answer)."""
    granted = grants(state.permits, who)
    if permission not in granted:
        return None, failure(FORBIDDEN, missing(permission))
    record = state.instances.get(instance_id)
    if record is None:
        return None, failure(NOT_FOUND, "Service Not Found")
    if not granted[permission] and record.get("slug") != who["slug"]:
        return None, _owner_refusal(record, who)
    return record, None


def apply_remove(state, command):
    record, refusal = checked_instance(state, command.get("caller", SYSTEM), INSTANCE_DELETE, command["id"])
    if refusal:
        return refusal
    state.drop_instance(record)
    return ok(id=record["id"])
