"""Turning `--name=value` flags into a JSON body or query parameters, as 1Backend's `oo` does.

    --a.b=1            {"a": {"b": 1}}        dots nest
    --tag=x --tag=y    {"tag": ["x", "y"]}    a repeated flag makes a list
    --port=8080        {"port": 8080}         integers and true/false are typed
    --tags='["dev"]'   {"tags": ["dev"]}      a JSON array or object is parsed as one
    --id='"007"'       {"id": "007"}          a JSON string keeps digits a string
    --force            {"force": true}        a flag without a value is true
    --tags=prod        {"tags": ["prod"]}     fields the API takes only as lists are lists
"""

import json
import re

_INTEGER = re.compile(r"-?(0|[1-9][0-9]*)")
# Request fields the registry's API accepts only as arrays (an instance's tags, the node ids of
# POST /registry-svc/nodes): one value given for them is a list of one.
LIST_FIELDS = ("tags", "ids")


class FieldError(ValueError):
    """A flag that cannot become a field; the message names the flag and how to write it."""


def parse_flags(args):
    """[(name, raw value)] from `--name=value`, `--name value` and bare `--name` (true)."""
    pairs = []
    position = 0
    while position < len(args):
        arg = args[position]
        position += 1
        if not arg.startswith("--") or arg == "--":
            raise FieldError(f"unexpected argument '{arg}': give fields as --name=value")
        name, has_value, value = arg[2:].partition("=")
        if not name or name.startswith("-"):
            raise FieldError(f"'{arg}' names no field: give fields as --name=value")
        if not has_value:
            if position < len(args) and not args[position].startswith("--"):
                value = args[position]
                position += 1
            else:
                value = True
        pairs.append((name, value))
    return pairs


def typed_value(raw):
    """The JSON value a flag's text stands for."""
    if raw is True:
        return True
    if raw in ("true", "false"):
        return raw == "true"
    if _INTEGER.fullmatch(raw):
        return int(raw)
    if raw[:1] in ("[", "{", '"'):
        try:
            return json.loads(raw)
        except ValueError as error:
            raise FieldError(f"'{raw}' looks like JSON but is not valid JSON ({error}); "
                             f"quote it for the shell, e.g. --tags='[\"dev\"]'") from None
    return raw


def body_from_flags(args):
    """A JSON object from flags: dots nest, repeats make lists, values typed."""
    body = {}
    containers = set()  # dotted names that hold nested fields, so a value may not also go there
    repeated = set()
    for name, raw in parse_flags(args):
        path = name.split(".")
        if any(not part for part in path):
            raise FieldError(f"--{name} has an empty part between dots; write --a.b=value")
        target = body
        for depth, part in enumerate(path[:-1]):
            prefix = ".".join(path[:depth + 1])
            if part in target and prefix not in containers:
                raise FieldError(f"--{name} nests inside --{prefix}, which already has a value; give one or the other")
            containers.add(prefix)
            target = target.setdefault(part, {})
        if name in containers:
            raise FieldError(f"--{name} has a value and also fields (--{name}.<field>); give one or the other")
        leaf = path[-1]
        value = typed_value(raw)
        if leaf not in target:
            target[leaf] = [value] if leaf in LIST_FIELDS and not isinstance(value, list) else value
            if leaf in LIST_FIELDS:
                repeated.add(name)
        elif name in repeated:
            target[leaf].append(value)
        else:
            target[leaf] = [target[leaf], value]
            repeated.add(name)
    return body


def query_from_flags(args):
    """Query parameters from flags, in order; a repeated flag repeats the parameter (e.g. --tag)."""
    return [(name, "true" if raw is True else raw) for name, raw in parse_flags(args)]
