"""Prometheus metrics, served on the health port at /metrics."""
from prometheus_client import Counter, Gauge, Histogram

ATTACHED = Counter("ovnvnet_pods_attached_total", "Pods attached (all interfaces allocated, ports created, annotated)")
RELEASED = Counter("ovnvnet_pods_released_total", "Pods whose allocations were released")
ATTACH_ERRORS = Counter("ovnvnet_attach_errors_total", "Attach attempts refused or failed", ["reason"])
ATTACH_SECONDS = Histogram("ovnvnet_attach_seconds", "Time to attach a pod once its event is handled",
                           buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
ORPHANS_RELEASED = Counter("ovnvnet_orphans_released_total", "Pods released by the sweep because they no longer exist")
NB_REPAIRS = Counter("ovnvnet_nb_repairs_total", "Sweeps that found and repaired NB drift")
REBUILD_SECONDS = Gauge("ovnvnet_rebuild_seconds", "Time taken by the last rebuild from records at start")
ISOLATED_FAILURES = Counter("ovnvnet_isolated_failures_total",
                            "Failures confined to one item (a pod, a network, an NB row, a record) in the rebuild, "
                            "a retry round, the sweep or the NB repair; the rest of the round went on", ["stage"])
API_REQUESTS = Counter("ovnvnet_api_requests_total", "Requests sent to the API server (watches included)",
                       ["verb", "resource"])
NB_TRANSACTIONS = Counter("ovnvnet_nb_transactions_total", "OVN NB transactions committed (or attempted)")
