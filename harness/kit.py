"""Test kit for integration tests on the real stack: a thin layer over the kubernetes client and
ovn-nbctl, plus the invariant check that reads the real systems."""
from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import kubernetes
from kubernetes.client.rest import ApiException

from harness.stack import Stack
from ovnvnet.model import names

GROUP, VERSION, PLURAL = "ovnvnet.io", "v1", "virtualnetworks"


def wait_until(check: Callable[[], Any], timeout: float = 20, interval: float = 0.2, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except ApiException as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


@dataclass
class Cluster:
    stack: Stack
    nb_remote: str | None = None   # read OVN from another NB (e.g. a RAFT cluster) than the stack's

    def __post_init__(self) -> None:
        client = kubernetes.config.new_client_from_config(config_file=str(self.stack.kubeconfig))
        client.configuration.connection_pool_maxsize = 64
        self.core = kubernetes.client.CoreV1Api(client)
        self.custom = kubernetes.client.CustomObjectsApi(client)

    # -------------------------------------------------------------- networks
    def create_vnet(self, name: str, subnet: str, **spec: Any) -> dict:
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "VirtualNetwork", "metadata": {"name": name},
                "spec": {"subnet": subnet, **spec}}
        return self.custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, body)

    def vnet(self, name: str) -> dict:
        return self.custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, name)

    def patch_vnet_spec(self, name: str, spec: dict) -> dict:
        return self.custom.patch_cluster_custom_object(GROUP, VERSION, PLURAL, name, {"spec": spec})

    def delete_vnet(self, name: str) -> None:
        try:
            self.custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, name)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def vnet_exists(self, name: str) -> bool:
        try:
            self.vnet(name)
            return True
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise

    def ipblocks(self, network: str) -> list[dict]:
        return self.custom.list_cluster_custom_object(
            GROUP, VERSION, "ipblocks", label_selector=f"ovnvnet.io/network={network}")["items"]

    def allocations(self, network: str) -> dict[str, dict]:
        """The network's allocation record: the union of its IPBlock objects."""
        out: dict[str, dict] = {}
        for block in self.ipblocks(network):
            out.update(block.get("allocations") or {})
        return out

    def ready(self, name: str) -> dict | None:
        conds = (self.vnet(name).get("status") or {}).get("conditions") or []
        return next((c for c in conds if c["type"] == "Ready"), None)

    def wait_ready(self, name: str, timeout: float = 20) -> dict:
        return wait_until(lambda: (c := self.ready(name)) and c["status"] == "True" and c, timeout,
                          what=f"network {name} Ready")

    # -------------------------------------------------------------- pods
    def ensure_namespace(self, ns: str) -> None:
        try:
            self.core.create_namespace({"metadata": {"name": ns}})
        except ApiException as exc:
            if exc.status != 409:
                raise

    def create_pod(self, ns: str, name: str, request: Any, *, node: str | None = "node-1",
                   extra_annotations: dict | None = None) -> Any:
        raw = request if isinstance(request, str) else json.dumps(request)
        body = {
            "metadata": {"name": name, "annotations": {"ovnNetwork": raw, **(extra_annotations or {})}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        }
        if node:
            body["spec"]["nodeName"] = node
        return self.core.create_namespaced_pod(ns, body)

    def pod(self, ns: str, name: str) -> Any:
        return self.core.read_namespaced_pod(name, ns)

    def annotations(self, ns: str, name: str) -> dict:
        return self.pod(ns, name).metadata.annotations or {}

    def iface_list(self, ns: str, name: str, timeout: float = 20) -> list[dict]:
        raw = wait_until(lambda: self.annotations(ns, name).get("ovnIfaceList"), timeout,
                         what=f"ovnIfaceList on {ns}/{name}")
        return json.loads(raw)

    def pod_error(self, ns: str, name: str, timeout: float = 20) -> str:
        return wait_until(lambda: self.annotations(ns, name).get("ovnNetworkError"), timeout,
                          what=f"ovnNetworkError on {ns}/{name}")

    def delete_pod(self, ns: str, name: str, *, wait: bool = True) -> None:
        try:
            self.core.delete_namespaced_pod(name, ns, grace_period_seconds=0)
        except ApiException as exc:
            if exc.status != 404:
                raise
        if wait:
            wait_until(lambda: not self.pod_exists(ns, name), 20, what=f"pod {ns}/{name} gone")

    def pod_exists(self, ns: str, name: str) -> bool:
        try:
            self.pod(ns, name)
            return True
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise

    def set_phase(self, ns: str, name: str, phase: str) -> None:
        self.core.patch_namespaced_pod_status(name, ns, {"status": {"phase": phase}})

    def events(self, ns: str, name: str) -> list[Any]:
        evs = self.core.list_namespaced_event(ns, field_selector=f"involvedObject.name={name}").items
        return evs

    def event_messages(self, ns: str, name: str) -> list[str]:
        return [e.message for e in self.events(ns, name)]

    # -------------------------------------------------------------- OVN
    def nb_rows(self, table: str) -> list[dict]:
        if self.nb_remote:
            import subprocess
            raw = subprocess.run(["ovn-nbctl", f"--db={self.nb_remote}", "--timeout=10", "--format=json",
                                  "list", table], capture_output=True, text=True, check=True).stdout
        else:
            raw = self.stack.nbctl("--format=json", "list", table)
        out = json.loads(raw)
        cols = out["headings"]
        rows = []
        for data in out["data"]:
            row = {c: _ovs_value(v) for c, v in zip(cols, data, strict=True)}
            for c in SET_COLUMNS & set(row):  # nbctl prints a one-element set as the bare element
                if not isinstance(row[c], list):
                    row[c] = [row[c]]
            rows.append(row)
        return rows

    def nb_pod_ports(self) -> dict[str, dict]:
        """Owned pod ports (not router-type) by name."""
        return {r["name"]: r for r in self.nb_rows("Logical_Switch_Port")
                if r["external_ids"].get(names.OWNER_KEY) == names.OWNER_VALUE and r["type"] != "router"}

    def nb_switches(self) -> dict[str, dict]:
        return {r["name"]: r for r in self.nb_rows("Logical_Switch")}


SET_COLUMNS = {"addresses", "port_security", "networks", "ports"}


def _ovs_value(v: Any) -> Any:
    if isinstance(v, list) and v and v[0] == "map":
        return {k: _ovs_value(x) for k, x in v[1]}
    if isinstance(v, list) and v and v[0] == "set":
        return [_ovs_value(x) for x in v[1]]
    if isinstance(v, list) and v and v[0] == "uuid":
        return v[1]
    return v


def check_invariant(cluster: Cluster, networks: list[str] | None = None, timeout: float = 20) -> dict[str, int]:
    """The invariant must hold once the operator has converged (status writes are coalesced, so
    they trail the pod annotation by a moment): retry until it holds or `timeout` passes, then
    fail with the last violation."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return invariant_now(cluster, networks)
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def invariant_now(cluster: Cluster, networks: list[str] | None = None) -> dict[str, int]:
    """Read the real systems and fail loudly unless they agree:
    every live attached pod has all its interfaces; per network no address or MAC is held twice;
    the NB pod ports ovnvnet owns are exactly the live pods' interfaces; status.allocations equals
    the same set; usedIPs/availableIPs are exact."""
    pods = cluster.core.list_pod_for_all_namespaces().items
    expected_ports: dict[str, tuple[str, str, str]] = {}   # port -> (network, ip, mac)
    per_net: dict[str, dict[str, dict]] = {}
    for p in pods:
        ann = p.metadata.annotations or {}
        if "ovnIfaceList" not in ann or p.status.phase in ("Succeeded", "Failed"):
            continue
        request = json.loads(ann["ovnNetwork"])
        ifaces = json.loads(ann["ovnIfaceList"])
        assert [r["interface"] for r in request] == [i["interface"] for i in ifaces], \
            f"{p.metadata.namespace}/{p.metadata.name}: interfaces differ from the request"
        for i in ifaces:
            port = names.port_name(p.metadata.namespace, p.metadata.name, i["interface"])
            expected_ports[port] = (i["name"], i["ip_address"], i["mac_address"])
            per_net.setdefault(i["name"], {})[i["ip_address"]] = {
                "pod": f"{p.metadata.namespace}/{p.metadata.name}", "podUID": p.metadata.uid,
                "interface": i["interface"], "mac": i["mac_address"]}
    # no address or MAC twice per network
    by_net_ips: dict[str, Counter] = {}
    by_net_macs: dict[str, Counter] = {}
    for net, ip, mac in expected_ports.values():
        by_net_ips.setdefault(net, Counter())[ip] += 1
        by_net_macs.setdefault(net, Counter())[mac] += 1
    for net, c in by_net_ips.items():
        dup = [ip for ip, n in c.items() if n > 1]
        assert not dup, f"addresses held twice on {net}: {dup}"
    for net, c in by_net_macs.items():
        dup = [m for m, n in c.items() if n > 1]
        assert not dup, f"MACs held twice on {net}: {dup}"
    # NB ports == live interfaces
    nb = cluster.nb_pod_ports()
    actual = {name: (r["external_ids"].get(names.NETWORK_KEY), *r["addresses"][0].split()[::-1])
              for name, r in nb.items()}
    actual = {k: (v[0], v[1], v[2]) for k, v in actual.items()}
    missing = {k: v for k, v in expected_ports.items() if actual.get(k) != v}
    extra = sorted(set(actual) - set(expected_ports))
    assert not missing and not extra, f"NB ports differ from live pods: missing/wrong {missing}, extra {extra}"
    for name, r in nb.items():
        assert r["port_security"] == r["addresses"], f"port {name} has no port security"
    # status == same set, counters exact
    nets = networks if networks is not None else [
        v["metadata"]["name"] for v in cluster.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"]]
    for net in nets:
        st = cluster.vnet(net).get("status") or {}
        allocs = cluster.allocations(net)
        want = per_net.get(net, {})
        assert allocs == want, f"{net}: the IPBlock record {allocs} != live pods {want}"
        assert st.get("usedIPs") == len(want), f"{net}: usedIPs {st.get('usedIPs')} != {len(want)}"
    return {"pods": len({v for v in expected_ports}), "ports": len(expected_ports)}
