"""`make demo-dataplane`: the seed's scenario on a real data plane, with a report.

Brings up (or reuses) the local stack in ``--dir`` with the data plane of node-1 (OVS netdev +
ovn-controller in the node's netns), the operator and the CNI node agent; applies
``examples/seed.yaml``, ``examples/demo-pods.yaml`` and ``examples/demo-dualstack.yaml`` (a
dual-stack network: IPv4 and IPv6 on one switch); attaches the pods as a kubelet would
(bind to node-1, a netns per pod, CNI ADD through libcni with the node's conflist:
``ovn-k8s-cni-overlay`` then Debian's ``tuning``, status patched); then prints pods, interfaces,
networks, addresses, gateways, the ping matrix and the invalid pod's error. Leaves everything
running; running it again reuses what is there.

Two nodes by default (``--nodes``, ``make demo-dataplane NODES=1`` for one): node-1 and node-2,
each its own OVS, ovn-controller (chassis, encap IP on the stack's private underlay) and agent;
the pods are spread over them in turn (a pod already bound stays where it is), so the ping matrix
crosses nodes through Geneve tunnels; the tables give each pod's node.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .kubelet import CniFailed, Kubelet, Sandbox, ping_matrix
from .stack import REPO, Stack, wait_for

NAMESPACE = "default"
EXAMPLES = [REPO / "examples" / "seed.yaml", REPO / "examples" / "demo-pods.yaml",
            REPO / "examples" / "demo-dualstack.yaml"]
NETWORKS = ["ovn-ls-25", "ovn-ls-26", "ovn-ds-27"]
PODS = ["pod-ovn", "pod-two", "pod-core", "pod-edge", "pod-ds-one", "pod-ds-two", "pod-bad"]

UTF8 = (sys.stdout.encoding or "").lower().replace("-", "") == "utf8"
YES, NO, SELF, ODD = ("✓", "✗", "·", "!") if UTF8 else ("ok", "X", ".", "!")


def step(msg: str) -> float:
    print(f"==> {msg}", flush=True)
    return time.monotonic()


def table(rows: list[list[str]], indent: str = "  ") -> str:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(indent + "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=False)).rstrip()
                     for r in rows)


def run(root: str, nodes: int = 2) -> int:
    names = ", ".join(f"node-{i}" for i in range(1, nodes + 1))
    t0 = step(f"starting the local stack in {root} (API server, etcd, OVN central, data plane and CNI "
              f"agent of {names}, operator)")
    stack = Stack(root)
    stack.up(dataplane=True, nodes=nodes)
    print(f"    up in {time.monotonic() - t0:.1f}s")

    def annotated(pod: str) -> bool:
        out = stack.kubectl("get", "pod", "-n", NAMESPACE, pod, "-o", "jsonpath={.metadata.annotations}")
        return "ovnIfaceList" in out.stdout or "ovnNetworkError" in out.stdout

    # the seed first: pod-ovn's static 172.16.26.3 must not be taken by a dynamic request of a
    # pod the operator happens to handle before it
    for path, first_pod in zip(EXAMPLES, ("pod-ovn", None, None), strict=True):
        step(f"kubectl apply -f {path.relative_to(REPO)}")
        out = stack.kubectl("apply", "-n", NAMESPACE, "-f", str(path))
        print("\n".join("    " + line for line in out.stdout.splitlines()))
        if first_pod:
            wait_for(lambda first_pod=first_pod: annotated(first_pod), 60, f"the operator's answer on {first_pod}")

    def vnet(name: str) -> dict:
        return json.loads(stack.kubectl("get", "vnet", name, "-o", "json").stdout)

    def ready(name: str) -> bool:
        conds = (vnet(name).get("status") or {}).get("conditions") or []
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)

    for net in NETWORKS:
        wait_for(lambda net=net: ready(net), 60, f"network {net} Ready")

    kubelets = {n.name: Kubelet(stack, node=n.name) for n in stack.workers}
    kubelet = kubelets[stack.node]
    step(f"attaching the pods as the kubelets of {', '.join(kubelets)} would (bind, netns, libcni ADD, status)")
    sandboxes: dict[str, Sandbox] = {}
    timings: dict[str, float] = {}
    failures: dict[str, CniFailed] = {}
    node_of: dict[str, str] = {}
    for n, pod in enumerate(PODS):
        bound = kubelet.core.read_namespaced_pod(pod, NAMESPACE).spec.node_name
        node_of[pod] = bound if bound in kubelets else list(kubelets)[n % len(kubelets)]
        started = time.monotonic()
        try:
            sandboxes[pod], _ = kubelets[node_of[pod]].run_pod(NAMESPACE, pod)
        except CniFailed as exc:
            failures[pod] = exc
        timings[pod] = time.monotonic() - started
        state = "attached" if pod in sandboxes else "ADD failed"
        print(f"    {pod:9} {state} in {timings[pod]:.2f}s on {node_of[pod]}")

    report(stack, kubelet, sandboxes, failures, timings, node_of)
    return 0 if set(sandboxes) == set(PODS) - {"pod-bad"} and "pod-bad" in failures else 1


def _family(ip: str) -> int:
    return 6 if ":" in ip else 4


def _ips(iface: dict) -> list[str]:
    """The addresses of an ovnIfaceList entry, every family (IPv4 first)."""
    return [c.split("/")[0] for c in iface.get("ip_addresses") or [iface["ip_address"]]]


def report(stack: Stack, kubelet: Kubelet, sandboxes: dict[str, Sandbox],
           failures: dict[str, CniFailed], timings: dict[str, float],
           node_of: dict[str, str] | None = None) -> None:
    node_of = node_of or {}
    print()
    print("Networks (VirtualNetwork -> OVN logical switch; routed ones share ovnvnet-router)")
    rows = [["NAME", "SUBNET", "GATEWAY", "ROUTED", "USED", "FREE", "READY", "MTU"]]
    gateways: dict[str, str] = {}
    routed: dict[str, bool] = {}
    for net in NETWORKS:
        obj = json.loads(stack.kubectl("get", "vnet", net, "-o", "json").stdout)
        spec, status = obj["spec"], obj.get("status") or {}
        cond = next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), {})
        families = status.get("families") or []   # one entry per family, exact counts as text
        gateways[net] = ",".join([f["gateway"] for f in families]
                                 or [status.get("gateway") or spec.get("gateway", "?")])
        routed[net] = spec.get("routed", True) is not False
        subnets = ",".join(spec.get("subnets") or [spec.get("subnet", "?")])
        used = ",".join([f["usedIPs"] for f in families] or [str(status.get("usedIPs", "?"))])
        free = ",".join([f["availableIPs"] for f in families]
                        or [str(status.get("availableIPs", "?"))])
        rows.append([net, subnets, gateways[net], "yes" if routed[net] else "no", used, free,
                     cond.get("status", "?"), str(spec.get("mtu", "-"))])
    print(table(rows))

    print()
    print("Pods and interfaces (the addresses as configured inside each pod's netns; OVS port on its node's br-int)")
    rows = [["POD", "NODE", "NETNS", "IFACE", "NETWORK", "IP/PREFIX", "MAC", "GATEWAY", "DEFAULT ROUTE", "OVS PORT",
             "OVN LSP", "INSTALLED"]]
    ifaces_of: dict[str, list[dict]] = {}
    for pod, sb in sandboxes.items():
        node = node_of.get(pod, stack.node)
        dp = stack.node_part(node).dataplane()
        ann = kubelet.core.read_namespaced_pod(pod, NAMESPACE).metadata.annotations or {}
        ifaces = json.loads(ann.get("ovnIfaceList", "[]"))
        ifaces_of[pod] = ifaces
        have = sb.addresses()
        defaults = [r for fam in (4, 6) for r in sb.routes(fam) if r.startswith("default")]
        for i in ifaces:
            name = i["interface"]
            link = have.get(name, {})
            from ovnvnet.cni.netlink import host_veth_name

            host = host_veth_name(sb.container_id, name)
            ids = {}
            try:
                raw = json.loads(dp.vsctl("--format=json", "--columns=external_ids", "list", "Interface", host))
                ids = dict(raw["data"][0][0][1])
            except Exception:  # noqa: BLE001 - shown as missing
                pass
            addrs = link.get("ipv4", []) + link.get("ipv6", [])
            default = ",".join(d.split(" via ")[1].split(" dev")[0] for d in defaults
                               if f"dev {name} " in f"{d} ")
            rows.append([pod, node, sb.netns, name, i["name"], ",".join(addrs) or "MISSING",
                         link.get("mac", "?"), ",".join(i.get("gateway_ips") or [i["gateway_ip"]]),
                         f"via {default}" if default else "-",
                         host if ids else "MISSING", ids.get("iface-id", "-"), ids.get("ovn-installed", "no")])
    print(table(rows))

    print()
    targets: list[tuple[str, str]] = []
    where: dict[str, tuple[str, str, int]] = {}   # label -> (pod or "", network, family)
    for pod, ifaces in ifaces_of.items():
        for i in ifaces:
            for ip in _ips(i):   # every family: IPv6 targets are labelled with "v6"
                label = f"{pod}/{i['interface']}" + (" v6" if ":" in ip else "")
                targets.append((label, ip))
                where[label] = (pod, i["name"], _family(ip))
    for net in NETWORKS:
        for gw in gateways[net].split(","):
            label = f"gw {net}" + (" v6" if ":" in gw else "")
            targets.append((label, gw))
            where[label] = ("", net, _family(gw))
    started = time.monotonic()
    result = ping_matrix(list(sandboxes.values()), targets)
    crossing = " (pods on different nodes: Geneve over the underlay)" if len(set(node_of.values())) > 1 else ""
    print(f"Ping matrix (ICMP echo from the row's pod to the column's address, through OVN{crossing}; "
          f"{time.monotonic() - started:.1f}s)")
    nets_of = {pod: {i["name"] for i in ifaces} for pod, ifaces in ifaces_of.items()}
    # the families each pod has a default route of (those of its defaultGateway interface)
    default_of = {pod: {_family(ip) for i in ifaces if i.get("defaultGateway") for ip in _ips(i)}
                  for pod, ifaces in ifaces_of.items()}

    def expected(src: str, label: str) -> bool:
        pod, net, family = where[label]
        if net in nets_of[src]:
            return True                      # same logical switch (so the same families)
        if not (family in default_of[src] and routed[net]):
            return False                     # no route of that family towards that network
        if not pod:
            return True                      # the router's port on the other network
        # the reply must come back through the router: the target pod has no interface on the
        # source's network (else the reply leaves by that interface with an address port
        # security does not allow there) and has a route via its gateway
        return not (nets_of[pod] & nets_of[src]) and family in default_of[pod]

    rows = [[""] + [label for label, _ in targets]]
    if node_of and len(set(node_of.values())) > 1:
        rows.append([""] + [node_of.get(where[label][0], "router") for label, _ in targets])
    odd = notes = 0
    for src in sandboxes:
        row = [f"{src} ({node_of[src]})" if src in node_of and len(set(node_of.values())) > 1 else src]
        for label, _ in targets:
            if where[label][0] == src:
                row.append(SELF)
                continue
            ok, want = result[(src, label)], expected(src, label)
            mark = YES if ok else NO
            if ok != want:
                mark += ODD
                odd += 1
            elif not ok:
                notes += 1
            row.append(mark)
        rows.append(row)
    print(table(rows))
    print(f"  {YES} reachable   {NO} not reachable   {SELF} itself")
    if notes:
        print(f"  {NO} is expected for a pod on one network pinging a two-network pod's address on the other network:\n"
              "    the request crosses ovnvnet-router, but the reply would leave the target by its interface on\n"
              "    the source's network with the other network's address, and OVN port security drops it;\n"
              "    and for a pod pinging another network's address of a family it has no default route of\n"
              "    (an IPv4-only pod and an IPv6 target, or a pod without defaultGateway): no route.")
    if odd:
        print(f"  {ODD} = not what the topology predicts: look at .stack/logs/ and the node's ovn-controller log.")

    print()
    print("The invalid pod")
    for pod, exc in failures.items():
        ann = kubelet.core.read_namespaced_pod(pod, NAMESPACE).metadata.annotations or {}
        print(f"  {pod}: ovnNetwork = {ann.get('ovnNetwork')}")
        print(f"  operator's ovnNetworkError: {ann.get('ovnNetworkError', '(none)')}")
        print(f"  CNI ADD failed after {timings[pod]:.2f}s with: {exc.outcome.message}")
    events = stack.kubectl("get", "events", "-n", NAMESPACE, "--field-selector", "involvedObject.name=pod-bad",
                           "-o", "jsonpath={range .items[*]}{.type} {.reason}: {.message}{\"\\n\"}{end}", check=False)
    for line in sorted(set(events.stdout.splitlines()))[:3]:
        print(f"  event: {line}")

    print()
    print("The stack stays up. Explore it:")
    print(f"  source {stack.root / 'env'}      # KUBECONFIG, OVN_NB_DB, OVS_RUNDIR, kubectl 1.20 on PATH")
    print("  kubectl get vnet; kubectl get pods -o wide")
    print("  kubectl get pod pod-ovn -o jsonpath='{.metadata.annotations.ovnIfaceList}'")
    print("  ovn-nbctl show; ovs-vsctl show")
    if "pod-ovn" in sandboxes:
        print(f"  ip netns exec {sandboxes['pod-ovn'].netns} ip addr     # inside pod-ovn")
    if stack.root == (REPO / ".stack").resolve():
        print("  make down      # stop everything and remove .stack/")
    else:
        print(f"  {sys.executable} -m harness.stack down --dir {stack.root}   # stop everything")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.demo", description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default=".stack", help="stack directory (default .stack)")
    ap.add_argument("--nodes", type=int, default=2,
                    help="nodes to spread the pods over (default 2: the ping matrix crosses Geneve tunnels)")
    args = ap.parse_args(argv)
    if args.nodes < 1:
        ap.error(f"--nodes {args.nodes}: at least 1")
    return run(str(Path(args.dir)), args.nodes)


if __name__ == "__main__":
    sys.exit(main())
