"""Durations as people write them: 30s, 5m, 24h, 7d, 1h30m, or plain seconds."""

import re

from .errors import ValidationError

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_seconds(text, what="duration"):
    text = str(text).strip()
    try:
        return _positive(float(text), what, text)
    except ValueError:
        pass
    position, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if position != len(text) or not text:
        raise ValidationError(f"{what} {text!r} is not a duration like 30s, 5m, 24h or 7d")
    return _positive(total, what, text)


def _positive(seconds, what, text):
    if not seconds > 0:
        raise ValidationError(f"{what} {text!r} must be longer than zero")
    return seconds
