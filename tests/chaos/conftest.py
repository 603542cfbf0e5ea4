import pytest

from api.local_clusters import netns
from tests.chaos import workload
from tests.helpers import with_test_workers

WRITE_TIMEOUT_SECONDS = 2.0
# Scans are off (hourly): the instances written here name hosts that do not exist.
SERVE_ARGS = ("--heartbeat", "1", "--write-timeout", str(WRITE_TIMEOUT_SECONDS), "--scan-interval", "3600")


@pytest.fixture(scope="session")
def namespace_support():
    # Fail, never skip: a chaos run that cannot build its network must not look green.
    try:
        netns.check_namespace_support()
    except netns.NamespacesUnavailable as error:
        pytest.fail(f"chaos tests cannot run: {error}", pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"chaos_report_{report.when}", report)


@pytest.fixture
def chaos_cluster(namespace_support, request, tmp_path):
    """Start namespace clusters for one test; afterwards every peer is stopped by pid and every
    namespace deleted, pass or fail (a failed test first prints the peers' logs)."""
    made = []

    def make(count=3, serve_args=SERVE_ARGS):
        cluster = netns.NetnsCluster.create(tmp_path / f"cluster-{len(made)}", count,
                                            serve_args=with_test_workers(serve_args))
        made.append(cluster)
        cluster.start(ready_timeout=60)
        return cluster

    yield make
    failed = getattr(request.node, "chaos_report_call", None) is None or request.node.chaos_report_call.failed
    errors = []
    for cluster in made:
        if failed:
            print(f"namespaces {cluster.topology.namespaces}, data in {cluster.directory}\n{cluster.logs()}")
        try:
            cluster.close()
        except netns.CommandFailed as error:
            errors.append(str(error))
    assert not errors, errors


def pytest_terminal_summary(terminalreporter):
    if not workload.scenario_figures:
        return
    terminalreporter.section("chaos figures")
    for figures in workload.scenario_figures:
        terminalreporter.write_line(
            f"{figures['scenario']}: attempted {figures['attempted']}, acknowledged {figures['acknowledged']}, "
            f"found afterwards {figures['foundAfterwards']} (acknowledged found {figures['acknowledgedFound']}, "
            f"lost {figures['acknowledgedLost']}), longest unavailable {figures['longestUnavailableSeconds']:.2f} s")
    terminalreporter.write_line(f"appended as JSON lines to {workload.RESULTS_PATH}")
