"""Tests wait as the local-cluster tooling does: on conditions with deadlines, never on a fixed sleep."""

from cluster.waiting import wait_until  # noqa: F401
