from registry.timestamps import format_ns, parse_ns


def test_formats_rfc3339_with_nanoseconds_in_utc():
    assert format_ns(1_795_000_000_123_456_789) == "2026-11-18T11:06:40.123456789Z"
    assert format_ns(0) == "1970-01-01T00:00:00.000000000Z"


def test_consecutive_times_format_alike_across_second_boundaries():
    # format_ns remembers the last second it formatted: going on, back, and on again.
    for value in (1_795_000_000_999_999_999, 1_795_000_001_000_000_000, 1_795_000_000_5, 86_400_000_000_000):
        seconds, nanos = divmod(value, 1_000_000_000)
        assert format_ns(value) == format_ns(seconds * 1_000_000_000)[:-10] + "%09dZ" % nanos
    assert format_ns(1_795_000_001_000_000_000) == "2026-11-18T11:06:41.000000000Z"
    assert format_ns(86_400_000_000_000) == "1970-01-02T00:00:00.000000000Z"


def test_parse_inverts_format():
    for value in (0, 1, 999_999_999, 1_795_000_000_123_456_789):
        assert parse_ns(format_ns(value)) == value


def test_parse_rejects_what_it_did_not_write():
    for text in ("", "2026-11-18", "2026-11-18T08:26:40Z", "2026-13-18T08:26:40.1Z", None, 5):
        assert parse_ns(text) is None
