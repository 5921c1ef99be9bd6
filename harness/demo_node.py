"""`make demo` (alias `make demo-node`): the seed's scenario with REAL containers on the real node, with a report.

Brings up (or reuses) the local stack in ``--dir`` with the real node ``node-1`` (kubelet 1.20,
containerd, runc; :mod:`harness.realnode`) and ovnvnet INSTALLED AS PODS (``kubectl apply -k
manifests/overlays/local-node``: operator Deployment, agent DaemonSet, webhook). Then, as a user
would: ``kubectl apply`` of ``examples/seed.yaml`` and ``examples/demo-pods.yaml`` with the node's
busybox image (``localhost/busybox:1``, never pulled) in place of ``busybox``; the scheduler puts
the pods on node-1 and the real kubelet runs them. The report comes from inside the containers
(``kubectl exec``): each OVN interface's address, MAC and default route, and the ping matrix.

The invalid pod (``pod-bad``) twice: in ``default`` the webhook pod refuses it at ``kubectl
apply``; in namespace ``demo-unchecked`` (labelled ``ovnvnet.io/admission: skip``, where the
webhook does not look) it is admitted and stays ContainerCreating with the operator's message in
the kubelet's ``FailedCreatePodSandBox`` Event.

Leaves everything running (``make down`` stops it); running it again reuses what is there.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from . import images
from .demo import NO, ODD, SELF, YES, step, table
from .realnode import RealNode
from .stack import REPO, Stack, wait_for

NAMESPACE = "default"
UNCHECKED = "demo-unchecked"
EXAMPLES = [REPO / "examples" / "seed.yaml", REPO / "examples" / "demo-pods.yaml"]
NETWORKS = ["ovn-ls-25", "ovn-ls-26"]
PODS = ["pod-ovn", "pod-two", "pod-core", "pod-edge"]


def on_node(doc: dict) -> dict:
    """An example pod as this node runs it: the node's busybox image, never pulled; no tty."""
    if doc.get("kind") == "Pod":
        for c in doc["spec"]["containers"]:
            c.update({"image": images.BUSYBOX_IMAGE, "imagePullPolicy": "Never"})
            c.pop("stdin", None)
            c.pop("tty", None)
        doc["spec"]["terminationGracePeriodSeconds"] = 1
    return doc


def docs(path: Path) -> list[dict]:
    return [on_node(d) for d in yaml.safe_load_all(path.read_text()) if d]


