"""IPClaims (issue 15) on the real stack (API server, kube-controller-manager with the StatefulSet
and garbage-collector controllers, OVN): a StatefulSet asking to keep its addresses gets them back
on recreation and after a scale-down undone in time, the addresses are held in the gap (a static
request for one waits, named as held by the claim), survive an operator restart exactly, are
released after the retention delay and when the StatefulSet is deleted; an explicit claim is used
by one pod at a time (the next waits while the old one is Terminating), and bad claims are refused
with their message. `check_invariant` (which knows podless claim holds) is checked at each step.

There is no kubelet and no scheduler: StatefulSet pods stay Pending and unscheduled (so a graceful
delete removes them at once), which is all the operator needs: it attaches on the pod object."""
from __future__ import annotations

import json
import signal

import kubernetes
import netaddr
import pytest
from kubernetes.client.rest import ApiException

from tests.integration.conftest import OPERATOR_ENV
from tests.integration.kit import Cluster, check_invariant, invariant_now, wait_until

GROUP, VERSION = "ovnvnet.io", "v1"


def _apps(cluster: Cluster) -> kubernetes.client.AppsV1Api:
    return kubernetes.client.AppsV1Api(cluster.core.api_client)


def _statefulset(cluster: Cluster, ns: str, name: str, replicas: int, request: list[dict]) -> None:
    body = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name},
            "spec": {"replicas": replicas, "serviceName": name, "podManagementPolicy": "Parallel",
                     "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name},
                                               "annotations": {"ovnNetwork": json.dumps(request),
                                                               "ovnvnet.io/keep-addresses": "true"}},
                                  "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}
    _apps(cluster).create_namespaced_stateful_set(ns, body)


def _scale(cluster: Cluster, ns: str, name: str, replicas: int) -> None:
    _apps(cluster).patch_namespaced_stateful_set(name, ns, {"spec": {"replicas": replicas}})


def _members(cluster: Cluster, ns: str, name: str, count: int, old_uids: dict | None = None,
             timeout: float = 60) -> dict[str, dict]:
    """pod name -> {uid, ifaces: {interface: (ips, mac)}} once exactly `count` members exist, are
    attached, and (given `old_uids`) every one listed there was recreated."""
    def get():
        pods = [p for p in cluster.core.list_namespaced_pod(ns, label_selector=f"app={name}").items
                if not p.metadata.deletion_timestamp]
        out = {}
        for p in pods:
            raw = (p.metadata.annotations or {}).get("ovnIfaceList")
            if not raw or (old_uids and old_uids.get(p.metadata.name) == p.metadata.uid):
                return None
            ifaces = {i["interface"]: (tuple(i.get("ip_addresses") or [i["ip_address"]]), i["mac_address"])
                      for i in json.loads(raw)}
            out[p.metadata.name] = {"uid": p.metadata.uid, "ifaces": ifaces}
        return out if len(out) == count else None
    return wait_until(get, timeout, what=f"{count} attached members of StatefulSet {ns}/{name}")


def _claims(cluster: Cluster, ns: str) -> dict[str, dict]:
    items = cluster.custom.list_namespaced_custom_object(GROUP, VERSION, ns, "ipclaims")["items"]
    return {c["metadata"]["name"]: c for c in items}


def _create_claim(cluster: Cluster, ns: str, name: str, network: str, interface: str, *,
                  ips: list[str] | None = None, mac: str | None = None) -> dict:
    spec = {"network": network, "interface": interface, **({"ips": ips} if ips else {}),
            **({"mac": mac} if mac else {})}
    return cluster.custom.create_namespaced_custom_object(GROUP, VERSION, ns, "ipclaims", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "IPClaim", "metadata": {"name": name}, "spec": spec})


def _status(cluster: Cluster, ns: str, name: str) -> dict:
    return _claims(cluster, ns).get(name, {}).get("status") or {}


def _ready(cluster: Cluster, ns: str, name: str) -> tuple[str, str, str]:
    cond = (_status(cluster, ns, name).get("conditions") or [{}])[0]
    return cond.get("status", ""), cond.get("reason", ""), cond.get("message", "")


def _host(cidr: str, n: int) -> str:
    return str(netaddr.IPNetwork(cidr).network + n)


def _mac(ip: str) -> str:
    return "0a:58:" + ":".join(f"{int(o):02x}" for o in ip.split("."))


