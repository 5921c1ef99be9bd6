"""The test kit lives in the package (ovnvnet.testing.kit) so the soak runner and the benchmarks
share it; re-exported here for the tests."""
from ovnvnet.testing.kit import *  # noqa: F401,F403
from ovnvnet.testing.kit import Cluster, check_invariant, invariant_now, wait_until  # noqa: F401
