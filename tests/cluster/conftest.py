"""The clusters the cluster tests run on (harness/topology.py, what
scripts/cluster starts): one per module, each with alice signed up.

Skipped only where Galera is missing, and never in CI.
"""

import os

import pytest

from harness.galera import galera_available
from harness.topology import Topology
from helpers import FREQUENT_SIGN_INS, PASSWORD, REQUIRE_MYSQL


def running_topology(base_dir, **options):
    """A started topology with alice; checks its apps' logs for tracebacks
    when the module is done with it."""
    problem = galera_available()
    if problem:
        if REQUIRE_MYSQL or os.environ.get("CI") == "true":
            pytest.fail(problem)
        pytest.skip(problem)
    env = {**FREQUENT_SIGN_INS, **options.pop("env", {})}
    with Topology(base_dir, env=env, **options) as topology:
        topology.flask("users", "create", "alice", stdin=PASSWORD + "\n")
        yield topology
        for app in topology.apps:
            output = app.output()
            at = output.find("Traceback")
            assert at == -1, output[max(at - 500, 0) : at + 4000]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, request):
    """Three nodes with deploy/galera/'s failure detection, two instances,
    nginx; a module's CLUSTER_ENV adds to the instances' settings."""
    env = getattr(request.module, "CLUSTER_ENV", {})
    yield from running_topology(tmp_path_factory.mktemp("cluster"), env=env)


@pytest.fixture(scope="module")
def stock_cluster(tmp_path_factory, request):
    """The same on Galera's stock settings; the apps wait at most
    ``request.module.SYNC_TIMEOUT`` seconds for a causal read."""
    env = {"GALERA_SYNC_TIMEOUT": str(request.module.SYNC_TIMEOUT)}
    yield from running_topology(tmp_path_factory.mktemp("stock"), tuned=False, env=env)