def _restart_operator(cluster: Cluster, env: dict[str, str]) -> None:
    cluster.stack.stop_operator(signal.SIGKILL)
    cluster.stack.start_operator(env)


@pytest.fixture
def retention_operator(cluster: Cluster):
    """The operator with a 15 s claim retention for this test; the usual one afterwards."""
    env = {**OPERATOR_ENV, "OVNVNET_CLAIM_RETENTION": "15"}
    yield env
    _restart_operator(cluster, OPERATOR_ENV)


def test_statefulset_keeps_addresses_across_recreation_scale_and_restart(
        cluster: Cluster, ns: str, subnet, net_name, retention_operator) -> None:
    a, b = net_name("sts-a"), net_name("sts-b")
    cluster.create_vnet(a, subnet())
    cluster.create_vnet(b, subnet())
    cluster.wait_ready(a)
    cluster.wait_ready(b)
    _restart_operator(cluster, retention_operator)
    _statefulset(cluster, ns, "web", 3, [{"name": a, "interface": "net0"}, {"name": b, "interface": "net1"}])
    first = _members(cluster, ns, "web", 3)
    assert set(_claims(cluster, ns)) == {f"web-{i}.net{j}" for i in range(3) for j in range(2)}
    check_invariant(cluster, [a, b])

    # every pod deleted: the recreated pods (new UIDs) have the same addresses and MACs
    for pod in first:
        cluster.core.delete_namespaced_pod(pod, ns)
    again = _members(cluster, ns, "web", 3, old_uids={p: m["uid"] for p, m in first.items()})
    assert {p: m["ifaces"] for p, m in again.items()} == {p: m["ifaces"] for p, m in first.items()}
    check_invariant(cluster, [a, b])

    # scale to 1: ordinals 1 and 2 are gone, their addresses held by their claims; the operator
    # killed in the gap recovers the holds exactly
    _scale(cluster, ns, "web", 1)
    _members(cluster, ns, "web", 1)
    wait_until(lambda: all(not (c.get("status") or {}).get("ownerPod") and (c.get("status") or {}).get("ips")
                           for n, c in _claims(cluster, ns).items() if not n.startswith("web-0.")),
               30, what="the claims of web-1 and web-2 held without a pod")
    check_invariant(cluster, [a, b])
    _restart_operator(cluster, retention_operator)
    assert check_invariant(cluster, [a, b])["claim_holds"] == 4

    # a static request for web-1's address waits, named as held by its claim
    ip1 = first["web-1"]["ifaces"]["net0"][0][0].split("/")[0]
    cluster.create_pod(ns, "thief", [{"name": a, "interface": "net0", "ip_address": ip1}])
    assert cluster.pod_error(ns, "thief") == f"ip_address {ip1} on {a} is held by ipclaim {ns}/web-1.net0"
    assert cluster.annotations(ns, "thief").get("ovnNetworkErrorRetry") == "true"

    # scale back within the retention: ordinals 1 and 2 get their old addresses back
    _scale(cluster, ns, "web", 3)
    back = _members(cluster, ns, "web", 3)
    assert {p: m["ifaces"] for p, m in back.items()} == {p: m["ifaces"] for p, m in first.items()}
    assert "ovnIfaceList" not in cluster.annotations(ns, "thief")
    check_invariant(cluster, [a, b])

    # scale to 1 for longer than the retention: the claims of ordinals 1 and 2 are deleted and
    # their addresses released; the waiting static request gets its address
    _scale(cluster, ns, "web", 1)
    wait_until(lambda: set(_claims(cluster, ns)) == {"web-0.net0", "web-0.net1"}, 60,
               what="the claims of the scaled-down ordinals deleted after the retention")
    thief = cluster.iface_list(ns, "thief", timeout=30)
    assert thief[0]["ip_address"] == ip1
    _scale(cluster, ns, "web", 3)
    last = _members(cluster, ns, "web", 3)
    assert last["web-1"]["ifaces"]["net0"] != first["web-1"]["ifaces"]["net0"]
    assert last["web-0"]["ifaces"] == first["web-0"]["ifaces"]
    check_invariant(cluster, [a, b])

    # the StatefulSet deleted: the garbage collector deletes its pods and claims, nothing stays held
    _apps(cluster).delete_namespaced_stateful_set("web", ns, propagation_policy="Background")
    cluster.delete_pod(ns, "thief")
    wait_until(lambda: not _claims(cluster, ns) and not cluster.core.list_namespaced_pod(ns).items, 60,
               what="the StatefulSet's pods and claims deleted")
    wait_until(lambda: not cluster.allocations(a) and not cluster.allocations(b), 30,
               what="every address released")
    check_invariant(cluster, [a, b])


