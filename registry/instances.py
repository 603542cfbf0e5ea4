"""Instances: what a registration request may say, how it becomes a record, and how lists filter.

An instance is one live process of a service, addressed by a full `url` or by its parts
(scheme + host or ip + port + path). The address group is replaced as a whole on every
registration; the other fields are merged, so re-registering without `status` keeps it.
"""

import ipaddress
import re
import sys
from urllib.parse import urlsplit

from . import fields as f
from .durations import parse_seconds
from .errors import CONFLICT, FORBIDDEN, NOT_FOUND, ValidationError, failure, ok
from .permissions import INSTANCE_DELETE, INSTANCE_EDIT, INSTANCE_VIEW, SYSTEM, missing
from .timestamps import format_ns

STATUSES = ("Unknown", "Healthy", "Degraded", "Unreachable", "Error")
DEFAULT_STATUS = "Unknown"

# Letters, digits and . _ : @ + -, starting with a letter or digit.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@+-]*$"
SCHEME_PATTERN = r"^[A-Za-z][A-Za-z0-9+.-]*$"
# A DNS name (or a Docker-style one with _), at most 253 characters (the spec's max_length).
HOST_PATTERN = r"^[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?$"
HOST_MAX_LENGTH = 253
_DURATION = "a duration like 30s, 5m, 24h or 7d (at least 1s, at most 366d)"

ID = f.Text(256, "Given by the caller, or generated (inst_ + random). "
                 "Re-registering with the same id updates that instance.",
            pattern=ID_PATTERN, example="my-service-1",
            mismatch="field 'id' may hold letters, digits and . _ : @ + - and must start with a letter or digit")
STATUS = f.Text(32, "Unknown by default; the health scans set Healthy, Degraded or Unreachable.",
                enum=STATUSES, mismatch=f"unknown status '{{value}}'; use one of {', '.join(STATUSES)}")
DETAILS = f.Text(16384, "Free text about the status.", multiline=True, allow_empty=True)

REGISTRATION = f.Body(
    "RegisterInstanceRequest",
    {
        "id": ID,
        "url": f.Text(2048, "The full address, e.g. http://my-service:8080; or give scheme, host or ip, "
                            "port and path instead. Absolute, without credentials or fragment.",
                      example="http://my-service:8080"),
        "scheme": f.Text(32, "With host or ip and port, the alternative to url.", pattern=SCHEME_PATTERN,
                         mismatch="field 'scheme' is not a URL scheme: '{value}' (e.g. http, https, grpc)",
                         example="http"),
        "host": f.Text(HOST_MAX_LENGTH, "A host name.", pattern=HOST_PATTERN,
                       mismatch="field 'host' is not a host name: '{value}'", example="my-service"),
        "ip": f.Text(64, "An IPv4 or IPv6 address.", example="10.0.0.7"),
        "port": f.Integer(1, 65535, "The port; with url, the scheme's default when the url has none.",
                          example=8080),
        "path": f.Text(2048, "Appended to the url built from the parts (a leading / is added); "
                             "no whitespace.", allow_empty=True),
        "slug": f.Text(256, "The owner's slug; a non-admin may give only its own (the default)."),
        "status": STATUS,
        "details": DETAILS,
        "tags": f.TextList(64, 256, "Used to filter (every tag filter must match).", example=["dev"]),
        "nodeUrl": f.Text(2048, "URL of the registry node the instance runs on."),
        "deploymentId": f.Text(256, "Set when deployed by a deployer."),
        "ttl": f.Text(32, f"Extension: {_DURATION}. The instance is not TCP-scanned; it turns "
                          "Unreachable once its last heartbeat is older than this.", example="30s"),
        "deregisterAfter": f.Text(32, f"Extension: {_DURATION}. The instance is removed once it has "
                                      "been Unreachable this long.", example="5m"),
    },
    "Registers an instance, or updates the one with the same id or url. Give either url, or "
    "scheme + host or ip + port (+ path); parts given beside a url must agree with it. "
    "A null field is the same as an absent one.",
    alternatives=(("url",), ("scheme", "host", "port"), ("scheme", "ip", "port")),
)
HEARTBEAT = f.Body(
    "InstanceHeartbeatRequest",
    {"status": STATUS, "details": DETAILS},
    "Extension: the instance says it is alive; status defaults to Healthy. The body is optional.",
)
# GET /registry-svc/instances: exact-match filters, each once; `tag` may repeat (all must match).
FILTERS = {
    "id": "the instance id", "slug": "the owner slug", "host": "the host", "ip": "the ip address",
    "scheme": "the scheme", "path": "the path", "deploymentId": "the deployment id",
    "nodeUrl": "the registry node URL", "status": "the status", "tag": "a tag (repeat: all must match)",
}

ADDRESS_FIELDS = ("url", "scheme", "host", "ip", "port", "path")
_ADDRESS_FIELD_SET = frozenset(ADDRESS_FIELDS)
MERGED_FIELDS = ("slug", "status", "details", "tags", "nodeUrl", "deploymentId", "ttl", "deregisterAfter")
REQUEST_FIELDS = tuple(REGISTRATION.fields)
# Field order of a record as listed, for humans reading raw JSON.
RECORD_ORDER = REQUEST_FIELDS + ("lastHeartbeat", "unreachableSince")
# Values many instances share (a service's slug and tags, the node it runs on, its status): kept
# once in memory rather than once per record, since each command decodes its own copies.
SHARED_VALUE_FIELDS = frozenset(("scheme", "path", "slug", "status", "nodeUrl", "deploymentId"))
_SHARED_STRING_FIELDS = tuple(name for name in RECORD_ORDER if name in SHARED_VALUE_FIELDS)
# Instances of a service mostly carry the same tags, so equal tag lists are one list (records are
# replaced, never changed in place, so sharing is safe). The table forgets everything when full,
# so tags that never repeat cannot grow it without bound.
_SHARED_TAG_LISTS_MAX = 65_536
_shared_tag_lists = {}
_shared_ports = {}  # 65,535 at most
HEARTBEAT_FIELDS = tuple(HEARTBEAT.fields)

