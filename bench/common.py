"""Shared benchmark machinery: result tables and JSON, a stack per scenario, fast pod creation,
and a raw pod watch that timestamps annotations and deletions.

Figures that depend on the machine are reported beside a baseline measured in the same run
(`Row.baseline`), so a noisy shared machine shows up in both and the ratio stays meaningful.
"""
from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
if str(REPO) not in sys.path:  # `python bench/...py` as well as `python -m bench`
    sys.path.insert(0, str(REPO))

import kubernetes  # noqa: E402
from kubernetes.client.rest import ApiException  # noqa: E402
from kubernetes.watch.watch import iter_resp_lines  # noqa: E402

from bench.report import fmt as _fmt  # noqa: E402 - one figure format for printed and README tables
from harness.stack import Stack  # noqa: E402

GROUP, VERSION, PLURAL = "ovnvnet.io", "v1", "virtualnetworks"
REQUEST, RESULT = "ovnNetwork", "ovnIfaceList"


# ---------------------------------------------------------------------------- results
@dataclass
class Row:
    figure: str
    value: float | None
    unit: str = ""
    baseline: float | None = None
    baseline_name: str = ""
    ratio: float | None = None          # value / baseline unless given
    target: str = ""                    # human form, e.g. ">= 0.8 x API floor"
    met: bool | None = None             # None: no target for this row
    note: str = ""

    def __post_init__(self) -> None:
        if self.ratio is None and self.value is not None and self.baseline:
            self.ratio = self.value / self.baseline


@dataclass
class Result:
    scenario: str
    title: str
    params: dict[str, Any] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    full: dict[str, Any] = field(default_factory=dict)
    """The scenario's full-size parameters: a run with other values is labelled `reduced`."""
    load_start: list[float] = field(default_factory=lambda: [round(x, 2) for x in os.getloadavg()])

    @property
    def size(self) -> str:
        """`full` when every full-size parameter has its full value, `reduced` (figures not to
        quote) when one differs, `unlabelled` when the scenario does not say what its full size is."""
        if not self.full:
            return "unlabelled"
        return "full" if all(self.params.get(k) == v for k, v in self.full.items()) else "reduced"

    def add(self, *args: Any, **kwargs: Any) -> Row:
        row = Row(*args, **kwargs)
        self.rows.append(row)
        return row

    def table(self) -> str:
        head = ("figure", "value", "baseline", "ratio", "target", "met?")
        lines = []
        for r in self.rows:
            base = f"{_fmt(r.baseline)} {r.unit} ({r.baseline_name})" if r.baseline is not None else "-"
            met = "-" if r.met is None else ("yes" if r.met else "NO")
            lines.append((r.figure, f"{_fmt(r.value)} {r.unit}".strip(), base,
                          f"{r.ratio:.2f}" if r.ratio is not None else "-", r.target or "-", met))
        widths = [max(len(h), *(len(row[i]) for row in lines)) if lines else len(h) for i, h in enumerate(head)]
        variant = variants()
        size = {"full": "", "reduced": f"  [REDUCED SIZE, full: {self.full}]"}.get(self.size, "  [size unlabelled]")
        out = [f"== {self.scenario}: {self.title}" + (f"  [operator variants: {variant}]" if variant else "") + size,
               "   " + ", ".join(f"{k}={v}" for k, v in self.params.items()),
               "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)),
               "  ".join("-" * w for w in widths)]
        out += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in lines]
        out += [f"   note: {n}" for n in self.notes]
        return "\n".join(out)

    def write(self, results_dir: Path = RESULTS) -> Path:
        results_dir.mkdir(parents=True, exist_ok=True)
        doc = {
            "scenario": self.scenario, "title": self.title, "params": self.params,
            "rows": [asdict(r) for r in self.rows], "extra": self.extra, "notes": self.notes,
            "size": self.size, "full_params": self.full,
            "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "host": {"cpus": os.cpu_count(), "python": platform.python_version(), "git": _git_rev(),
                     "load_start": self.load_start, "load_end": [round(x, 2) for x in os.getloadavg()]},
        }
        variant = variants()
        if variant:
            doc["operator_variants"] = variant
        name = f"{self.scenario}-{variant.replace(',', '+')}" if variant else self.scenario
        path = results_dir / f"{name}.json"
        path.write_text(json.dumps(doc, indent=1) + "\n")
        return path



