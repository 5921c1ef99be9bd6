"""The test kit lives in the harness (harness.kit) so the soak runner and the benchmarks
share it; re-exported here for the tests."""
from harness.kit import *  # noqa: F403 - the kit is re-exported whole for the tests
from harness.kit import Cluster, check_invariant, invariant_now, wait_until  # noqa: F401 - re-exported
