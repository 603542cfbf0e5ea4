"""Waiting on conditions with deadlines, never on a fixed sleep (local clusters, their tests)."""

import time


def wait_until(predicate, timeout, message="condition", interval=0.05):
    """Return the predicate's first truthy value, or fail once the deadline passes."""
    deadline = time.monotonic() + timeout
    last_error = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except AssertionError as error:
            last_error = error
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}"
                                 + (f": {last_error}" if last_error else ""))
        time.sleep(interval)
