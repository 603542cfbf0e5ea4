"""--http-workers: what `auto` chooses for a machine, and what a bad value is told."""

import click
import pytest

from api.cli import _http_workers
from cluster.config import default_http_workers


@pytest.mark.parametrize("cores, workers", [(1, 0), (2, 0), (3, 0), (4, 3), (8, 7), (9, 8), (64, 8)])
def test_auto_is_a_core_per_worker_but_one_up_to_eight_and_none_on_small_machines(cores, workers):
    assert default_http_workers(cores) == workers


def test_the_flag_takes_auto_or_a_count():
    assert _http_workers("AUTO") == default_http_workers()
    assert _http_workers("0") == 0 and _http_workers("3") == 3
    for bad in ("-1", "two", "65", ""):
        with pytest.raises(click.BadParameter, match="auto or a number of processes from 0 to 64"):
            _http_workers(bad)
