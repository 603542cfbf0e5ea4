"""Tests wait as the local-cluster tooling does: on conditions with deadlines, never on a fixed sleep."""

from api.local_clusters.waiting import wait_until  # noqa: F401