def _git_rev() -> str:
    """The commit measured, `+dirty` when tracked files other than the results differ from it."""
    try:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5).stdout.strip()
        changed = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no",
                                  "--", ".", ":(exclude)bench/results", ":(exclude)README.md",
                                  ":(exclude)bench/README.md"],
                                 capture_output=True, text=True, timeout=5).stdout.strip()
        return rev + ("+dirty" if changed and rev else "")
    except Exception:  # noqa: BLE001
        return ""


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100)."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100 * len(s) + 0.5)) - 1))
    return s[k]


def median(values: Iterable[float]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- stack
@contextlib.contextmanager
def bench_stack(keep: bool = False, root: str | None = None) -> Iterator[Stack]:
    """A fresh stack (no operator) in a private directory, torn down afterwards."""
    path = Path(root) if root else Path(tempfile.mkdtemp(prefix="ovnvnet-bench-"))
    stack = Stack(path)
    t0 = time.monotonic()
    try:
        stack.up(operator=False)
        log(f"stack up in {time.monotonic() - t0:.1f}s at {path}")
        yield stack
    finally:
        stack.down(remove=not keep, extra=tuple(p for p, _ in FLOORS.values()))


def rss_hwm_mb(pid: int | None) -> float | None:
    """Peak resident set size (VmHWM) of a live process, in MiB."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cpu_seconds(pid: int | None) -> float | None:
    """User+system CPU time used so far by a process."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------- kube
class Kube:
    """Thin, fast wrappers over the kubernetes client (raw JSON, no model deserialisation)."""

    def __init__(self, stack: Stack, pool: int = 64):
        self.stack = stack
        self.api = kubernetes.config.new_client_from_config(config_file=str(stack.kubeconfig))
        self.api.configuration.connection_pool_maxsize = pool
        # the pool size is read when the first request builds the pool manager: rebuild it
        self.api.rest_client = kubernetes.client.rest.RESTClientObject(self.api.configuration)
        self.core = kubernetes.client.CoreV1Api(self.api)
        self.custom = kubernetes.client.CustomObjectsApi(self.api)

    def ensure_namespace(self, ns: str) -> None:
        try:
            # .data reads the body, so the connection goes back to the pool clean
            _ = self.core.create_namespace({"metadata": {"name": ns}}, _preload_content=False).data
        except ApiException as exc:
            if exc.status != 409:
                raise

    def create_vnet(self, name: str, subnet: str, *more: str) -> None:
        """A network on ``subnet``; with ``more`` (the other family's subnet) a dual-stack one."""
        spec = {"subnets": [subnet, *more]} if more else {"subnet": subnet}
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "VirtualNetwork", "metadata": {"name": name},
                "spec": spec}
        self.custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, body)

    def vnet_raw(self, name: str) -> bytes:
        resp = self.custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, name, _preload_content=False)
        return resp.data

    def vnet(self, name: str) -> dict:
        return json.loads(self.vnet_raw(name))

    def wait_vnets_ready(self, names: list[str], timeout: float = 60) -> None:
        def ready(name: str) -> bool:
            conds = (self.vnet(name).get("status") or {}).get("conditions") or []
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)
        deadline = time.monotonic() + timeout
        pending = list(names)
        while pending:
            pending = [n for n in pending if not ready(n)]
            if pending and time.monotonic() > deadline:
                raise TimeoutError(f"networks not Ready after {timeout}s: {pending}")
            if pending:
                time.sleep(0.2)

    def create_pod(self, ns: str, name: str, request: list[dict] | str, node: str | None = "node-1") -> float:
        """Create one pod; returns the monotonic time the API server answered."""
        raw = request if isinstance(request, str) else json.dumps(request)
        body: dict[str, Any] = {"metadata": {"name": name, "annotations": {REQUEST: raw}},
                                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
        if node:
            body["spec"]["nodeName"] = node
        for attempt in range(5):
            try:
                _ = self.core.create_namespaced_pod(ns, body, _preload_content=False).data
                return time.monotonic()
            except ApiException as exc:
                if exc.status not in (429, 500, 503, 504) or attempt == 4:
                    raise
                time.sleep(0.2 * 2 ** attempt)
        raise AssertionError("unreachable")

    def delete_pod(self, ns: str, name: str) -> None:
        try:
            _ = self.core.delete_namespaced_pod(name, ns, grace_period_seconds=0,
                                                _preload_content=False).data
        except ApiException as exc:
            if exc.status != 404:
                raise

    def pod_names(self, ns: str) -> list[str]:
        out = json.loads(self.core.list_namespaced_pod(ns, _preload_content=False).data)
        return [p["metadata"]["name"] for p in out["items"]]

    def delete_all_pods(self, ns: str, timeout: float = 300) -> None:
        names = self.pod_names(ns)
        with ThreadPoolExecutor(32) as ex:
            list(ex.map(lambda n: self.delete_pod(ns, n), names))
        deadline = time.monotonic() + timeout
        while self.pod_names(ns):
            if time.monotonic() > deadline:
                raise TimeoutError(f"pods in {ns} not gone after {timeout}s")
            time.sleep(0.3)

    def list_rv(self, ns: str | None) -> str:
        if ns:
            resp = self.core.list_namespaced_pod(ns, limit=1, _preload_content=False)
        else:
            resp = self.core.list_pod_for_all_namespaces(limit=1, _preload_content=False)
        return json.loads(resp.data)["metadata"]["resourceVersion"]


def create_pods(kube: Kube, ns: str, specs: list[tuple[str, Any]], *, threads: int = 32,
                on_created: Callable[[str, float], None] | None = None) -> dict[str, float]:
    """Create pods as fast as the API server takes them; returns name -> creation time."""
    created: dict[str, float] = {}

    def one(item: tuple[str, Any]) -> None:
        name, request = item
        t = kube.create_pod(ns, name, request)
        created[name] = t
        if on_created:
            on_created(name, t)

    with ThreadPoolExecutor(threads) as ex:
        for _ in ex.map(one, specs):
            pass
    return created


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


class PodWatcher:
    """One raw watch on a namespace: the first time each pod carries `key`, and when it is deleted.

    A watch, not polling per pod: the observed time is when the API server's event reached us.
    """

    def __init__(self, kube: Kube, namespace: str, key: str = RESULT):
        self.kube, self.ns, self.key = kube, namespace, key
        self.annotated: dict[str, float] = {}
        self.values: dict[str, str] = {}
        self.deleted: dict[str, float] = {}
        self.errors: dict[str, str] = {}
        self.cond = threading.Condition()
        self._stop = threading.Event()
        self._resp: Any = None
        self._thread = threading.Thread(target=self._run, name=f"watch-{namespace}", daemon=True)
        self._rv = kube.list_rv(namespace)

    def start(self) -> PodWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        resp = self._resp
        if resp is not None:
            # close() would wait for the blocked read (up to the next bookmark): shut the socket
            sock = getattr(getattr(resp, "connection", None), "sock", None)
            with contextlib.suppress(Exception):
                if sock is not None:
                    sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)

    def __enter__(self) -> PodWatcher:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._resp = self.kube.core.list_namespaced_pod(
                    self.ns, watch=True, resource_version=self._rv, allow_watch_bookmarks=True,
                    timeout_seconds=600, _preload_content=False, _request_timeout=(10, 660))
                for line in iter_resp_lines(self._resp):
                    if not line:
                        continue
                    self._event(json.loads(line))
                    if self._stop.is_set():
                        return
            except Exception as exc:  # noqa: BLE001 - reconnect from the last resourceVersion
                if self._stop.is_set():
                    return
                log(f"watch {self.ns}: {exc!r}; reconnecting")
                time.sleep(0.2)

    def _event(self, ev: dict) -> None:
        now = time.monotonic()
        obj = ev.get("object") or {}
        if ev.get("type") == "ERROR":
            if obj.get("code") == 410:  # expired: resume from now (we may miss nothing important here)
                self._rv = self.kube.list_rv(self.ns)
                raise RuntimeError("watch expired")
            return
        meta = obj.get("metadata") or {}
        self._rv = meta.get("resourceVersion", self._rv)
        if ev.get("type") == "BOOKMARK":
            return
        name = meta.get("name", "")
        ann = meta.get("annotations") or {}
        with self.cond:
            if ev.get("type") == "DELETED":
                self.deleted.setdefault(name, now)
            elif self.key in ann and name not in self.annotated:
                self.annotated[name] = now
                self.values[name] = ann[self.key]
            if "ovnNetworkError" in ann:
                self.errors[name] = ann["ovnNetworkError"]
            self.cond.notify_all()

    def wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
                self.cond.wait(min(left, 1.0))

    def wait_annotated(self, names: Iterable[str], timeout: float) -> None:
        names = list(names)
        self.wait(lambda: all(n in self.annotated for n in names), timeout,
                  f"{self.key} on {len(names)} pods in {self.ns} "
                  f"(have {sum(n in self.annotated for n in names)}; errors {dict(list(self.errors.items())[:3])})")

    def wait_deleted(self, names: Iterable[str], timeout: float) -> None:
        names = list(names)
        self.wait(lambda: all(n in self.deleted for n in names), timeout, f"{len(names)} pods deleted in {self.ns}")


