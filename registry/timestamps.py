"""RFC 3339 timestamps with nanoseconds, as 1Backend writes them: 2026-11-27T22:41:03.123456789Z.

Times travel inside commands as integer nanoseconds since the epoch (decided by the proposer),
and are formatted here, deterministically, into the strings stored in records.
"""

import datetime

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


# The last whole second formatted: strftime was a quarter of applying a registration, and
# the writes of one second share it. (A tuple, so threads swap it whole.)
_last_second = (None, "")


def format_ns(epoch_ns):
    global _last_second
    seconds, nanos = divmod(int(epoch_ns), 1_000_000_000)
    formatted_for, formatted = _last_second
    if formatted_for != seconds:
        formatted = (_EPOCH + datetime.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")
        _last_second = (seconds, formatted)
    return formatted + ".%09dZ" % nanos


def parse_ns(text):
    """Inverse of format_ns, for records written by this registry; None when unparseable."""
    if not isinstance(text, str) or not text.endswith("Z") or "." not in text:
        return None
    head, frac = text[:-1].split(".", 1)
    if not frac.isdigit() or len(frac) > 9:
        return None
    try:
        moment = datetime.datetime.strptime(head, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        return None
    delta = moment - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000_000 + int(frac.ljust(9, "0"))
