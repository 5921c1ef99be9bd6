"""Scenario 2x: restart recovery at ten times s2 (issue 17): 100,000 allocations.

50,000 pods x 2 interfaces over 20 networks (5 of them /16s, the others /19s): stop the operator,
create one new pod, start the operator: process start -> that pod attached; peak RSS (VmHWM).
Baseline in the same run: the same restart with no allocations at all (the networks only).
Targets: <= 10 s to the first new pod attached; <= 1 GB peak RSS.

Setup writes the records directly, the way the operator writes them, while the operator is
stopped (attaching 50,000 pods through the operator would take most of an hour here): the pods are
created with their `ovnNetwork` request; the addresses are taken from the operator's own allocator
(`ipam.allocator.NetworkAllocator.attach`, so the MACs and the order are the operator's); each pod
then gets its sealed `ovnIfaceList` (`model.annotation.encode_iface_list` + `sealed_annotations`
with the stack's seal key) in one merge patch; the IPBlock objects are created whole
(`model.records.ipblock_object`, one per /24, the entries of `reconcile.state.status_entry`); the
NB ports (`reconcile.state.port_spec`, the rows `ovn.nb.EnsurePorts` writes) are inserted by raw
OVSDB transactions, 200 per `ovsdb-client transact`. The rebuild then finds exactly what it finds
after a real attach of those pods.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes.client.rest import ApiException

from bench.common import RESULTS, Kube, Result, bench_stack, log, start_operator, unique
from bench.s2_restart import add_baseline_rows, restart_once, restart_rows, restarts, wait_status

TARGET_S = 10.0
TARGET_RSS_MB = 1000.0
PORTS_PER_TXN = 200   # one `ovsdb-client transact` argument stays under the 128 KiB per-argument limit


def networks(count: int, big: int) -> list[tuple[str, str]]:
    """`big` /16s, then /19s (8,190 addresses each: room for 5,000 allocations per network)."""
    out = []
    for k in range(count):
        if k < big:
            out.append((f"bench-x{k}", f"10.{150 + k}.0.0/16"))
        else:
            j = k - big
            out.append((f"bench-x{k}", f"10.{170 + j // 8}.{(j % 8) * 32}.0/19"))
    return out


def _create_pods(kube: Kube, ns: str, specs: list[tuple[str, list[dict]]], threads: int = 32) -> dict[str, str]:
    """Create the pods (request only, nothing attached); returns name -> uid."""
    uids: dict[str, str] = {}

    def one(item: tuple[str, list[dict]]) -> None:
        name, request = item
        body: dict[str, Any] = {"metadata": {"name": name, "annotations": {"ovnNetwork": json.dumps(request)}},
                                "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "busybox"}]}}
        for attempt in range(5):
            try:
                out = json.loads(kube.core.create_namespaced_pod(ns, body, _preload_content=False).data)
                uids[name] = out["metadata"]["uid"]
                return
            except Exception:   # a busy API server: retried
                if attempt == 4:
                    raise
                time.sleep(0.2 * 2 ** attempt)
    done = 0
    with ThreadPoolExecutor(threads) as ex:
        for _ in ex.map(one, specs):
            done += 1
            if done % 5000 == 0:
                log(f"  created {done}/{len(specs)} pods")
    return uids


def write_records(stack: Any, kube: Kube, ns: str, names: list[str], pods: int, ifaces: int,
                  threads: int = 32) -> dict[str, float]:
    """Create the pods and write every record of their attachment (see the module docstring)."""
    from ovnvnet.ipam.allocator import Holder, NetworkAllocator
    from ovnvnet.model.annotation import (
        RESULT_ANNOTATION,
        IfaceAddress,
        InterfaceResult,
        encode_iface_list,
        read_seal_key,
        sealed_annotations,
    )
    from ovnvnet.model.blocks import block_cidr, block_name
    from ovnvnet.model.iptext import ip_text
    from ovnvnet.model.records import BlockRef, ipblock_object, ipblock_patch, owner_reference
    from ovnvnet.reconcile.network import applied_spec_of
    from ovnvnet.reconcile.state import port_spec, status_entry

    times: dict[str, float] = {}
    t = time.monotonic()
    specs = [(f"p-{i:05d}", [{"name": names[(i + j) % len(names)], "interface": f"net{j}"} for j in range(ifaces)])
             for i in range(pods)]
    uids = _create_pods(kube, ns, specs, threads)
    times["pods created"] = time.monotonic() - t

    t = time.monotonic()
    key = read_seal_key(str(stack.seal_key_file))
    bodies = {n: kube.vnet(n) for n in names}
    nets = {}
    for n, body in bodies.items():
        spec = applied_spec_of(body)
        if spec is None:
            raise RuntimeError(f"network {n} has no applied spec (not Ready?)")
        nets[n] = (spec, NetworkAllocator(n, spec))
    patches: list[tuple[str, dict]] = []
    ports = []
    blocks: dict[tuple[str, str], dict[str, dict]] = defaultdict(dict)   # (network, cidr) -> ip -> entry
    for name, request in specs:
        uid, results = uids[name], []
        for req in request:
            spec, alloc = nets[req["name"]]
            holder = Holder(f"{ns}/{name}", uid, req["interface"], "")
            texts = [str(ip) for ip in alloc.attach(holder)]
            stored = alloc.held_by(texts[0])
            addresses = tuple(IfaceAddress(text, fam.prefix_length, ip_text(fam.gateway))
                              for text, fam in zip(texts, spec.families, strict=True))
            results.append(InterfaceResult(
                interface=req["interface"], network=req["name"], ip=addresses[0].ip,
                prefix_length=addresses[0].prefix_length, mac=stored.mac, gateway=addresses[0].gateway,
                default_gateway=False, mtu=spec.mtu, routes=spec.routes, addresses=addresses))
            ports.append(port_spec(req["name"], texts, stored))
            for text, fam in zip(texts, spec.families, strict=True):
                blocks[(req["name"], str(block_cidr(fam.subnet, text)))][text] = status_entry(stored)
        patches.append((name, sealed_annotations(key, uid, RESULT_ANNOTATION, encode_iface_list(results))))
    times["allocated (in the bench)"] = time.monotonic() - t

    t = time.monotonic()

    def annotate(item: tuple[str, dict]) -> None:
        name, annotations = item
        _ = kube.core.patch_namespaced_pod(name, ns, {"metadata": {"annotations": annotations}},
                                           _preload_content=False).data
    with ThreadPoolExecutor(threads) as ex:
        list(ex.map(annotate, patches))
    times["results patched"] = time.monotonic() - t

    t = time.monotonic()

    def create_block(item: tuple[tuple[str, str], dict[str, dict]]) -> None:
        (network, cidr), entries = item
        import netaddr
        meta = bodies[network]["metadata"]
        ref = BlockRef(block_name(network, netaddr.IPNetwork(cidr)), network, cidr, owner_reference(meta))
        try:
            _ = kube.custom.create_cluster_custom_object("ovnvnet.io", "v1", "ipblocks", ipblock_object(ref, entries),
                                                         _preload_content=False).data
        except ApiException as exc:   # left (empty) by the probes of the empty restarts
            if exc.status != 409:
                raise
            _ = kube.custom.patch_cluster_custom_object("ovnvnet.io", "v1", "ipblocks", ref.name,
                                                        ipblock_patch(dict(entries)), _preload_content=False).data
    with ThreadPoolExecutor(threads) as ex:
        list(ex.map(create_block, blocks.items()))
    times["IPBlocks created"] = time.monotonic() - t

    t = time.monotonic()
    write_ports(stack.nb_remote, ports)
    times["NB ports written"] = time.monotonic() - t
    log("setup: " + ", ".join(f"{k} {v:.0f}s" for k, v in times.items()))
    return times


def write_ports(remote: str, ports: list[Any]) -> None:
    """The NB rows `ovn.nb.EnsurePorts` writes for new ports (name, addresses and port_security
    "MAC IPs", external_ids; the port in its switch's `ports`), as raw OVSDB transactions of
    PORTS_PER_TXN ports (`ovsdb-client transact`): the operator's client adds ports one by one to
    a replica, minutes for 10^4-10^5 ports, which is not what is measured here."""
    for i in range(0, len(ports), PORTS_PER_TXN):
        ops: list[Any] = ["OVN_Northbound"]
        by_switch: dict[str, list[Any]] = defaultdict(list)
        for k, p in enumerate(ports[i:i + PORTS_PER_TXN]):
            ref = f"p{k}"
            ops.append({"op": "insert", "table": "Logical_Switch_Port", "uuid-name": ref, "row": {
                "name": p.name, "addresses": p.address, "port_security": p.address,
                "external_ids": ["map", [list(kv) for kv in p.external_ids]]}})
            by_switch[p.switch].append(["named-uuid", ref])
        for switch, refs in by_switch.items():
            ops.append({"op": "mutate", "table": "Logical_Switch", "where": [["name", "==", switch]],
                        "mutations": [["ports", "insert", ["set", refs]]]})
        out = subprocess.run(["ovsdb-client", "transact", remote, json.dumps(ops)], capture_output=True,
                             text=True, check=True, timeout=600).stdout
        errors = [r for r in json.loads(out) if isinstance(r, dict) and "error" in r]
        if errors:
            raise RuntimeError(f"NB transaction failed: {errors[:3]}")


def run(pods: int = 50_000, ifaces: int = 2, nets: int = 20, big: int = 5, repeats: int = 3, *,
        keep: bool = False, profile: Path | None = None, baseline_src: Path | None = None) -> Result:
    allocations = pods * ifaces
    env = {"OVNVNET_SWEEP_INTERVAL": "30"}
    title = f"restart recovery at 10x: {allocations:,} allocations ({pods:,} pods x {ifaces}) over {nets} networks"
    params = {"allocations": allocations, "pods": pods, "interfaces_per_pod": ifaces, "networks": nets,
              "networks_16": big, "repeats": repeats}
    full = {"allocations": 100_000, "pods": 50_000, "interfaces_per_pod": 2, "networks": 20, "repeats": 3}
    res = Result("s2x_restart", title, params=params, full=full)
    with bench_stack(keep=keep) as stack:
        kube = Kube(stack)
        netlist = networks(nets, big)
        names = [n for n, _ in netlist]
        for name, subnet in netlist:
            kube.create_vnet(name, subnet)
        start_operator(stack, env)
        kube.wait_vnets_ready(names, timeout=120)
        ns = unique("restartx")
        kube.ensure_namespace(ns)
        probe_req = [{"name": names[0], "interface": "net0"}]
        empty = [restart_once(stack, kube, ns, probe_req, env) for _ in range(repeats)]
        log("empty restart: " + ", ".join(f"{r['to_first_attach_s']:.2f}s/{r['rss_hwm_mb']:.0f}MiB" for r in empty))

        # the probes released (the allocator below starts empty), then the operator stopped
        kube.delete_all_pods(ns)
        wait_status(kube, names, 0, timeout=120)
        stack.stop_operator()
        log(f"setup: {pods} pods, {allocations} allocations written as records (operator stopped)")
        t0 = time.monotonic()
        setup = write_records(stack, kube, ns, names, pods, ifaces)
        setup_s = time.monotonic() - t0

        runs, before = restarts(stack, kube, ns, probe_req, env, repeats, profile, baseline_src)
        stack.stop_operator()

    rss_full, rss_empty = restart_rows(res, runs, empty, TARGET_S, TARGET_RSS_MB)
    res.add("peak RSS per 10k allocations (over the empty restart)", (rss_full - rss_empty) * 10_000 / allocations,
            "MiB")
    res.extra = {"empty": empty, "full": runs, "setup": setup, "setup_s": setup_s}
    add_baseline_rows(res, runs, before, baseline_src)
    res.notes.append(f"setup wrote the records directly (pods, sealed results, IPBlocks, NB ports; "
                     f"{setup_s:.0f}s), not through the operator: see the module docstring")
    return res


def main(argv: list[str] | None = None) -> Result:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pods", type=int, default=50_000)
    ap.add_argument("--interfaces", type=int, default=2, help="interfaces per pod")
    ap.add_argument("--networks", type=int, default=20)
    ap.add_argument("--big", type=int, default=5, help="how many of the networks are /16s")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--profile", type=Path, help="py-spy output of the operator in each restart")
    ap.add_argument("--baseline-checkout", type=Path, metavar="DIR",
                    help="also restart the operator of another checkout (e.g. main) on the same records, alternated")
    args = ap.parse_args(argv)
    res = run(args.pods, args.interfaces, args.networks, args.big, args.repeats, keep=args.keep,
              profile=args.profile, baseline_src=args.baseline_checkout)
    print(res.table())
    # a reduced run never replaces the committed full-size result file
    log(f"wrote {res.write() if res.size == 'full' else res.write(RESULTS / 'reduced')}")
    return res


if __name__ == "__main__":
    main()