def test_explicit_claim_one_pod_at_a_time_and_bad_claims(cluster: Cluster, ns: str, subnet, net_name) -> None:
    net = net_name("claim")
    cluster.create_vnet(net, subnet())
    cluster.wait_ready(net)
    _create_claim(cluster, ns, "db", net, "net0")
    req = [{"name": net, "interface": "net0", "claim": "db"}]
    cluster.create_pod(ns, "old", req)
    old = cluster.iface_list(ns, "old")[0]
    check_invariant(cluster, [net])

    # the old pod Terminating (no kubelet confirms it): it keeps the claim, the new pod waits
    cluster.core.delete_namespaced_pod("old", ns, grace_period_seconds=60)
    cluster.create_pod(ns, "new", req)
    assert cluster.pod_error(ns, "new") == (f"IPClaim {ns}/db is used by pod {ns}/old (interface net0); "
                                            f"waiting until that pod is gone")
    assert cluster.annotations(ns, "new").get("ovnNetworkErrorRetry") == "true"
    assert cluster.iface_list(ns, "old") == [old]
    check_invariant(cluster, [net])
    cluster.delete_pod(ns, "old")
    new = cluster.iface_list(ns, "new", timeout=30)[0]
    assert (new["ip_address"], new["mac_address"]) == (old["ip_address"], old["mac_address"])
    check_invariant(cluster, [net])

    # bad input, each with its message
    cluster.create_pod(ns, "foreign", [{"name": net, "interface": "net0", "claim": "other/db"}])
    assert "names another namespace; a pod may only use IPClaims of its own namespace" in \
        cluster.pod_error(ns, "foreign")
    cluster.create_pod(ns, "missing", [{"name": net, "interface": "net0", "claim": "nope"}])
    assert cluster.pod_error(ns, "missing") == f"interface net0: IPClaim {ns}/nope does not exist"
    _create_claim(cluster, ns, "lost", "no-such-net", "net0")
    cluster.create_pod(ns, "wrong", [{"name": net, "interface": "net0", "claim": "lost"}])
    assert cluster.pod_error(ns, "wrong") == (f"interface net0 on {net}: IPClaim {ns}/lost is for network "
                                              f"no-such-net interface net0")
    wait_until(lambda: ((_claims(cluster, ns)["lost"].get("status") or {}).get("conditions") or [{}])[0]
               .get("message") == "network no-such-net does not exist (no VirtualNetwork named no-such-net)",
               20, what="the unknown network in the claim's Ready condition")
    closed = net_name("claim-closed")   # a claim on a network the namespace may not use
    cluster.create_vnet(closed, subnet(), namespaceSelector={"matchLabels": {"ovnvnet-test": "nobody"}})
    cluster.wait_ready(closed)
    _create_claim(cluster, ns, "closed", closed, "net0")
    cluster.create_pod(ns, "outsider", [{"name": closed, "interface": "net0", "claim": "closed"}])
    assert cluster.pod_error(ns, "outsider").startswith(f"network {closed} does not admit pods from namespace {ns}")
    for pod in ("foreign", "missing", "wrong", "outsider"):
        cluster.delete_pod(ns, pod)

    # the claim deleted while its pod runs: the pod keeps its address; once the pod goes too, it is free
    cluster.custom.delete_namespaced_custom_object(GROUP, VERSION, ns, "ipclaims", "db")
    check_invariant(cluster, [net])
    cluster.delete_pod(ns, "new")
    wait_until(lambda: not cluster.allocations(net), 30, what="the claim's address released")
    check_invariant(cluster, [net])


