"""Type and shape checks shared by every request the registry accepts.

Each check names the field and says what was expected, so a 400 tells the caller what to fix.
"""

import re

from .errors import ValidationError

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_EXCEPT_WHITESPACE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def json_type_name(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def require_object(body, what="the request body"):
    if not isinstance(body, dict):
        raise ValidationError(f"{what} must be a JSON object, got {json_type_name(body)}")
    return body


def reject_unknown(body, allowed, what="the request body"):
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise ValidationError(
            f"{what} has unknown field(s) {', '.join(repr(k) for k in unknown)}; "
            f"allowed fields are {', '.join(sorted(allowed))}"
        )


def string(body, name, *, max_length, multiline=False, allow_empty=False):
    """The field's string value, or None when absent or null."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(f"field '{name}' must be a string, got {json_type_name(value)}")
    if not allow_empty and value == "":
        raise ValidationError(f"field '{name}' must not be empty (leave it out instead)")
    if len(value) > max_length:
        raise ValidationError(f"field '{name}' is {len(value)} characters long; the limit is {max_length}")
    pattern = _CONTROL_EXCEPT_WHITESPACE if multiline else _CONTROL
    if pattern.search(value):
        raise ValidationError(f"field '{name}' contains control characters")
    return value


def integer(body, name, *, minimum, maximum):
    value = body.get(name)
    if value is None:
        return None
    # JSON true/false arrive as bool, a subclass of int: they are not port numbers.
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ValidationError(f"field '{name}' must be an integer, got {json_type_name(value)}")
    if not minimum <= value <= maximum:
        raise ValidationError(f"field '{name}' must be between {minimum} and {maximum}, got {value}")
    return value


def string_list(body, name, *, max_items, max_length):
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, list):
        raise ValidationError(f"field '{name}' must be an array of strings, got {json_type_name(value)}")
    if len(value) > max_items:
        raise ValidationError(f"field '{name}' has {len(value)} items; the limit is {max_items}")
    for position, item in enumerate(value):
        if not isinstance(item, str):
            raise ValidationError(
                f"field '{name}' must contain only strings; item {position} is {json_type_name(item)}"
            )
        if item == "" or len(item) > max_length or _CONTROL.search(item):
            raise ValidationError(
                f"field '{name}' item {position} must be a non-empty string of at most "
                f"{max_length} characters without control characters"
            )
    return list(value)
