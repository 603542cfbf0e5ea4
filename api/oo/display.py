"""How `oo` shows records: aligned tables, heartbeats as ages, sizes in binary units."""

from datetime import datetime, timezone

# The registry's default node heartbeat is 15 s; three missed ones make a node stale.
STALE_NODE_SECONDS = 45


def table(header, rows):
    """Columns separated by two spaces and padded to the widest cell, like `kubectl get`."""
    lines = [list(header)] + [["-" if cell in (None, "") else str(cell) for cell in row] for row in rows]
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines)


def parse_timestamp(text):
    """An aware datetime from the contract's RFC 3339 timestamps (nanoseconds allowed), or None."""
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def age_seconds(text, now):
    moment = parse_timestamp(text)
    return None if moment is None else max(0.0, (now - moment).total_seconds())


def ago(text, now):
    """'8s ago', '3m ago', '5h ago', '2d ago'; '-' when absent, the raw text when unreadable."""
    seconds = age_seconds(text, now)
    if seconds is None:
        return text or "-"
    seconds = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def node_status(record, now):
    """The record's own status where the registry gives one, else judged from its heartbeat."""
    if record.get("status"):
        return record["status"]
    seconds = age_seconds(record.get("lastHeartbeat"), now)
    if seconds is None:
        return "Unknown"
    return "Stale" if seconds > STALE_NODE_SECONDS else "Healthy"


def binary_size(count):
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def usage(record, resource):
    """'34% of 15.5 GiB' for memory and disk, '12% of 8' (cores) for cpu; '-' when not reported."""
    reading = (record.get("usage") or {}).get(resource) or {}
    percent, total = reading.get("percent"), reading.get("total")
    if not isinstance(percent, (int, float)):
        return "-"
    if not isinstance(total, (int, float)) or total <= 0:
        return f"{percent:.0f}%"
    # The registry reports cpu in millicores.
    of = f"{total / 1000:g}" if resource == "cpu" else binary_size(total)
    return f"{percent:.0f}% of {of}"


def instance_rows(records, now):
    header = ("INSTANCE ID", "URL", "STATUS", "OWNER SLUG", "TAGS", "LAST HEARTBEAT")
    ordered = sorted(records, key=lambda r: (r.get("slug") or "", r.get("id") or ""))
    return header, [(r.get("id"), r.get("url"), r.get("status"), r.get("slug"), ",".join(r.get("tags") or ()),
                     ago(r.get("lastHeartbeat"), now))
                    for r in ordered]


def node_rows(records, now):
    header = ("NODE ID", "URL", "STATUS", "CPU", "MEM", "DISK", "GPUS", "LAST HEARTBEAT")
    ordered = sorted(records, key=lambda r: r.get("url") or "")
    return header, [(r.get("id"), r.get("url"), node_status(r, now), usage(r, "cpu"), usage(r, "memory"),
                     usage(r, "disk"), len(r.get("gpus") or ()), ago(r.get("lastHeartbeat"), now))
                    for r in ordered]