def test_claim_deleted_while_the_operator_is_down(cluster: Cluster, ns: str, subnet, net_name) -> None:
    net = net_name("claimdown")
    cluster.create_vnet(net, subnet())
    cluster.wait_ready(net)
    for name in ("keep", "drop"):
        _create_claim(cluster, ns, name, net, "net0")
        cluster.create_pod(ns, name, [{"name": net, "interface": "net0", "claim": name}])
    held = {name: cluster.iface_list(ns, name)[0]["ip_address"] for name in ("keep", "drop")}
    for name in ("keep", "drop"):
        cluster.delete_pod(ns, name)
    wait_until(lambda: set(cluster.allocations(net)) == set(held.values())
               and all(e["podUID"].startswith("claim:") for e in cluster.allocations(net).values()),
               30, what="both addresses held by their claims")
    cluster.stack.stop_operator(signal.SIGKILL)
    try:
        cluster.custom.delete_namespaced_custom_object(GROUP, VERSION, ns, "ipclaims", "drop")
    finally:
        cluster.stack.start_operator(OPERATOR_ENV)
    wait_until(lambda: set(cluster.allocations(net)) == {held["keep"]}, 30,
               what="the deleted claim's address released, the other kept")
    check_invariant(cluster, [net])
    cluster.create_pod(ns, "keep2", [{"name": net, "interface": "net0", "claim": "keep"}])
    assert cluster.iface_list(ns, "keep2")[0]["ip_address"] == held["keep"]
    check_invariant(cluster, [net])
    cluster.delete_pod(ns, "keep2")
    try:
        cluster.custom.delete_namespaced_custom_object(GROUP, VERSION, ns, "ipclaims", "keep")
    except ApiException as exc:
        assert exc.status == 404
    wait_until(lambda: not cluster.allocations(net), 30, what="every address released")


def test_statefulset_churn_with_terminating_members_and_operator_killed(
        cluster: Cluster, ns: str, subnet, net_name) -> None:
    """Members deleted over and over, half of them held Terminating for a while by a finalizer (a
    drain: the old pod still runs, the StatefulSet waits for it before recreating the name), and
    the operator SIGKILLed in the middle: every recreated member has its first addresses and MACs,
    a watch of every `ovnIfaceList` shows no address or MAC held by two pods at any moment and no
    result ever changed, no claim is lost or duplicated, and the invariant holds."""
    from harness.soak import IfaceWatch
    a, b = net_name("churn-a"), net_name("churn-b")
    cluster.create_vnet(a, subnet())
    cluster.create_vnet(b, subnet())
    cluster.wait_ready(a)
    cluster.wait_ready(b)
    watch = IfaceWatch(cluster, ns).start()
    try:
        _statefulset(cluster, ns, "db", 3, [{"name": a, "interface": "net0"}, {"name": b, "interface": "net1"}])
        first = _members(cluster, ns, "db", 3)
        current = {p: m["uid"] for p, m in first.items()}
        for round_ in range(6):
            for i, pod in enumerate(sorted(current)):
                if (i + round_) % 2 == 0:   # drained: Terminating, still holding its interfaces
                    cluster.core.patch_namespaced_pod(pod, ns, {"metadata": {"finalizers": ["test.ovnvnet.io/hold"]}})
                    cluster.core.delete_namespaced_pod(pod, ns)
                    if round_ == 3 and i == 0:
                        cluster.stack.stop_operator(signal.SIGKILL)
                        cluster.stack.start_operator(OPERATOR_ENV, wait=False)
                    held = cluster.pod(ns, pod)
                    assert held.metadata.deletion_timestamp and "ovnIfaceList" in held.metadata.annotations
                    cluster.core.patch_namespaced_pod(pod, ns, {"metadata": {"finalizers": None}})
                else:
                    cluster.core.delete_namespaced_pod(pod, ns)
            members = _members(cluster, ns, "db", 3, old_uids=current, timeout=90)
            assert {p: m["ifaces"] for p, m in members.items()} == {p: m["ifaces"] for p, m in first.items()}, round_
            current = {p: m["uid"] for p, m in members.items()}
        cluster.stack.wait_operator_ready()
        check_invariant(cluster, [a, b])
        assert sorted(_claims(cluster, ns)) == [f"db-{i}.net{j}" for i in range(3) for j in range(2)]
    finally:
        watch.stop()
    bad, reused, _undecided = watch.overlaps()
    assert not bad, bad
    assert not watch.changed(), watch.changed()
    assert reused == 6, f"{reused} addresses were held by more than one pod over the run, not the 3 x 2 of the members"
    _apps(cluster).delete_namespaced_stateful_set("db", ns, propagation_policy="Background")
    wait_until(lambda: not cluster.allocations(a) and not cluster.allocations(b), 60, what="every address released")
    check_invariant(cluster, [a, b])


