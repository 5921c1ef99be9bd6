"""Test kit for integration tests on the real stack: a thin layer over the kubernetes client and
ovn-nbctl, plus the invariant check that reads the real systems."""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import kubernetes
import netaddr
from kubernetes.client.rest import ApiException

from harness.stack import Stack
from ovnvnet.model import names
from ovnvnet.model.annotation import NETWORKS_ANNOTATION, AnnotationError, pod_requests

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
    nad_namespace: str | None = None   # the operator's OVNVNET_NAD_NAMESPACE: Multus requests are read

    def __post_init__(self) -> None:
        client = kubernetes.config.new_client_from_config(config_file=str(self.stack.kubeconfig))
        client.configuration.connection_pool_maxsize = 64
        self.core = kubernetes.client.CoreV1Api(client)
        self.custom = kubernetes.client.CustomObjectsApi(client)

    # -------------------------------------------------------------- networks
    def create_vnet(self, name: str, subnet: str | list[str], **spec: Any) -> dict:
        """``subnet``: one CIDR (``spec.subnet``) or a list (``spec.subnets``, dual-stack)."""
        key = "subnet" if isinstance(subnet, str) else "subnets"
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "VirtualNetwork", "metadata": {"name": name},
                "spec": {key: subnet if isinstance(subnet, str) else list(subnet), **spec}}
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

    def wait_ready(self, name: str, timeout: float = 60) -> dict:  # a setup wait: generous under load
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
    """Read the real systems and fail loudly unless they agree (one AssertionError naming the
    first thing that differs):

    - pods: every live pod with an `ovnNetwork` request has an answer (`ovnIfaceList` or
      `ovnNetworkError`); each result lists the requested interfaces in order, on the requested
      networks, with the requested static addresses and MAC (unless a change after attach was
      refused: the pod then carries `ovnNetworkError` and keeps its result; or the pod is
      terminating: never changed, issue 16); a legacy pod's `ovn` result
      counts as its one interface `<ns>_<pod>`;
    - IPv6 / dual-stack: an interface's addresses are `ip_addresses` when present (else
      `ip_address`); it holds exactly one address per family of its network, each inside that
      family's subnet, and `ip_address`/`gateway_ip` are the first of them;
    - per network no address (of any family) or MAC is held twice;
    - NB: the pod ports ovnvnet owns are exactly the live pods' interfaces: each on the switch of
      its network (by the switch's `ports`, not the port's own `external_ids`), with exactly one
      address "MAC IP [IPv6]" (every address of the interface, IPv4 first) and the same port
      security, and the pod's namespace, name, UID and interface in `external_ids`; each network
      has its owned switch (MTU in `other_config`) and, when routed, its router port (the gateway/
      prefix of every family, MAC from the primary gateway) and the router-type switch port
      peering with it, and no router port when `routed: false`;
    - the IPBlock record equals the live set (every address of every family), each address in
      exactly one block, inside that block's CIDR, the block a /24 (IPv4) or /120 (IPv6) of the
      subnet (or the subnet when smaller) and named after it; `usedIPs` and `availableIPs` (the
      primary family; `availableIPs` absent above 2**53 - 1) and each `families[]` entry's decimal
      counts are exact;
    - IPClaims (issue 15): a claim is used by at most one live pod, whose port and record entries
      name it (``ovnvnet.io/claim``; ``claim``/``claimUID``) and whose addresses its status lists
      with ``ownerPod``; the addresses of a claim no live pod uses (its status) are still held, by
      the claim (record entry ``pod: "ipclaim <ns>/<name>"``, ``podUID: "claim:<uid>"``, no port),
      unique and counted like any other; a claim holding addresses holds its ``spec.ips``
      (unless its Ready condition reports the spec edited afterwards, ``SpecChanged``).
    """
    pods = cluster.core.list_pod_for_all_namespaces().items
    expected = _expected_ports(cluster, pods)
    claims = {f"{c['metadata']['namespace']}/{c['metadata']['name']}": c
              for c in cluster.custom.list_cluster_custom_object(GROUP, VERSION, "ipclaims")["items"]}
    podless = _claim_holds(expected, claims)
    _check_unique({**expected, **podless})
    nb = _NbView(cluster)
    _check_pod_ports(nb, expected)
    if networks is None:
        networks = [v["metadata"]["name"] for v in
                    cluster.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"]]
    for net in networks:
        vnet = cluster.vnet(net)
        _check_network_rows(nb, net, vnet)
        _check_families(net, vnet, [e for e in expected.values() if e["network"] == net])
        _check_record(cluster, net, vnet, {ip: e for e in [*expected.values(), *podless.values()]
                                           if e["network"] == net for ip in e["ips"]})
    counts = {"pods": len({e["uid"] for e in expected.values()}), "ports": len(expected)}
    if podless:
        counts["claim_holds"] = len(podless)   # addresses held by IPClaims no pod uses
    return counts


# ---------------------------------------------------------------- IPClaims (issue 15)
KEEP_ANNOTATION = "ovnvnet.io/keep-addresses"


def _claim_of(p: Any, claim: str | None, iface: str) -> str | None:
    """The IPClaim ("ns/name") a pod's interface uses: its request's "claim" (or Multus
    ``ipam-claim-reference``), or a StatefulSet pod's own ``<pod>.<interface>`` when it asks to
    keep its addresses."""
    ns = p.metadata.namespace
    if claim:
        return f"{ns}/{claim}"
    ann = p.metadata.annotations or {}
    owned = any(o.kind == "StatefulSet" and o.controller for o in p.metadata.owner_references or [])
    if ann.get(KEEP_ANNOTATION) == "true" and owned:
        return f"{ns}/{p.metadata.name}.{iface}"
    return None


def _claim_holds(expected: dict[str, dict], claims: dict[str, dict]) -> dict[str, dict]:
    """The addresses held by IPClaims no live pod uses (from the claims' status, the operator's
    report), keyed like ports; and, for claims a pod uses, the status must name that pod and its
    addresses. A pod using a claim gets the claim in its expected record entry."""
    used: dict[str, dict] = {}
    for e in expected.values():
        ref = e.get("claim")
        if ref is None:
            continue
        obj = claims.get(ref)
        e["claimUID"] = obj["metadata"]["uid"] if obj is not None else None
        assert ref not in used, f"IPClaim {ref} used by two live pods: {used[ref]['pod']} and {e['pod']}"
        used[ref] = e
    out: dict[str, dict] = {}
    for ref, c in claims.items():
        st = c.get("status") or {}
        ips = [str(netaddr.IPAddress(i.split("/")[0])) for i in st.get("ips") or []]
        asked = [_canonical(i) for i in (c.get("spec") or {}).get("ips") or []]
        changed = any(k.get("reason") == "SpecChanged" for k in st.get("conditions") or [])   # reported
        assert not ips or set(asked) <= set(ips) or changed, f"IPClaim {ref}: holds {ips}, its spec.ips asks {asked}"
        e = used.get(ref)
        if e is not None:
            assert ips == e["ips"] and (st.get("ownerPod") or {}).get("uid") == e["uid"], \
                f"IPClaim {ref}: status ips {ips} ownerPod {st.get('ownerPod')} != {e['ns']}/{e['pod']} {e['ips']}"
            continue
        assert not st.get("ownerPod"), f"IPClaim {ref}: status.ownerPod {st.get('ownerPod')} but no live pod uses it"
        if ips:
            spec = c.get("spec") or {}
            out[f"claim {ref}"] = {"network": spec.get("network"), "ips": ips, "mac": st.get("mac"),
                                   "ns": ref.split("/")[0], "pod": None, "interface": spec.get("interface"),
                                   "uid": None, "claim": ref, "claimUID": c["metadata"]["uid"]}
    return out


def _canonical(ip: Any) -> str:
    try:
        return str(netaddr.IPAddress(ip))
    except (netaddr.AddrFormatError, TypeError, ValueError):
        return str(ip)


def _record_entry(e: dict) -> dict:
    """The IPBlock entry the operator writes for an expected holding (a pod's, or a claim's)."""
    if e["pod"] is None:   # held by the claim itself
        entry = {"pod": f"ipclaim {e['claim']}", "podUID": f"claim:{e['claimUID']}", "interface": e["interface"],
                 "mac": e["mac"]}
    else:
        entry = {"pod": f"{e['ns']}/{e['pod']}", "podUID": e["uid"], "interface": e["interface"], "mac": e["mac"]}
    if e.get("claim"):
        entry.update(claim=e["claim"], claimUID=e["claimUID"])
    return entry


# ---------------------------------------------------------------- pods -> expected ports
def _expected_ports(cluster: Cluster, pods: list[Any]) -> dict[str, dict]:
    """port name -> {network, ips, mac, ns, pod, uid, interface} for every live attached pod."""
    out: dict[str, dict] = {}
    for p in pods:
        if p.status.phase in ("Succeeded", "Failed"):
            continue
        ann = p.metadata.annotations or {}
        ns, name, uid = p.metadata.namespace, p.metadata.name, p.metadata.uid
        if "ovnIfaceList" in ann:
            ifaces = json.loads(ann["ovnIfaceList"])
            _check_result_matches_request(cluster, p, ann.get("ovnNetwork"), ifaces,
                                          _multus_request(cluster, ns, ann))
            entries = [(i["interface"], i["name"], _result_ips(i), i["mac_address"]) for i in ifaces]
        elif _is_legacy_result(ann.get("ovn")):
            r = json.loads(ann["ovn"])
            entries = [(names.LEGACY_INTERFACE, r["name"], _result_ips(r), r["mac_address"])]
        else:
            assert "ovnNetwork" not in ann or "ovnNetworkError" in ann or p.metadata.deletion_timestamp, \
                f"{ns}/{name}: a live pod with a request and neither ovnIfaceList nor ovnNetworkError"
            continue
        try:   # the IPClaim of each interface, read with the contract's own parser
            asked = {r.interface: r.claim for r in pod_requests(ann, ns, cluster.nad_namespace) or []}
        except AnnotationError:
            asked = {}
        for iface, net, ips, mac in entries:
            out[names.port_name(ns, name, iface)] = {"network": net, "ips": ips, "mac": mac, "ns": ns,
                                                      "pod": name, "uid": uid, "interface": iface,
                                                      "claim": _claim_of(p, asked.get(iface), iface)}
    return out


def _result_ips(entry: dict) -> list[str]:
    """Every address of a result entry (canonical text, prefixes stripped), IPv4 first; the
    primary `ip_address` must be the first of `ip_addresses` when those are listed."""
    primary = str(netaddr.IPAddress(str(entry["ip_address"]).split("/")[0]))
    listed = entry.get("ip_addresses")
    if listed is None:
        return [primary]
    ips = [str(netaddr.IPAddress(str(c).split("/")[0])) for c in listed]
    assert ips and ips[0] == primary, f"result {entry.get('name')}: ip_addresses {listed} do not start with {primary}"
    assert [netaddr.IPAddress(i).version for i in ips] in ([4], [6], [4, 6]), \
        f"result {entry.get('name')}: ip_addresses {listed} are not one per family, IPv4 first"
    return ips


def _is_legacy_result(raw: str | None) -> bool:
    try:
        value = json.loads(raw) if raw else None
    except ValueError:
        return False
    return isinstance(value, dict) and "gateway_ip" in value


def _norm_mac(text: str) -> str:
    digits = text.strip().replace(":", "").replace("-", "").lower()
    return ":".join(digits[i:i + 2] for i in range(0, 12, 2))


def _requested(entry: dict) -> tuple[str, str, frozenset[str], str | None]:
    ip = entry.get("ip_address") or entry.get("ipAddress") or None
    listed = entry.get("ip_addresses") or entry.get("ipAddresses") or []
    ips = frozenset(str(netaddr.IPAddress(a.strip().split("/")[0])) for a in ([ip] if ip else []) + listed)
    mac = entry.get("mac_address") or entry.get("macAddress") or None
    return (entry["interface"], entry["name"], ips, mac and _norm_mac(mac))


def _multus_request(cluster: Cluster, ns: str, ann: dict) -> list[tuple] | None:
    """A pod asking in `k8s.v1.cni.cncf.io/networks` (no `ovnNetwork`): its ovnvnet elements, read
    with the contract's own parser (the Multus forms are checked by their unit tests)."""
    if "ovnNetwork" in ann or not cluster.nad_namespace or NETWORKS_ANNOTATION not in ann:
        return None
    try:
        reqs = pod_requests(ann, ns, cluster.nad_namespace) or []
    except AnnotationError:
        return None
    return [(r.interface, r.network, frozenset(str(ip) for ip in r.ips), r.mac) for r in reqs]


def _check_result_matches_request(cluster: Cluster, pod: Any, raw: str | None, ifaces: list[dict],
                                  multus: list[tuple] | None = None) -> None:
    where = f"{pod.metadata.namespace}/{pod.metadata.name}"
    try:
        request = multus if multus is not None else [_requested(e) for e in json.loads(raw or "null")]
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        request, why = None, f"request unreadable ({exc})"
    got = [(i["interface"], i["name"], frozenset(_result_ips(i)), _norm_mac(i["mac_address"])) for i in ifaces]
    if request is not None:
        wrong = [f"{g} for {r}" for r, g in zip(request, got, strict=False)
                 if r[:2] != g[:2] or not r[2] <= g[2] or (r[3] and r[3] != g[3])]
        if len(request) == len(got) and not wrong:
            return
        why = f"result differs from the request: {wrong or [len(request), len(got)]}"
    ann = pod.metadata.annotations or {}
    refused = "ovnNetworkError" in ann or pod.metadata.deletion_timestamp is not None   # a refused change
    assert refused, f"{where}: {why} (interface, network, ip, mac)"


def _check_unique(expected: dict[str, dict]) -> None:
    seen: dict[tuple[str, str], str] = {}
    for port, e in sorted(expected.items()):
        for key, value in [("ip", ip) for ip in e["ips"]] + [("mac", e["mac"])]:
            other = seen.setdefault((e["network"], value), port)
            assert other == port, f"{key} {value} held twice on {e['network']}: {other} and {port}"


# ---------------------------------------------------------------- NB
class _NbView:
    """The NB tables read once: owned pod ports, switches by name, the switch holding each port."""

    def __init__(self, cluster: Cluster):
        lsps = cluster.nb_rows("Logical_Switch_Port")
        self.lsp_by_name = {r["name"]: r for r in lsps}
        by_uuid = {r["_uuid"]: r["name"] for r in lsps}
        self.switches = {r["name"]: r for r in cluster.nb_rows("Logical_Switch")}
        self.switch_of: dict[str, list[str]] = {}
        for sw in self.switches.values():
            for u in sw["ports"]:
                self.switch_of.setdefault(by_uuid.get(u, u), []).append(sw["name"])
        self.pod_ports = {n: r for n, r in self.lsp_by_name.items()
                          if r["external_ids"].get(names.OWNER_KEY) == names.OWNER_VALUE and r["type"] != "router"}
        self.lrps = {r["name"]: r for r in cluster.nb_rows("Logical_Router_Port")}
        self.routers = {r["name"]: r for r in cluster.nb_rows("Logical_Router")}


def _check_pod_ports(nb: _NbView, expected: dict[str, dict]) -> None:
    extra = sorted(set(nb.pod_ports) - set(expected))
    missing = sorted(set(expected) - set(nb.pod_ports))
    assert not missing and not extra, f"NB ports differ from live pods: missing {missing}, extra {extra}"
    for port, e in expected.items():
        row = nb.pod_ports[port]
        want = [f"{e['mac']} {' '.join(e['ips'])}"]
        assert row["addresses"] == want, f"port {port}: addresses {row['addresses']} != {want}"
        assert row["port_security"] == want, f"port {port}: port_security {row['port_security']} != {want}"
        assert nb.switch_of.get(port) == [e["network"]], \
            f"port {port}: held by switch(es) {nb.switch_of.get(port)}, its network is {e['network']}"
        ids = row["external_ids"]
        want_ids = {names.NETWORK_KEY: e["network"], names.POD_NAMESPACE_KEY: e["ns"],
                    names.POD_NAME_KEY: e["pod"], names.POD_UID_KEY: e["uid"], names.INTERFACE_KEY: e["interface"]}
        if e.get("claim"):   # held for an IPClaim: the port says which (recovery re-links it)
            want_ids[names.CLAIM_KEY] = e["claim"]
        wrong = {k: ids.get(k) for k, v in want_ids.items() if ids.get(k) != v}
        assert not wrong, f"port {port}: external_ids {wrong} != {want_ids}"


def _check_network_rows(nb: _NbView, net: str, vnet: dict) -> None:
    applied = (vnet.get("status") or {}).get("appliedSpec")
    assert applied, f"{net}: no status.appliedSpec"
    sw = nb.switches.get(net)
    assert sw and sw["external_ids"].get(names.OWNER_KEY) == names.OWNER_VALUE, f"{net}: no owned logical switch"
    mtu = applied.get("mtu")
    assert sw["other_config"].get("mtu") == (str(mtu) if mtu else None), \
        f"{net}: switch other_config mtu {sw['other_config'].get('mtu')} != spec {mtu}"
    lrp_name, lsp_name = names.router_port_name(net), names.switch_router_port_name(net)
    if applied.get("routed") is False:
        assert lrp_name not in nb.lrps and lsp_name not in nb.lsp_by_name, f"{net}: routed: false but has a router port"
        return
    families = _applied_families(applied)
    gw = str(families[0][1])
    want_networks = sorted(f"{g}/{s.prefixlen}" for s, g in families)
    lrp = nb.lrps.get(lrp_name)
    assert lrp, f"{net}: router port {lrp_name} missing"
    router = nb.routers.get(names.ROUTER_NAME) or {"ports": []}
    assert lrp["_uuid"] in router["ports"], f"{net}: router port {lrp_name} is not on {names.ROUTER_NAME}"
    assert sorted(lrp["networks"]) == want_networks, \
        f"{net}: router port networks {lrp['networks']} != {want_networks}"
    want_mac = names.mac_from_ip(netaddr.IPAddress(gw))
    assert lrp["mac"] == want_mac, f"{net}: router port mac {lrp['mac']} != {want_mac}"
    lsp = nb.lsp_by_name.get(lsp_name)
    assert lsp and lsp["type"] == "router" and lsp["options"].get("router-port") == lrp_name, \
        f"{net}: switch port {lsp_name} is not a router port peering with {lrp_name}: {lsp}"
    assert nb.switch_of.get(lsp_name) == [net], f"{net}: {lsp_name} held by {nb.switch_of.get(lsp_name)}"


def _applied_families(applied: dict) -> list[tuple[netaddr.IPNetwork, netaddr.IPAddress]]:
    """(subnet, gateway) of each family of an applied spec, IPv4 first."""
    subnets = applied.get("subnets") or [applied["subnet"]]
    gateways = applied.get("gateways") or [applied["gateway"]]
    pairs = [(netaddr.IPNetwork(s), netaddr.IPAddress(g)) for s, g in zip(subnets, gateways, strict=True)]
    return sorted(pairs, key=lambda p: p[0].version)


def _check_families(net: str, vnet: dict, ports: list[dict]) -> None:
    """Each interface holds one address per family of the network, inside that family's subnet."""
    families = _applied_families((vnet.get("status") or {}).get("appliedSpec") or {})
    for e in ports:
        ips = [netaddr.IPAddress(ip) for ip in e["ips"]]
        assert [ip.version for ip in ips] == [s.version for s, _ in families], \
            f"{net}: {e['ns']}/{e['pod']} {e['interface']} holds {e['ips']}, the network's subnets are " \
            f"{[str(s) for s, _ in families]}"
        for ip, (subnet, _) in zip(ips, families, strict=True):
            assert ip in subnet, f"{net}: {ip} of {e['ns']}/{e['pod']} is outside {subnet}"


# ---------------------------------------------------------------- the record and counters
BLOCK_PREFIX = {4: 24, 6: 120}
MAX_JSON_INT = 2**53 - 1


def _check_record(cluster: Cluster, net: str, vnet: dict, want: dict[str, dict]) -> None:
    st = vnet.get("status") or {}
    families = _applied_families(st.get("appliedSpec") or {})
    record: dict[str, dict] = {}
    for block in cluster.ipblocks(net):
        bname = block["metadata"]["name"]
        cidr = netaddr.IPNetwork((block.get("spec") or {}).get("cidr") or "0.0.0.0/32")
        for ip, entry in (block.get("allocations") or {}).items():
            assert ip not in record, f"{net}: {ip} recorded in two IPBlocks"
            assert netaddr.IPAddress(ip) in cidr, f"{net}: {ip} recorded in block {bname} ({cidr})"
            record[ip] = entry
        subnet = next((s for s, _ in families if s.version == cidr.version), None)
        assert subnet is not None and cidr in subnet, f"{net}: block {bname} ({cidr}) is outside its subnets"
        assert cidr.prefixlen == max(BLOCK_PREFIX[cidr.version], subnet.prefixlen), \
            f"{net}: block {bname} is a /{cidr.prefixlen} of {subnet}"
        assert bname == _block_name(net, cidr), f"{net}: block {bname} of {cidr} is not named {_block_name(net, cidr)}"
    live = {ip: _record_entry(e) for ip, e in want.items()}
    for ip, entry in live.items():   # a pod using a claim deleted meanwhile: the record keeps its old UID
        if entry.get("claim") and entry.get("claimUID") is None:
            entry["claimUID"] = (record.get(ip) or {}).get("claimUID")
    assert record == live, f"{net}: the IPBlock record {record} != live pods {live}"
    rows = st.get("families") or []
    assert [r.get("family") for r in rows] == [f"IPv{s.version}" for s, _ in families], \
        f"{net}: status.families {rows} do not list the families of {[str(s) for s, _ in families]}"
    for row, (subnet, gw) in zip(rows, families, strict=True):
        used = sum(1 for ip in live if netaddr.IPAddress(ip).version == subnet.version)
        free = _capacity(st["appliedSpec"], subnet, gw) - used
        assert (row.get("subnet"), row.get("gateway")) == (str(subnet), str(gw)), f"{net}: status.families {row}"
        assert row.get("usedIPs") == str(used) and row.get("availableIPs") == str(free), \
            f"{net}: status.families {subnet}: used {row.get('usedIPs')} available {row.get('availableIPs')} " \
            f"!= {used} {free}"
        if subnet.version == families[0][0].version:   # the primary family: the integer counters
            assert st.get("usedIPs") == used, f"{net}: usedIPs {st.get('usedIPs')} != {used}"
            want_free = free if free <= MAX_JSON_INT else None
            assert st.get("availableIPs") == want_free, f"{net}: availableIPs {st.get('availableIPs')} != {want_free}"


def _block_name(net: str, cidr: netaddr.IPNetwork) -> str:
    if cidr.version == 4:
        return f"{net}.{cidr.network}"
    digits = f"{int(cidr.network):032x}"
    return f"{net}." + "-".join(digits[i:i + 4] for i in range(0, 32, 4))


def _capacity(applied: dict, subnet: netaddr.IPNetwork | None = None, gateway: netaddr.IPAddress | None = None) -> int:
    """Host addresses of one family minus its gateway and its excluded ones (computed here, not
    by the allocator): IPv4 hosts are first+1..last-1, IPv6 ones first+1..last (the network
    address is the subnet-router anycast address; no broadcast)."""
    if subnet is None or gateway is None:
        subnet, gateway = _applied_families(applied)[0]
    last = subnet.last - 1 if subnet.version == 4 else subnet.last
    hosts = netaddr.IPSet(netaddr.IPRange(subnet.first + 1, last))
    for item in applied.get("excludeIPs") or []:
        lo, _, hi = item.partition("..")
        if netaddr.IPAddress(lo).version == subnet.version:
            hosts -= netaddr.IPSet(netaddr.IPRange(lo, hi or lo))
    hosts.remove(gateway)
    return int(hosts.size)


def sandbox_invariant(cluster: Cluster, sandboxes: list[Any], timeout: float = 30) -> int:
    """What is plumbed agrees with what the operator says (issue 16: hot-plug), retried until it
    holds or `timeout` passes: in every given sandbox (harness.kubelet.Sandbox) of a pod with an
    `ovnIfaceList`, exactly the result's interfaces, each with the result's MAC and addresses; on
    every node, the agent's audit (cni/hotplug.py `leaks`) finds no OVS port without its veth,
    no veth without its port, no veth left under a temporary name. Returns the interfaces seen."""
    from ovnvnet.cni.hotplug import leaks
    from ovnvnet.cni.ovs import OvsPorts

    def now() -> int:
        seen = 0
        for sb in sandboxes:
            ann = cluster.pod(sb.namespace, sb.name).metadata.annotations or {}
            if "ovnIfaceList" not in ann:
                continue
            want = {i["interface"]: i for i in json.loads(ann["ovnIfaceList"])}
            have = sb.addresses()
            assert set(have) == set(want), \
                f"{sb.namespace}/{sb.name}: sandbox has {sorted(have)}, the result says {sorted(want)}"
            for name, entry in want.items():
                addrs = entry.get("ip_addresses") or [f"{entry['ip_address']}/{entry['prefix_length']}"]
                got = have[name]["ipv4"] + have[name].get("ipv6", [])
                assert sorted(got) == sorted(addrs) and have[name]["mac"] == entry["mac_address"], \
                    f"{sb.namespace}/{sb.name} {name}: plumbed {got} {have[name]['mac']}, result " \
                    f"{addrs} {entry['mac_address']}"
                seen += 1
        for node in cluster.stack.workers:
            ovs = OvsPorts(node.dataplane().ovs_remote)
            try:
                problems = leaks(node.netns, ovs)
            finally:
                ovs.close()
            assert not problems, f"{node.name}: {problems}"
        return seen

    deadline = time.monotonic() + timeout
    while True:
        try:
            return now()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