# Single-valued exact-match filters of GET /registry-svc/instances; `tag` may repeat.
SINGLE_FILTERS = tuple(name for name in FILTERS if name != "tag")
FILTER_NAMES = tuple(FILTERS)

_SCHEME = re.compile(SCHEME_PATTERN)
# What str.isspace() calls whitespace (re's \s on str patterns is the same test), in one C scan.
_WHITESPACE = re.compile(r"\s")
_HOST = re.compile(HOST_PATTERN)
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443, "grpc": 80, "grpcs": 443}


def validate_registration(body):
    """Turn a PUT /registry-svc/instance body into the normalised fields a command carries."""
    REGISTRATION.check_shape(body)
    out = {}
    instance_id = REGISTRATION.read(body, "id")
    if instance_id is not None:
        out["id"] = instance_id
    out.update(_address(body))
    for name in ("slug", "nodeUrl", "deploymentId"):
        value = REGISTRATION.read(body, name)
        if value is not None:
            out[name] = value
    out.update(_status_and_details(REGISTRATION, body))
    tags = REGISTRATION.read(body, "tags")
    if tags is not None:
        out["tags"] = tags
    for name in ("ttl", "deregisterAfter"):  # extensions: "30s", "5m"
        value = REGISTRATION.read(body, name)
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
    HEARTBEAT.check_shape(body)
    return _status_and_details(HEARTBEAT, body)


def _status_and_details(spec, body):
    out = {}
    status = spec.read(body, "status")
    if status is not None:
        out["status"] = status
    details = spec.read(body, "details")
    if details is not None:
        out["details"] = details
    return out


def validate_status(status):
    return STATUS.check(status)


def _address(body):
    # Every part's type and length first, then the patterns: the first mistake is reported.
    url, scheme, host, ip, port, path = (REGISTRATION.read(body, name, check=False) for name in ADDRESS_FIELDS)
    if scheme is not None:
        REGISTRATION.fields["scheme"].check(scheme)
    if host is not None:
        REGISTRATION.fields["host"].check(host)
    if ip is not None:
        ip = _parse_ip(ip)
    if path is not None:
        if _WHITESPACE.search(path):
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
    if _WHITESPACE.search(url):
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
        if len(hostname) > HOST_MAX_LENGTH or not _HOST.match(hostname):
            raise ValidationError(f"field 'url' has an invalid host {hostname!r}") from None
        derived["host"] = hostname
    if port is None:
        derived["port"] = _DEFAULT_PORTS.get(parts.scheme.lower())
    # The parts become fields of the record: they keep the limits those fields have when given.
    for name in ("scheme", "ip"):
        limit = REGISTRATION.fields[name].max_length
        if derived.get(name) is not None and len(derived[name]) > limit:
            raise ValidationError(f"the {name} in field 'url' is {len(derived[name])} characters long; "
                                  f"the limit is {limit}")
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


def listing_slug(state, who):
    """The only slug whose instances `who` may list, or None when it may list every instance."""
    granted = state.grants(who)
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
    granted = state.grants(who)
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
        record.update({k: v for k, v in existing.items() if k not in _ADDRESS_FIELD_SET})
    elif who is not SYSTEM and "slug" not in fields:
        record["slug"] = who["slug"]
    record.update(fields)
    if record["status"] != "Unreachable":
        record.pop("unreachableSince", None)
    record["lastHeartbeat"] = format_ns(command["now"])
    # Records are replaced, never changed in place: readers and snapshots hold old ones safely.
    state.put_instance(stored_record(record))
    return ok(id=instance_id, created=existing is None)


def stored_record(record):
    """The record as the state keeps it: fields in RECORD_ORDER, shared values shared."""
    # Every peer and HTTP worker runs this for every registration it applies: one comprehension
    # over the field order, then the few shared values, instead of a chain of tests per field.
    stored = {name: record[name] for name in RECORD_ORDER if name in record}
    for name in _SHARED_STRING_FIELDS:
        value = stored.get(name)
        if type(value) is str:
            stored[name] = sys.intern(value)
    tags = stored.get("tags")
    if tags and type(tags) is list:
        stored["tags"] = _shared_tags(tags)
    port = stored.get("port")
    if type(port) is int and 0 < port < 65536:
        stored["port"] = _shared_ports.setdefault(port, port)  # an int above 256 is 28 bytes each
    if len(stored) != len(record):  # a field this version does not know (a newer peer's dump): kept
        for name, value in record.items():
            stored.setdefault(name, value)
    return stored


def _shared_tags(tags):
    try:
        key = tuple(tags)
        shared = _shared_tag_lists.get(key)
    except TypeError:  # an unhashable tag (validation lets none through; a hand-made dump might)
        return list(tags)
    if shared is None:
        if not all(type(tag) is str for tag in key):
            return list(tags)  # kept apart: 1 and True are equal keys, yet not the same tags
        if len(_shared_tag_lists) >= _SHARED_TAG_LISTS_MAX:
            _shared_tag_lists.clear()
        shared = _shared_tag_lists[key] = [sys.intern(tag) for tag in key]
    return shared


def checked_instance(state, who, permission, instance_id):
    """(the instance `who` may act on with `permission`, None), or (None, the failure to answer)."""
    granted = state.grants(who)
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
