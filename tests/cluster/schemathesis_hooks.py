"""Schemathesis hooks for tests/cluster/test_openapi_schemathesis.py, loaded through SCHEMATHESIS_HOOKS.

A blocking read (`?index=N`) may wait up to `wait`, 60 s when it is not given: a generated index
above the peer's would hold the run that long. So a read whose index the peer accepts is sent
with wait=1ms instead of a wait it would also accept (or none). The request stays as valid or
as invalid as it was generated, and the blocking path itself still runs; how long it waits is
tested in tests/api/test_consistency_api.py.
"""

import schemathesis

from api.consistency import MAX_WAIT_SECONDS
from registry.durations import parse_seconds
from registry.errors import ValidationError

SHORT_WAIT = "1ms"


def _accepted_index(value):
    return isinstance(value, str) and value.isascii() and value.isdigit()


def _accepted_wait(value):
    if value is None:
        return True
    try:
        return parse_seconds(str(value), "wait") <= MAX_WAIT_SECONDS
    except ValidationError:
        return False


@schemathesis.hook
def before_call(context, case, kwargs):
    query = case.query
    if query and _accepted_index(query.get("index")) and _accepted_wait(query.get("wait")):
        query["wait"] = SHORT_WAIT
