"""Static requests racing: two pods asking for the same static IP (or MAC) at the same moment,
and takeover attempts right after an operator restart (created while it is down, and created the
instant it starts). Exactly one pod holds the address: the other gets `ovnNetworkError` naming
the holder, no result and no port; the invariant holds."""
from __future__ import annotations

import signal
import threading

from tests.integration.conftest import OPERATOR_ENV
from tests.integration.kit import Cluster, check_invariant, wait_until


def _create_together(cluster: Cluster, ns: str, pods: dict[str, list[dict]]) -> None:
    """Create the pods from one thread each, released by one barrier."""
    barrier = threading.Barrier(len(pods))
    errors: list[BaseException] = []

    def create(name: str, request: list[dict]) -> None:
        barrier.wait()
        try:
            cluster.create_pod(ns, name, request)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
    threads = [threading.Thread(target=create, args=item) for item in pods.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def _answer(cluster: Cluster, ns: str, name: str) -> tuple[str, str]:
    """("result", ovnIfaceList) or ("error", ovnNetworkError), whichever the operator wrote."""
    def get():
        ann = cluster.annotations(ns, name)
        if "ovnIfaceList" in ann:
            return "result", ann["ovnIfaceList"]
        if "ovnNetworkError" in ann:
            return "error", ann["ovnNetworkError"]
        return None
    return wait_until(get, 30, what=f"an answer on {ns}/{name}")


def _exactly_one_wins(cluster: Cluster, ns: str, net: str, names: list[str], key: str, value: str) -> str:
    answers = {n: _answer(cluster, ns, n) for n in names}
    winners = [n for n, (kind, _) in answers.items() if kind == "result"]
    assert len(winners) == 1, f"{key} {value}: exactly one pod must win, got {answers}"
    winner = winners[0]
    for n, (_kind, text) in answers.items():
        if n != winner:
            assert text == f"{key} {value} on {net} is held by {ns}/{winner}", f"{n}: {text!r}"
    ports = {p for p in cluster.nb_pod_ports() if any(p.startswith(f"{ns}_{n}_") for n in names)}
    assert ports == {f"{ns}_{winner}_net0"}, ports
    return winner


def test_same_static_ip_and_mac_at_the_same_moment(cluster: Cluster, ns: str, subnet, net_name) -> None:
    net = net_name("race")
    prefix = subnet().rsplit(".", 1)[0]
    cluster.create_vnet(net, f"{prefix}.0/24")
    cluster.wait_ready(net)
    try:
        for r in range(4):
            ip, mac = f"{prefix}.{10 + r}", f"0a:00:00:00:01:{r:02x}"
            _create_together(cluster, ns, {
                f"ip{r}-a": [{"name": net, "interface": "net0", "ip_address": ip}],
                f"ip{r}-b": [{"name": net, "interface": "net0", "ip_address": ip}]})
            _exactly_one_wins(cluster, ns, net, [f"ip{r}-a", f"ip{r}-b"], "ip_address", ip)
            _create_together(cluster, ns, {
                f"mac{r}-a": [{"name": net, "interface": "net0", "mac_address": mac}],
                f"mac{r}-b": [{"name": net, "interface": "net0", "mac_address": mac}]})
            _exactly_one_wins(cluster, ns, net, [f"mac{r}-a", f"mac{r}-b"], "mac_address", mac)
            check_invariant(cluster, [net])
            for p in (f"ip{r}-a", f"ip{r}-b", f"mac{r}-a", f"mac{r}-b"):
                cluster.delete_pod(ns, p)
            wait_until(lambda: cluster.vnet(net)["status"]["usedIPs"] == 0, what="released")
    finally:
        cluster.delete_vnet(net)


def test_takeover_right_after_operator_restart(cluster: Cluster, ns: str, subnet, net_name) -> None:
    net = net_name("takeover")
    prefix = subnet().rsplit(".", 1)[0]
    ip, mac = f"{prefix}.7", "0a:00:00:00:02:07"
    cluster.create_vnet(net, f"{prefix}.0/24")
    cluster.wait_ready(net)
    stack = cluster.stack
    try:
        cluster.create_pod(ns, "holder", [{"name": net, "interface": "net0", "ip_address": ip, "mac_address": mac}])
        held = cluster.iface_list(ns, "holder")
        stack.stop_operator(signal.SIGKILL)
        # while it is down: one pod wants the address, one the MAC
        cluster.create_pod(ns, "down-ip", [{"name": net, "interface": "net0", "ip_address": ip}])
        cluster.create_pod(ns, "down-mac", [{"name": net, "interface": "net0", "mac_address": mac}])
        stack.start_operator(OPERATOR_ENV, wait=False)
        # the instant it starts (before it is ready): two more
        cluster.create_pod(ns, "start-ip", [{"name": net, "interface": "net0", "ip_address": ip}])
        cluster.create_pod(ns, "start-mac", [{"name": net, "interface": "net0", "mac_address": mac.upper()}])
        stack.wait_operator_ready()
        for thief, key, value in (("down-ip", "ip_address", ip), ("down-mac", "mac_address", mac),
                                  ("start-ip", "ip_address", ip), ("start-mac", "mac_address", mac)):
            kind, text = _answer(cluster, ns, thief)
            assert (kind, text) == ("error", f"{key} {value} on {net} is held by {ns}/holder"), (thief, kind, text)
        assert cluster.iface_list(ns, "holder") == held
        assert {p for p in cluster.nb_pod_ports() if p.startswith(f"{ns}_")} == {f"{ns}_holder_net0"}
        check_invariant(cluster, [net])
    finally:
        if not stack.running("operator"):
            stack.start_operator(OPERATOR_ENV)
        for p in ("holder", "down-ip", "down-mac", "start-ip", "start-mac"):
            cluster.delete_pod(ns, p, wait=False)
        wait_until(lambda: not cluster.allocations(net), 30, what="released")
        cluster.delete_vnet(net)