# ---------------------------------------------------------------------------- processes
# The two API floors (what the API server alone costs), run as tracked stack processes:
#   raw:  bench/raw_floor.py, list+watch+patch on ovnvnet's own client (how ovnvnet handles pods);
#   kopf: bench/api_floor.py, a minimal Kopf operator (how ovnvnet handled pods before podwatch.py).
FLOORS = {"raw": ("raw-floor", "bench.raw_floor"), "kopf": ("api-floor", "bench.api_floor")}
FLOOR_NAMES = {"raw": "raw API floor", "kopf": "Kopf API floor"}


def start_floor(stack: Stack, kind: str = "raw", *, timeout: float = 60) -> None:
    """Start one API floor process (`raw` or `kopf`) and wait for its /healthz."""
    proc, module = FLOORS[kind]
    port = stack._port(f"{proc}-health")
    stack._spawn(proc, [sys.executable, "-m", module, "--health-port", str(port)],
                 env={**stack.env(), "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)})
    import urllib.error
    import urllib.request

    def ready() -> bool:
        if not stack.running(proc):
            raise RuntimeError(f"{FLOOR_NAMES[kind]} exited; see {stack.logs / (proc + '.log')}")
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).status == 200
        except urllib.error.HTTPError:
            return False

    from harness.stack import wait_for
    wait_for(ready, timeout, f"{FLOOR_NAMES[kind]} /healthz", interval=0.2)


def stop_floor(stack: Stack, kind: str = "raw") -> None:
    stack.kill(FLOORS[kind][0])


def start_api_floor(stack: Stack, *, timeout: float = 60) -> None:
    """The Kopf floor (the old name)."""
    start_floor(stack, "kopf", timeout=timeout)


def stop_api_floor(stack: Stack) -> None:
    stop_floor(stack, "kopf")


def rotation(sides: list[str], repeat: int) -> list[str]:
    """The order of the sides in repeat `repeat`: rotated each time, so that no side always runs
    first (on a fresh stack) or right after another one's cleanup."""
    k = repeat % len(sides)
    return sides[k:] + sides[:k]


def start_operator(stack: Stack, env: dict[str, str] | None = None, *, wait: bool = True) -> None:
    """`stack.start_operator`, or bench/variant_operator.py when OVNVNET_BENCH_VARIANTS is set."""
    variants = os.environ.get("OVNVNET_BENCH_VARIANTS", "").strip()
    if not variants:
        stack.start_operator(env, wait=wait)
        return
    if stack.running("operator"):
        return
    if env is not None:
        stack.state["operator_env"] = env
        stack._save()
    stack._spawn("operator", [sys.executable, "-m", "bench.variant_operator", variants],
                 env={**stack.operator_env(), "PYTHONPATH": str(REPO)})
    if wait:
        stack.wait_operator_ready()


def variants() -> str:
    return os.environ.get("OVNVNET_BENCH_VARIANTS", "").strip()
