"""Type and shape checks shared by every request the registry accepts, and the field specs
that declare them.

Each check names the field and says what was expected, so a 400 tells the caller what to fix.
A request body is declared once, as a `Body` of field specs (`Text`, `Integer`, `TextList`,
`Flag`, `Items`) beside the validator that reads it (registry/instances.py, nodes.py,
permissions.py): the validator reads every field through its spec, and api/openapi.py turns
the same specs into the JSON Schemas of the OpenAPI document, so the two cannot drift. Rules
that join several fields (a url or its parts, a role or a slug) stay in the validators; a Body
states them too (`alternatives`, `exactly_one_of`) so the document can.
"""

import dataclasses
import functools
import re

from .errors import ValidationError

# Control characters as the checks below refuse them, written once for Python and for the
# document's JSON Schema patterns (ECMA 262 reads them the same).
CONTROL_CHARACTERS = r"\x00-\x1f\x7f"
CONTROL_CHARACTERS_EXCEPT_WHITESPACE = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f"
_CONTROL = re.compile(f"[{CONTROL_CHARACTERS}]")
_CONTROL_EXCEPT_WHITESPACE = re.compile(f"[{CONTROL_CHARACTERS_EXCEPT_WHITESPACE}]")


@dataclasses.dataclass(frozen=True)
class Text:
    """A string field; absent and null are the same. `pattern` must mean the same in Python's re
    and in ECMA 262 (the document's dialect): no lookarounds, no inline flags."""

    max_length: int
    description: str = ""
    multiline: bool = False  # tab, newline and carriage return allowed
    allow_empty: bool = False
    pattern: str = None
    mismatch: str = ""  # the 400's message when `pattern` or `enum` refuses; {value} is the value
    enum: tuple = None
    example: str = None

    @functools.cached_property
    def _compiled(self):
        return re.compile(self.pattern) if self.pattern else None

    def read(self, body, name, *, check=True):
        """The value (None when absent or null); check=False leaves pattern and enum to check()."""
        value = string(body, name, max_length=self.max_length, multiline=self.multiline,
                       allow_empty=self.allow_empty)
        return value if value is None or not check else self.check(value)

    def check(self, value):
        """A string already known to be one (a query value): the pattern and the allowed values."""
        if (self._compiled is not None and not self._compiled.match(value)) or \
                (self.enum is not None and value not in self.enum):
            raise ValidationError(self.mismatch.format(value=value))
        return value


@dataclasses.dataclass(frozen=True)
class Integer:
    minimum: int
    maximum: int
    description: str = ""
    example: int = None

    def read(self, body, name, **_):
        return integer(body, name, minimum=self.minimum, maximum=self.maximum)


@dataclasses.dataclass(frozen=True)
class TextList:
    """An array of non-empty strings without control characters; `enum` names the allowed
    items (the validator says which are not, in its own words)."""

    max_items: int
    max_length: int
    description: str = ""
    enum: tuple = None
    example: list = None

    def read(self, body, name, **_):
        return string_list(body, name, max_items=self.max_items, max_length=self.max_length)


@dataclasses.dataclass(frozen=True)
class Flag:
    """true or false; null is refused."""

    default: bool = False
    description: str = ""


@dataclasses.dataclass(frozen=True)
class Items:
    """A required array of objects, each a `Body`."""

    body: "Body"
    max_items: int
    description: str = ""


@dataclasses.dataclass(frozen=True)
class Body:
    """A JSON object with exactly these fields (unknown ones are refused).

    `required`: fields that must be given and not null. `alternatives`: groups of fields, at
    least one group given in full (not null). `exactly_one_of`: fields of which exactly one is
    given (not null)."""

    name: str
    fields: dict
    description: str = ""
    required: tuple = ()
    alternatives: tuple = ()
    exactly_one_of: tuple = ()
    example: dict = None

    def check_shape(self, body, what="the request body"):
        require_object(body, what)
        reject_unknown(body, self.fields, what)
        return body

    def read(self, body, name, **options):
        return self.fields[name].read(body, name, **options)


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
