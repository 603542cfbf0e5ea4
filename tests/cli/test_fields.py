"""The flag-to-JSON rules of `oo put|post|delete` and the query rules of `oo get`, without a cluster."""

import pytest

from api.oo.fields import FieldError, body_from_flags, parse_flags, query_from_flags, typed_value


def test_dots_nest():
    assert body_from_flags(["--a.b=1", "--a.c.d=x"]) == {"a": {"b": 1, "c": {"d": "x"}}}


def test_a_repeated_flag_makes_a_list_in_order():
    assert body_from_flags(["--tags=dev", "--tags=prod", "--tags=3"]) == {"tags": ["dev", "prod", 3]}
    assert body_from_flags(["--a.t=1", "--a.t=2"]) == {"a": {"t": [1, 2]}}


@pytest.mark.parametrize("raw, value", [
    ("8080", 8080), ("-5", -5), ("0", 0), ("true", True), ("false", False),
    ("007", "007"), ("1.5", "1.5"), ("True", "True"), ("http://x:1", "http://x:1"), ("", ""),
    ('["dev", "prod"]', ["dev", "prod"]), ('{"k": [1, {"n": null}]}', {"k": [1, {"n": None}]}),
    ('"123"', "123"),
])
def test_values_are_typed(raw, value):
    assert typed_value(raw) == value
    assert body_from_flags([f"--x={raw}"]) == {"x": value}


def test_spaced_values_and_bare_flags():
    assert parse_flags(["--a", "1", "--b", "--c=", "--d", "-5"]) == [("a", "1"), ("b", True), ("c", ""), ("d", "-5")]
    assert body_from_flags(["--force", "--n", "2"]) == {"force": True, "n": 2}


def test_fields_the_api_takes_only_as_lists_are_lists_from_one_value():
    assert body_from_flags(["--tags=prod"]) == {"tags": ["prod"]}
    assert body_from_flags(["--ids=node_1"]) == {"ids": ["node_1"]}
    assert body_from_flags(["--tags=prod", "--tags=eu"]) == {"tags": ["prod", "eu"]}
    assert body_from_flags(['--tags=["a"]', "--tags=b"]) == {"tags": ["a", "b"]}
    assert body_from_flags(["--tag=prod"]) == {"tag": "prod"}  # any other field as given


def test_the_example_of_the_issue():
    args = ["--id=inst_myservice_001", "--url=http://my-service:8080", "--slug=my-service", "--status=Healthy",
            '--tags=["dev"]', "--port=8080"]
    assert body_from_flags(args) == {"id": "inst_myservice_001", "url": "http://my-service:8080",
                                     "slug": "my-service", "status": "Healthy", "tags": ["dev"], "port": 8080}


@pytest.mark.parametrize("args, says", [
    (["--a=1", "--a.b=2"], "nests inside --a, which already has a value"),
    (["--a.b=2", "--a=1"], "--a has a value and also fields"),
    (["positional"], "unexpected argument 'positional'"),
    (["-x"], "unexpected argument '-x'"),
    (["--=1"], "names no field"),
    (["--a..b=1"], "empty part between dots"),
    (["--tags=[dev]"], "is not valid JSON"),
])
def test_flags_that_cannot_become_json_say_why(args, says):
    with pytest.raises(FieldError) as caught:
        body_from_flags(args)
    assert says in str(caught.value)


def test_get_flags_become_query_parameters_verbatim():
    assert query_from_flags(["--slug=x", "--tag=a", "--tag", "b", "--consistent", "--n=007"]) == [
        ("slug", "x"), ("tag", "a"), ("tag", "b"), ("consistent", "true"), ("n", "007")]
