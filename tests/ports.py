"""Free loopback ports for peers the tests start."""

import socket

_handed_out = set()


def free_port():
    """A port nothing listens on now and this test run has not handed out before."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def free_port_run(count):
    """The first of `count` consecutive free ports, for `registry cluster up --http-port P`."""
    while True:
        base = free_port()
        if base + count > 65535:
            continue
        candidates = range(base + 1, base + count)
        if all(port not in _handed_out and _is_free(port) for port in candidates):
            _handed_out.update(candidates)
            return base


def _is_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
