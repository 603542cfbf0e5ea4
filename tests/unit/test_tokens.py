import pytest

from api.tokens import InvalidToken, mint, signing_key, verify
from registry.durations import parse_seconds
from registry.errors import ValidationError


def test_round_trip_carries_slug_and_roles():
    key = signing_key("a cluster secret of some length")
    assert verify(key, mint(key, "team-a", ["user", "user"], 60)) == {"slug": "team-a", "roles": ["user"]}


def test_the_key_is_derived_not_the_secret_itself():
    secret = "a cluster secret of some length"
    key = signing_key(secret)
    assert key != secret.encode() and len(key) == 32
    with pytest.raises(InvalidToken):
        verify(key, mint(signing_key("a different secret entirely"), "x", ["admin"], 60))


def test_bad_tokens_are_refused_with_a_reason_that_does_not_echo_them():
    key = signing_key("a cluster secret of some length")
    other = signing_key("another cluster's secret value")
    cases = {
        mint(other, "x", ["admin"], 60): "signature does not match",
        mint(key, "x", ["admin"], -5): "expired",
        "not.a.token": "not valid",
        "": "not valid",
    }
    for token, reason in cases.items():
        with pytest.raises(InvalidToken) as caught:
            verify(key, token)
        assert reason in str(caught.value)
        assert not token or token not in str(caught.value)


def test_durations():
    assert parse_seconds("30s") == 30 and parse_seconds("5m") == 300 and parse_seconds("24h") == 86400
    assert parse_seconds("1h30m") == 5400 and parse_seconds("7d") == 604800 and parse_seconds("90") == 90
    for bad in ("", "abc", "5 m", "-3s", "0s", "3w"):
        with pytest.raises(ValidationError):
            parse_seconds(bad)


def test_a_verified_token_is_remembered_until_it_expires_and_not_beyond():
    key = signing_key("a cluster secret of some length")
    issued = 1_800_000_000
    token = mint(key, "team-a", ["user"], 60, now=issued)
    assert verify(key, token, now=issued + 1) == {"slug": "team-a", "roles": ["user"]}
    caller = verify(key, token, now=issued + 59)  # from the cache: the same answer
    assert caller == {"slug": "team-a", "roles": ["user"]}
    caller["roles"].append("admin")  # a caller changing its copy changes nothing remembered
    assert verify(key, token, now=issued + 59)["roles"] == ["user"]
    with pytest.raises(InvalidToken, match="expired"):
        verify(key, token, now=issued + 61)
    with pytest.raises(InvalidToken, match="signature"):
        verify(signing_key("another cluster's secret value"), token, now=issued + 1)