class Demo:
    def __init__(self, root: str):
        self.stack = Stack(root)
        self.node = RealNode(self.stack, install=True)

    def kubectl(self, *args: str, input: str | None = None, check: bool = True):
        return self.stack.kubectl(*args, input=input, check=check)

    def exec_(self, pod: str, *cmd: str, ns: str = NAMESPACE):
        return self.kubectl("exec", "-n", ns, pod, "--", *cmd, check=False)

    def apply(self, items: list[dict], ns: str = NAMESPACE, check: bool = True):
        out = self.kubectl("apply", "-n", ns, "-f", "-", check=False,
                           input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
        if check and out.returncode != 0:
            raise RuntimeError(f"kubectl apply -n {ns} of {[d['metadata']['name'] for d in items]}: {out.stderr}")
        return out

    def annotations(self, pod: str, ns: str = NAMESPACE) -> dict:
        out = self.kubectl("get", "pod", "-n", ns, pod, "-o", "json", check=False)
        return json.loads(out.stdout)["metadata"].get("annotations") or {} if out.returncode == 0 else {}

    # ------------------------------------------------------------------ the run
    def run(self) -> int:
        mode = self.stack.state.get("realnode", {}).get("install")
        if self.stack.running("kube-apiserver") and mode is not True:
            print(f"{self.stack.root} runs a stack without the install as pods "
                  "(`make demo-dataplane` or `make node-up`): `make down` first", file=sys.stderr)
            return 2
        t0 = step(f"starting the stack and the real node-1 in {self.stack.root} (API server, etcd, OVN, "
                  "kubelet, containerd), then kubectl apply -k manifests/overlays/local-node")
        self.node.up(operator=False)
        print(f"    up in {time.monotonic() - t0:.1f}s")
        self.node.wait_service_account(NAMESPACE)  # else the first pods may be refused
        seed, more = docs(EXAMPLES[0]), docs(EXAMPLES[1])
        step(f"kubectl apply -f {EXAMPLES[0].relative_to(REPO)} (busybox -> {images.BUSYBOX_IMAGE}; "
             "the networks first, then the pod)")
        print(self.apply([d for d in seed if d["kind"] != "Pod"]).stdout.rstrip())
        for net in NETWORKS:
            wait_for(lambda net=net: self.net_ready(net), 60, f"network {net} Ready")
        print(self.apply([d for d in seed if d["kind"] == "Pod"]).stdout.rstrip())
        # pod-ovn's static 172.16.26.3 first, before any dynamic request can take it
        wait_for(lambda: "ovnIfaceList" in self.annotations("pod-ovn"), 60, "the operator's answer on pod-ovn")
        good = [d for d in more if d["metadata"]["name"] != "pod-bad"]
        bad = next(d for d in more if d["metadata"]["name"] == "pod-bad")
        step(f"kubectl apply -f {EXAMPLES[1].relative_to(REPO)} (pod-bad apart, below)")
        print(self.apply(good).stdout.rstrip())
        t1 = time.monotonic()
        for pod in PODS:
            self.kubectl("wait", "-n", NAMESPACE, "--for=condition=Ready", f"pod/{pod}", "--timeout=300s")
        print(f"    4 pods Running in {time.monotonic() - t1:.1f}s (scheduled on node-1, run by its kubelet)")
        refused = self.invalid_pod(bad)
        ok = self.report()
        return 0 if ok and refused else 1

    def net_ready(self, net: str) -> bool:
        out = self.kubectl("get", "vnet", net, "-o", "json", check=False)
        if out.returncode != 0:
            return False
        conds = (json.loads(out.stdout).get("status") or {}).get("conditions") or []
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)

    def invalid_pod(self, bad: dict) -> bool:
        """pod-bad refused at apply by the webhook pod; admitted where the webhook does not look,
        it stays ContainerCreating with the operator's message in FailedCreatePodSandBox."""
        print()
        step("the invalid pod (the seed document's typo 172.16.2526.3)")
        self.kubectl("delete", "pod", "-n", NAMESPACE, "pod-bad", "--ignore-not-found", check=False)
        out = self.apply([bad], check=False)
        print(f"  kubectl apply -n {NAMESPACE}: refused by the webhook pod (rc {out.returncode}):")
        print("    " + out.stderr.strip().replace("\n", "\n    "))
        self.kubectl("create", "namespace", UNCHECKED, check=False)
        self.kubectl("label", "--overwrite", "namespace", UNCHECKED, "ovnvnet.io/admission=skip")
        self.node.wait_service_account(UNCHECKED)
        self.apply([bad], ns=UNCHECKED)

        def failed() -> str:
            ev = json.loads(self.kubectl("get", "events", "-n", UNCHECKED, "--field-selector",
                                         "involvedObject.name=pod-bad", "-o", "json").stdout)["items"]
            return next((e["message"] for e in ev if e["reason"] == "FailedCreatePodSandBox"), "")

        msg = wait_for(failed, 120, "FailedCreatePodSandBox on pod-bad", interval=1)
        pod = json.loads(self.kubectl("get", "pod", "-n", UNCHECKED, "pod-bad", "-o", "json").stdout)
        waiting = (pod["status"].get("containerStatuses") or [{}])[0].get("state", {}).get("waiting", {})
        print(f"  in namespace {UNCHECKED} (ovnvnet.io/admission=skip): admitted; phase "
              f"{pod['status']['phase']}, {waiting.get('reason', '?')}")
        print(f"  operator's ovnNetworkError: {self.annotations('pod-bad', UNCHECKED).get('ovnNetworkError')}")
        print(f"  kubelet's event: FailedCreatePodSandBox: {msg[:400]}")
        return out.returncode != 0 and "172.16.2526.3" in msg

    # ------------------------------------------------------------------ the report
    def inside(self, pod: str) -> dict[str, dict]:
        """{ifname: {mac, ipv4}} and the default route, from `ip` inside the container."""
        out: dict[str, dict] = {}
        for line in self.exec_(pod, "ip", "-o", "link").stdout.splitlines():
            parts = line.split()
            name = parts[1].rstrip(":").split("@")[0]
            mac = parts[parts.index("link/ether") + 1] if "link/ether" in parts else "?"
            out[name] = {"mac": mac, "ipv4": []}
        for line in self.exec_(pod, "ip", "-o", "-4", "addr").stdout.splitlines():
            parts = line.split()
            out.setdefault(parts[1], {"mac": "?", "ipv4": []})["ipv4"].append(parts[3])
        default = next((r for r in self.exec_(pod, "ip", "route").stdout.splitlines() if r.startswith("default")), "")
        out["_default"] = {"route": default.strip()}
        return out

    def report(self) -> bool:
        print()
        print("Networks (VirtualNetwork -> OVN logical switch; routed ones share ovnvnet-router)")
        rows = [["NAME", "SUBNET", "GATEWAY", "USED", "FREE", "READY"]]
        gateways: dict[str, str] = {}
        for net in NETWORKS:
            obj = json.loads(self.kubectl("get", "vnet", net, "-o", "json").stdout)
            spec, status = obj["spec"], obj.get("status") or {}
            cond = next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), {})
            gateways[net] = status.get("gateway") or spec.get("gateway", "?")
            rows.append([net, spec.get("subnet", "?"), gateways[net], str(status.get("usedIPs", "?")),
                         str(status.get("availableIPs", "?")), cond.get("status", "?")])
        print(table(rows))
        print()
        print("Pods and interfaces, from inside each container (kubectl exec POD -- ip -o addr / ip route)")
        rows = [["POD", "IFACE", "NETWORK", "IP/PREFIX (inside)", "MAC (inside)", "ANNOTATED", "DEFAULT ROUTE"]]
        ifaces_of: dict[str, list[dict]] = {}
        consistent = True
        with ThreadPoolExecutor(4) as pool:
            seen = dict(zip(PODS, pool.map(self.inside, PODS), strict=True))
        for pod in PODS:
            ifaces_of[pod] = json.loads(self.annotations(pod).get("ovnIfaceList", "[]"))
            for i in ifaces_of[pod]:
                have = seen[pod].get(i["interface"], {"ipv4": [], "mac": "MISSING"})
                want = f"{i['ip_address']}/{i['prefix_length']}"
                same = have["ipv4"] == [want] and have["mac"] == i["mac_address"]
                consistent &= same
                route = seen[pod]["_default"]["route"]
                rows.append([pod, i["interface"], i["name"], ",".join(have["ipv4"]) or "MISSING", have["mac"],
                             "same" if same else f"DIFFERS: {want} {i['mac_address']}",
                             route.split(" proto")[0] if f"dev {i['interface']}" in route else "-"])
        print(table(rows))
        return self.ping_matrix(ifaces_of, gateways) and consistent

    def ping_matrix(self, ifaces_of: dict[str, list[dict]], gateways: dict[str, str]) -> bool:
        targets: list[tuple[str, str, str, str]] = []   # label, ip, pod ("" for a gateway), network
        for pod, ifaces in ifaces_of.items():
            targets += [(f"{pod}/{i['interface']}", i["ip_address"], pod, i["name"]) for i in ifaces]
        targets += [(f"gw {net}", gw, "", net) for net, gw in gateways.items()]
        jobs = [(src, t) for src in PODS for t in targets if t[2] != src]
        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            results = dict(zip([(src, t[0]) for src, t in jobs], pool.map(
                lambda j: self.exec_(j[0], "ping", "-c", "1", "-W", "2", j[1][1]).returncode == 0, jobs), strict=True))
        print()
        print(f"Ping matrix (kubectl exec ROW -- ping -c 1 COLUMN's address, through OVN; "
              f"{time.monotonic() - started:.1f}s)")
        nets_of = {pod: {i["name"] for i in ifaces} for pod, ifaces in ifaces_of.items()}
        default_of = {pod: any(i.get("defaultGateway") for i in ifaces) for pod, ifaces in ifaces_of.items()}

        def expected(src: str, pod: str, net: str) -> bool:
            # the topology's prediction, as in `make demo-dataplane` (harness/demo.py): same switch, or via
            # ovnvnet-router when the source has its default route there and the reply can come back
            if net in nets_of[src]:
                return True
            if not default_of[src]:
                return False
            return not pod or (not (nets_of[pod] & nets_of[src]) and default_of[pod])

        rows = [[""] + [t[0] for t in targets]]
        odd = 0
        for src in PODS:
            row = [src]
            for label, _, pod, net in targets:
                if pod == src:
                    row.append(SELF)
                    continue
                ok, want = results[(src, label)], expected(src, pod, net)
                row.append((YES if ok else NO) + ("" if ok == want else ODD))
                odd += ok != want
            rows.append(row)
        print(table(rows))
        print(f"  {YES} reachable   {NO} not reachable (as `make demo-dataplane` explains: OVN port security "
              f"drops the reply)   {SELF} itself")
        if odd:
            print(f"  {ODD} = not what the topology predicts: see {self.stack.root}/logs and kubectl logs")
        self.explore()
        return odd == 0

    def explore(self) -> None:
        print()
        print("Everything stays up. Try, after `source " + str(self.stack.root / "env") + "`:")
        print("  kubectl get pods -A -o wide                      # ovnvnet itself runs as pods")
        print("  kubectl exec pod-ovn -- ip addr                  # net0, net1 with the annotated addresses")
        print("  kubectl exec pod-core -- ip route                # default via 172.16.25.1 dev eth1")
        print("  kubectl exec pod-core -- ping -c 3 172.16.26.1   # the other network's gateway, via the router")
        print("  kubectl exec pod-two -- ping -c 3 172.16.26.3    # pod-ovn's static address")
        print("  kubectl logs -n ovnvnet-system deploy/ovnvnet-operator; kubectl describe pod -n "
              f"{UNCHECKED} pod-bad")
        if self.stack.root == (REPO / ".stack").resolve():
            print("  make down                                        # stop everything, remove .stack/")
        else:
            print(f"  {sys.executable} -m harness.realnode down --dir {self.stack.root}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.demo_node", description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default=".stack", help="stack directory (default .stack)")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    rc = Demo(str(Path(args.dir))).run()
    print(f"\nmake demo took {time.monotonic() - t0:.0f}s")
    return rc


if __name__ == "__main__":
    sys.exit(main())
