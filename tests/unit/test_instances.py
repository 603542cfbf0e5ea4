import pytest

from registry.errors import ValidationError
from registry.instances import validate_filters, validate_registration


def test_url_alone_derives_its_parts():
    fields = validate_registration({"url": "http://my-service:8080/api", "slug": "my-service"})
    assert fields == {
        "url": "http://my-service:8080/api", "scheme": "http", "host": "my-service", "port": 8080,
        "path": "/api", "slug": "my-service",
    }


def test_url_with_ip_host_fills_ip_and_default_port():
    fields = validate_registration({"url": "https://10.0.0.7"})
    assert fields["ip"] == "10.0.0.7" and fields["port"] == 443 and "host" not in fields


def test_parts_build_the_url():
    fields = validate_registration({"scheme": "http", "host": "svc", "port": 9000, "path": "v1"})
    assert fields["url"] == "http://svc:9000/v1"
    assert fields["path"] == "/v1"


def test_ipv6_parts_are_bracketed_in_the_url():
    assert validate_registration({"scheme": "http", "ip": "::1", "port": 80})["url"] == "http://[::1]:80"


def test_host_wins_over_ip_in_the_built_url_and_both_are_kept():
    fields = validate_registration({"scheme": "http", "host": "svc", "ip": "10.1.1.1", "port": 80})
    assert fields["url"] == "http://svc:80" and fields["ip"] == "10.1.1.1"


def test_matching_parts_beside_a_url_are_accepted():
    fields = validate_registration({"url": "http://svc:80/x", "host": "svc", "port": 80, "path": "/x"})
    assert fields["host"] == "svc"


@pytest.mark.parametrize("body, fragment", [
    ([], "must be a JSON object"),
    ("text", "must be a JSON object"),
    ({}, "give either 'url'"),
    ({"slug": "x"}, "give either 'url'"),
    ({"scheme": "http", "port": 80}, "both 'host' and 'ip' are missing"),
    ({"host": "a", "port": 80}, "'scheme' is missing"),
    ({"scheme": "http", "host": "a"}, "'port' is missing"),
    ({"scheme": "http", "host": "a", "port": 0}, "between 1 and 65535"),
    ({"scheme": "http", "host": "a", "port": 65536}, "between 1 and 65535"),
    ({"scheme": "http", "host": "a", "port": "80"}, "must be an integer, got string"),
    ({"scheme": "http", "host": "a", "port": True}, "must be an integer, got boolean"),
    ({"scheme": "http", "host": "a", "port": 80.5}, "must be an integer"),
    ({"scheme": "http", "ip": "999.1.1.1", "port": 80}, "not an IPv4 or IPv6 address"),
    ({"scheme": "http", "host": "bad host", "port": 80}, "not a host name"),
    ({"scheme": "1http", "host": "a", "port": 80}, "not a URL scheme"),
    ({"url": "my-service:8080"}, "must be absolute"),
    ({"url": "/relative/path"}, "must be absolute"),
    ({"url": "http://"}, "has no host"),
    ({"url": "http://a:99999"}, "malformed"),
    ({"url": "http://a:0"}, "port 0"),
    ({"url": "http://a:port"}, "malformed"),
    ({"url": "http://a b:80"}, "whitespace"),
    ({"url": "http://a:80/x\u00a0y"}, "whitespace"),  # a no-break space is whitespace to str.isspace() too
    ({"url": "http://a:80/x\u3000"}, "whitespace"),
    ({"scheme": "http", "host": "a", "port": 80, "path": "/x\u2028y"}, "'path' must not contain whitespace"),
    ({"scheme": "http", "host": "a", "port": 80, "path": "/x\u0085y"}, "'path' must not contain whitespace"),
    ({"url": "http://user:pw@a:80"}, "credentials"),
    ({"url": "http://a:80/#frag"}, "fragment"),
    ({"url": "http://a_%:80"}, "invalid host"),
    ({"url": 42}, "must be a string, got number"),
    ({"url": ""}, "must not be empty"),
    ({"url": "http://a:1", "host": "b"}, "disagrees with url"),
    ({"url": "http://a:1", "port": 2}, "disagrees with url"),
    ({"url": "http://a:1", "status": "Fine"}, "unknown status 'Fine'"),
    ({"url": "http://a:1", "status": 3}, "must be a string"),
    ({"url": "http://a:1", "tags": "dev"}, "must be an array of strings"),
    ({"url": "http://a:1", "tags": ["ok", 3]}, "item 1 is number"),
    ({"url": "http://a:1", "tags": [""]}, "item 0 must be a non-empty string"),
    ({"url": "http://a:1", "id": "has/slash"}, "field 'id' may hold"),
    ({"url": "http://a:1", "id": "x" * 300}, "limit is 256"),
    ({"url": "http://a:1", "lastHeartbeat": "2026-01-01T00:00:00Z"}, "unknown field(s) 'lastHeartbeat'"),
    ({"url": "http://a:1", "slugg": "typo"}, "unknown field(s) 'slugg'"),
    ({"url": "http://a:1\x00"}, "control characters"),
    ({"url": "http://a:1", "tags": ["t"] * 65}, "limit is 64"),
])
def test_bad_registrations_say_what_to_fix(body, fragment):
    with pytest.raises(ValidationError) as caught:
        validate_registration(body)
    assert fragment in caught.value.message


def test_null_fields_count_as_absent():
    assert validate_registration({"url": "http://a:1", "slug": None, "tags": None}) == {
        "url": "http://a:1", "scheme": "http", "host": "a", "port": 1,
    }


def test_details_may_be_multiline_and_empty():
    assert validate_registration({"url": "http://a:1", "details": "line1\nline2"})["details"] == "line1\nline2"
    assert validate_registration({"url": "http://a:1", "details": ""})["details"] == ""


def test_filters_parse_repeated_tags_and_reject_the_rest():
    assert validate_filters([("slug", "x"), ("tag", "a"), ("tag", "b"), ("status", "Healthy")]) == {
        "slug": "x", "status": "Healthy", "tags": ["a", "b"],
    }
    for pairs, fragment in [
        ([("colour", "red")], "unknown filter 'colour'"),
        ([("status", "Bogus")], "unknown status"),
        ([("slug", "a"), ("slug", "b")], "given twice"),
        ([("host", "")], "needs a value"),
    ]:
        with pytest.raises(ValidationError) as caught:
            validate_filters(pairs)
        assert fragment in caught.value.message