def test_checker_fails_on_a_corrupted_claim_hold(cluster: Cluster, ns: str, subnet, net_name) -> None:
    """`invariant_now` knows podless claim holds: with the operator stopped (nothing repairs), a
    claim hold missing from the IPBlocks, a claim's status naming a pod that does not use it, and
    an NB port left for a claim's released pod each fail the check naming what differs."""
    net = net_name("claimcheck")
    cluster.create_vnet(net, subnet())
    cluster.wait_ready(net)
    _create_claim(cluster, ns, "kept", net, "net0")
    cluster.create_pod(ns, "user", [{"name": net, "interface": "net0", "claim": "kept"}])
    ip = cluster.iface_list(ns, "user")[0]["ip_address"]
    cluster.delete_pod(ns, "user")
    wait_until(lambda: not (_claims(cluster, ns)["kept"].get("status") or {}).get("ownerPod"), 20,
               what="the claim reported without a pod")
    assert check_invariant(cluster, [net])["claim_holds"] == 1
    block = cluster.ipblocks(net)[0]["metadata"]["name"]
    entry = cluster.allocations(net)[ip]
    assert entry["podUID"].startswith("claim:") and entry["claim"] == f"{ns}/kept"
    cluster.stack.stop_operator()
    try:
        cluster.custom.patch_cluster_custom_object(GROUP, VERSION, "ipblocks", block, {"allocations": {ip: None}})
        with pytest.raises(AssertionError, match=f"the IPBlock record .* != live pods .*{ip}"):
            invariant_now(cluster, [net])
        cluster.custom.patch_cluster_custom_object(GROUP, VERSION, "ipblocks", block, {"allocations": {ip: entry}})
        invariant_now(cluster, [net])

        status = _claims(cluster, ns)["kept"]["status"]
        cluster.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, ns, "ipclaims", "kept", {"status": {"ownerPod": {"name": "ghost", "uid": "x"}}})
        with pytest.raises(AssertionError, match="IPClaim .*/kept: status.ownerPod .* but no live pod uses it"):
            invariant_now(cluster, [net])
        cluster.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, ns, "ipclaims", "kept", {"status": {"ownerPod": status.get("ownerPod")}})
        invariant_now(cluster, [net])

        other = str(netaddr.IPAddress(ip) + 1)   # the spec edited to ask another address
        cluster.custom.patch_namespaced_custom_object(GROUP, VERSION, ns, "ipclaims", "kept",
                                                      {"spec": {"ips": [other]}})
        with pytest.raises(AssertionError, match=rf"IPClaim .*/kept: holds \['{ip}'\], its spec.ips asks \['{other}'"):
            invariant_now(cluster, [net])
        cluster.custom.patch_namespaced_custom_object(GROUP, VERSION, ns, "ipclaims", "kept", {"spec": {"ips": None}})
        invariant_now(cluster, [net])

        mac = entry["mac"]
        cluster.stack.nbctl("lsp-add", net, f"{ns}_user_net0", "--", "lsp-set-addresses", f"{ns}_user_net0",
                            f"{mac} {ip}", "--", "set", "Logical_Switch_Port", f"{ns}_user_net0",
                            "external_ids:ovnvnet.io/owner=ovnvnet")
        with pytest.raises(AssertionError, match=f"NB ports differ from live pods: .*extra .*{ns}_user_net0"):
            invariant_now(cluster, [net])
    finally:
        cluster.stack.start_operator(OPERATOR_ENV)
    check_invariant(cluster, [net])   # the operator's repair removes the stray port

    # the spec edited after the claim got its address: the address stays (a claim's addresses never
    # change while it exists) and the Ready condition says why
    cluster.custom.patch_namespaced_custom_object(GROUP, VERSION, ns, "ipclaims", "kept", {"spec": {"ips": [other]}})
    wait_until(lambda: _ready(cluster, ns, "kept") == (
        "False", "SpecChanged", f"spec asks for {other}, but the claim holds {ip} {mac}: a claim's addresses never "
        f"change while it exists (delete it and create it again to change them)"), 20, what="SpecChanged reported")
    assert cluster.allocations(net)[ip]["pod"] == f"ipclaim {ns}/kept"
    check_invariant(cluster, [net])
    cluster.custom.delete_namespaced_custom_object(GROUP, VERSION, ns, "ipclaims", "kept")
    wait_until(lambda: not cluster.allocations(net), 30, what="the claim's address released")


@pytest.fixture
def unswept_operator(cluster: Cluster):
    """The operator with its sweep an hour apart for this test: whatever a claim's status says
    was written on the change itself (binding, release, a pod using it), not by the sweep."""
    env = {**OPERATOR_ENV, "OVNVNET_SWEEP_INTERVAL": "3600"}
    _restart_operator(cluster, env)
    yield env
    _restart_operator(cluster, OPERATOR_ENV)


def test_statefulset_static_address_per_ordinal_from_claims_created_ahead(
        cluster: Cluster, ns: str, subnet, net_name, unswept_operator) -> None:
    """Member N of a StatefulSet gets the address the user wrote in the claim `web-N.net1` created
    ahead of it (`spec.ips`): held from the claim's creation, before any pod; the status follows
    every change without a sweep; bad requested addresses are refused with their message."""
    a, b = net_name("ord-a"), net_name("ord-b")
    sa, sb = subnet(), subnet()
    cluster.create_vnet(a, sa)
    cluster.create_vnet(b, sb)
    cluster.wait_ready(a)
    cluster.wait_ready(b)
    statics = {i: _host(sb, 20 + i) for i in range(3)}
    for i in range(3):
        _create_claim(cluster, ns, f"web-{i}.net1", b, "net1", ips=[statics[i]])

    # held from the claim's creation: the record and the status say so (no sweep runs)
    wait_until(lambda: {ip: e["pod"] for ip, e in cluster.allocations(b).items()}
               == {statics[i]: f"ipclaim {ns}/web-{i}.net1" for i in range(3)}, 20,
               what="the requested addresses held by their claims")
    wait_until(lambda: all(_status(cluster, ns, f"web-{i}.net1").get("ips") == [f"{statics[i]}/24"]
                           and _ready(cluster, ns, f"web-{i}.net1") == ("True", "Held", f"holds {statics[i]}/24")
                           for i in range(3)), 20, what="the claims' status written on binding")
    assert check_invariant(cluster, [a, b])["claim_holds"] == 3
    cluster.create_pod(ns, "thief", [{"name": b, "interface": "net0", "ip_address": statics[1]}])
    assert cluster.pod_error(ns, "thief") == f"ip_address {statics[1]} on {b} is held by ipclaim {ns}/web-1.net1"
    cluster.delete_pod(ns, "thief")

    # the StatefulSet: member N gets its claim's address (and the MAC derived from it) on net1, a
    # dynamic one on net0 (a claim the operator creates, owned by the set); the user's claims stay the user's
    _statefulset(cluster, ns, "web", 3, [{"name": a, "interface": "net0"}, {"name": b, "interface": "net1"}])
    first = _members(cluster, ns, "web", 3)
    assert {p: m["ifaces"]["net1"] for p, m in first.items()} == {
        f"web-{i}": ((statics[i],), _mac(statics[i])) for i in range(3)}
    claims = _claims(cluster, ns)
    assert set(claims) == {f"web-{i}.net{j}" for i in range(3) for j in range(2)}
    assert all(not claims[f"web-{i}.net1"]["metadata"].get("ownerReferences") for i in range(3))
    assert all(claims[f"web-{i}.net0"]["metadata"]["ownerReferences"][0]["kind"] == "StatefulSet" for i in range(3))
    wait_until(lambda: all((_status(cluster, ns, f"web-{i}.net{j}").get("ownerPod") or {}).get("uid")
                           == first[f"web-{i}"]["uid"] for i in range(3) for j in range(2)), 20,
               what="every claim's status naming its member (written when the member took it)")
    check_invariant(cluster, [a, b])

    # a member recreated: the same addresses again; the status names the new pod
    cluster.core.delete_namespaced_pod("web-1", ns)
    again = _members(cluster, ns, "web", 3, old_uids={"web-1": first["web-1"]["uid"]})
    assert {p: m["ifaces"] for p, m in again.items()} == {p: m["ifaces"] for p, m in first.items()}
    wait_until(lambda: (_status(cluster, ns, "web-1.net1").get("ownerPod") or {}).get("uid") == again["web-1"]["uid"],
               20, what="web-1.net1's status naming the recreated member")
    check_invariant(cluster, [a, b])

    # bad requested addresses: each with its message, in the claim's Ready condition and in the
    # ovnNetworkError of a pod using the claim
    gateway, spare = _host(sb, 1), _host(sb, 40)
    bad = {
        "outside": (["192.0.2.7"], "InvalidAddress", f"spec.ips 192.0.2.7 is outside {b} ({sb})"),
        "gateway": ([gateway], "InvalidAddress", f"spec.ips {gateway} is the gateway of {b}"),
        "taken": ([statics[0]], "AddressUnavailable", f"spec.ips {statics[0]} on {b} is held by {ns}/web-0"),
        "twice": ([spare, spare], "InvalidClaim", f"IPClaim {ns}/twice: spec.ips lists {spare} twice"),
    }
    for name, (ips, _, _) in bad.items():
        _create_claim(cluster, ns, name, b, "net0", ips=ips)
    for name, (_, reason, message) in bad.items():
        wait_until(lambda n=name, r=reason, m=message: _ready(cluster, ns, n) == ("False", r, m), 20,
                   what=f"claim {name}'s Ready condition")
        assert not _status(cluster, ns, name).get("ips")
    cluster.create_pod(ns, "p-outside", [{"name": b, "interface": "net0", "claim": "outside"}])
    assert cluster.pod_error(ns, "p-outside") == f"interface net0: IPClaim {ns}/outside: {bad['outside'][2]}"
    assert "ovnNetworkErrorRetry" not in cluster.annotations(ns, "p-outside")
    cluster.create_pod(ns, "p-taken", [{"name": b, "interface": "net0", "claim": "taken"}])
    assert cluster.pod_error(ns, "p-taken") == f"interface net0: IPClaim {ns}/taken: {bad['taken'][2]}"
    assert cluster.annotations(ns, "p-taken").get("ovnNetworkErrorRetry") == "true"
    cluster.create_pod(ns, "p-twice", [{"name": b, "interface": "net0", "claim": "twice"}])
    assert cluster.pod_error(ns, "p-twice") == f"interface net0: {bad['twice'][2]}"

    # two claims asking for one address: the second waits, named as held by the first
    _create_claim(cluster, ns, "first", b, "net0", ips=[spare])
    _create_claim(cluster, ns, "second", b, "net0", ips=[spare])
    wait_until(lambda: _ready(cluster, ns, "second")
               == ("False", "AddressUnavailable", f"spec.ips {spare} on {b} is held by ipclaim {ns}/first"),
               20, what="the second claim of one address refused")
    # a request's static address that is not its claim's
    cluster.create_pod(ns, "p-other", [{"name": b, "interface": "net0", "claim": "second",
                                         "ip_address": _host(sb, 41)}])
    assert cluster.pod_error(ns, "p-other") == (
        f"interface net0 on {b}: IPClaim {ns}/second asks for {spare}, the request asks {_host(sb, 41)}; "
        f"remove the static address or use another claim")
    for pod in ("p-outside", "p-twice", "p-other"):
        cluster.delete_pod(ns, pod)

    # the first claim deleted: the second gets the address at once (no sweep), and the pod waiting
    # on it is attached with it; the pod gone, the status says so (ownerPod cleared, still held)
    cluster.custom.delete_namespaced_custom_object(GROUP, VERSION, ns, "ipclaims", "first")
    wait_until(lambda: _ready(cluster, ns, "second") == ("True", "Held", f"holds {spare}/24"), 20,
               what="the second claim holding the released address")
    cluster.create_pod(ns, "user", [{"name": b, "interface": "net0", "claim": "second"}])
    assert cluster.iface_list(ns, "user")[0]["ip_address"] == spare
    user_uid = cluster.pod(ns, "user").metadata.uid
    wait_until(lambda: (_status(cluster, ns, "second").get("ownerPod") or {}).get("uid") == user_uid, 20,
               what="the claim's status naming its pod")
    check_invariant(cluster, [a, b])
    cluster.delete_pod(ns, "user")
    wait_until(lambda: not _status(cluster, ns, "second").get("ownerPod")
               and _status(cluster, ns, "second").get("ips") == [f"{spare}/24"], 20,
               what="the claim's status after its pod went (no pod, the address still held)")
    assert cluster.allocations(b)[spare]["pod"] == f"ipclaim {ns}/second"

    # the claim asking for web-0's address gets it once web-0's claim is deleted and web-0 is gone
    _apps(cluster).delete_namespaced_stateful_set("web", ns, propagation_policy="Background")
    wait_until(lambda: not [p for p in cluster.core.list_namespaced_pod(ns).items
                            if p.metadata.name.startswith("web-")], 60, what="the members deleted")
    cluster.custom.delete_namespaced_custom_object(GROUP, VERSION, ns, "ipclaims", "web-0.net1")
    assert cluster.iface_list(ns, "p-taken", timeout=30)[0]["ip_address"] == statics[0]
    check_invariant(cluster, [a, b])
    cluster.delete_pod(ns, "p-taken")
    for name in [n for n in _claims(cluster, ns)]:
        cluster.custom.delete_namespaced_custom_object(GROUP, VERSION, ns, "ipclaims", name)
    wait_until(lambda: not cluster.allocations(a) and not cluster.allocations(b), 30,
               what="every address released with its claim (no sweep)")
    check_invariant(cluster, [a, b])


def test_claims_created_ahead_outlive_scale_down_and_restart(
        cluster: Cluster, ns: str, subnet, net_name, retention_operator) -> None:
    """Claims the user created ahead are the user's: a scale-down longer than the retention
    deletes only the operator's claims (the dynamic interface), the user's keep their requested
    addresses for the ordinals' return; a claim created while the operator is down is held when it
    starts, before its member exists; deleting the StatefulSet leaves the user's claims holding."""
    a, b = net_name("ahead-a"), net_name("ahead-b")
    sb = subnet()
    cluster.create_vnet(a, subnet())
    cluster.create_vnet(b, sb)
    cluster.wait_ready(a)
    cluster.wait_ready(b)
    _restart_operator(cluster, retention_operator)
    statics = {i: _host(sb, 50 + i) for i in range(3)}
    for i in range(2):
        _create_claim(cluster, ns, f"db-{i}.net1", b, "net1", ips=[statics[i]])
    _statefulset(cluster, ns, "db", 2, [{"name": a, "interface": "net0"}, {"name": b, "interface": "net1"}])
    first = _members(cluster, ns, "db", 2)
    assert {p: m["ifaces"]["net1"][0] for p, m in first.items()} == {f"db-{i}": (statics[i],) for i in range(2)}

    # ordinal 2's claim created while the operator is down: held as soon as it starts
    cluster.stack.stop_operator(signal.SIGKILL)
    try:
        _create_claim(cluster, ns, "db-2.net1", b, "net1", ips=[statics[2]])
    finally:
        cluster.stack.start_operator(retention_operator)
    wait_until(lambda: (cluster.allocations(b).get(statics[2]) or {}).get("pod") == f"ipclaim {ns}/db-2.net1", 20,
               what="the claim created while the operator was down held at its start")
    assert check_invariant(cluster, [a, b])["claim_holds"] == 1
    _scale(cluster, ns, "db", 3)
    three = _members(cluster, ns, "db", 3)
    assert {p: m["ifaces"]["net1"][0] for p, m in three.items()} == {f"db-{i}": (statics[i],) for i in range(3)}

    # scaled to 1 for longer than the retention: the operator's claims of ordinals 1 and 2 are
    # deleted (their dynamic addresses released), the user's keep holding the requested ones
    _scale(cluster, ns, "db", 1)
    wait_until(lambda: set(_claims(cluster, ns)) == {"db-0.net0", "db-0.net1", "db-1.net1", "db-2.net1"}, 60,
               what="only the operator's claims of the scaled-down ordinals deleted")
    assert all(cluster.allocations(b)[statics[i]]["pod"] == f"ipclaim {ns}/db-{i}.net1" for i in (1, 2))
    assert check_invariant(cluster, [a, b])["claim_holds"] == 2
    _scale(cluster, ns, "db", 3)
    back = _members(cluster, ns, "db", 3)
    assert {p: m["ifaces"]["net1"][0] for p, m in back.items()} == {f"db-{i}": (statics[i],) for i in range(3)}
    assert back["db-0"]["ifaces"] == first["db-0"]["ifaces"]
    check_invariant(cluster, [a, b])

    # the StatefulSet deleted: its pods and the operator's claims go, the user's claims keep holding
    _apps(cluster).delete_namespaced_stateful_set("db", ns, propagation_policy="Background")
    wait_until(lambda: set(_claims(cluster, ns)) == {f"db-{i}.net1" for i in range(3)}
               and not cluster.core.list_namespaced_pod(ns).items, 60, what="the set's pods and own claims deleted")
    wait_until(lambda: not cluster.allocations(a), 30, what="the dynamic addresses released")
    assert check_invariant(cluster, [a, b])["claim_holds"] == 3
    for i in range(3):
        cluster.custom.delete_namespaced_custom_object(GROUP, VERSION, ns, "ipclaims", f"db-{i}.net1")
    wait_until(lambda: not cluster.allocations(b), 30, what="the user's claims' addresses released")
    check_invariant(cluster, [a, b])
