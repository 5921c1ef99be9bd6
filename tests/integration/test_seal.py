"""The operator's records are the truth (issue 9): a result annotation copied onto another pod is
never restored by the rebuild, and the seal key comes from a file or a Secret the operator keeps.

Real stack: API server + etcd + OVN NB, the operator as a process, killed and restarted."""
from __future__ import annotations

import asyncio
import base64
import signal
import subprocess
import sys
import time
import uuid

import pytest

from harness.stack import free_port
from ovnvnet.config import ConfigError, Settings
from ovnvnet.kube.client import KubeClient
from ovnvnet.kube.connection import from_kubeconfig
from ovnvnet.kube.seal import secret_seal_key
from ovnvnet.model.annotation import (
    RESULT_ANNOTATION,
    SEAL_ANNOTATION,
    SealError,
    SealKeyError,
    check_seal,
    read_seal_key,
)
from tests.integration.conftest import OPERATOR_ENV
from tests.integration.kit import Cluster, wait_until


def test_cloned_result_does_not_take_the_victims_address_at_restart(cluster: Cluster, subnet, net_name) -> None:
    """`alpha/evil` carries a copy of `zeta/victim`'s ovnIfaceList and seal (what `kubectl get -o yaml
    | kubectl apply` of a renamed pod does) when the operator restarts. The rebuild used to reserve
    whatever the annotation said in namespace/name order: evil took the address and the NB repair
    deleted the victim's port. Now only a result sealed for the pod's own UID is restored."""
    n = net_name("seal")
    sn = subnet()
    prefix = sn.rsplit(".", 1)[0]
    cluster.create_vnet(n, sn)
    cluster.wait_ready(n)
    tag = uuid.uuid4().hex[:6]
    zeta, alpha = f"zeta-{tag}", f"alpha-{tag}"      # alpha lists (and used to be restored) first
    cluster.ensure_namespace(zeta)
    cluster.ensure_namespace(alpha)
    request = [{"name": n, "interface": "net0", "ip_address": f"{prefix}.5"}]
    stack = cluster.stack
    try:
        cluster.create_pod(zeta, "victim", request)
        victim = cluster.iface_list(zeta, "victim")
        victim_ann = cluster.annotations(zeta, "victim")
        victim_uid = cluster.pod(zeta, "victim").metadata.uid
        victim_port = f"{zeta}_victim_net0"
        wanted_addresses = [f"{victim[0]['mac_address']} {victim[0]['ip_address']}"]
        assert cluster.nb_pod_ports()[victim_port]["addresses"] == wanted_addresses

        stack.stop_operator(signal.SIGKILL)
        copied = {k: victim_ann[k] for k in (RESULT_ANNOTATION, SEAL_ANNOTATION) if k in victim_ann}
        cluster.create_pod(alpha, "evil", request, extra_annotations=copied)
        stack.start_operator(OPERATOR_ENV)

        # the impostor is handled as an ordinary request: the victim holds that address
        error = cluster.pod_error(alpha, "evil", timeout=30)
        assert f"{prefix}.5" in error and f"{zeta}/victim" in error, error
        time.sleep(3)   # three sweeps (OVNVNET_SWEEP_INTERVAL=1): NB repair has run
        assert cluster.iface_list(zeta, "victim") == victim
        port = cluster.nb_pod_ports().get(victim_port)
        assert port is not None, "the victim's NB port was deleted"
        assert port["addresses"] == wanted_addresses
        assert port["external_ids"]["ovnvnet.io/pod-uid"] == victim_uid
        assert not any(p.startswith(f"{alpha}_") for p in cluster.nb_pod_ports())
        holder = cluster.allocations(n)[f"{prefix}.5"]
        assert holder["pod"] == f"{zeta}/victim" and holder["podUID"] == victim_uid
        # and the copied result is still not the operator's for the impostor
        evil_ann = cluster.annotations(alpha, "evil")
        key = read_seal_key(stack.seal_key_file)
        with pytest.raises(SealError):
            check_seal(key, cluster.pod(alpha, "evil").metadata.uid, RESULT_ANNOTATION,
                       evil_ann.get(RESULT_ANNOTATION), evil_ann.get(SEAL_ANNOTATION), f"{alpha}/evil")
    finally:
        if not stack.running("operator"):
            stack.start_operator(OPERATOR_ENV)
        for ns, pod in ((alpha, "evil"), (zeta, "victim")):
            cluster.delete_pod(ns, pod, wait=False)
        wait_until(lambda: not cluster.allocations(n), timeout=30, what="victim released")
        cluster.delete_vnet(n)


def test_operator_seals_what_it_writes(cluster: Cluster, ns: str, subnet, net_name) -> None:
    n = net_name("sealed")
    cluster.create_vnet(n, subnet())
    cluster.wait_ready(n)
    cluster.create_pod(ns, "p", [{"name": n, "interface": "net0"}])
    cluster.iface_list(ns, "p")
    ann = cluster.annotations(ns, "p")
    uid = cluster.pod(ns, "p").metadata.uid
    key = read_seal_key(cluster.stack.seal_key_file)
    check_seal(key, uid, RESULT_ANNOTATION, ann[RESULT_ANNOTATION], ann[SEAL_ANNOTATION], f"{ns}/p")
    # a removed seal is written back (like a removed result)
    cluster.core.patch_namespaced_pod("p", ns, {"metadata": {"annotations": {SEAL_ANNOTATION: None}}})
    wait_until(lambda: cluster.annotations(ns, "p").get(SEAL_ANNOTATION) == ann[SEAL_ANNOTATION],
               timeout=20, what="seal rewritten")
    cluster.delete_pod(ns, "p")
    cluster.delete_vnet(n)


def test_seal_key_secret_is_created_once_and_reused(cluster: Cluster, ns: str) -> None:
    """OVNVNET_SEAL_SECRET: the operator gets the Secret, or creates it with 32 random bytes."""
    conn = from_kubeconfig(str(cluster.stack.kubeconfig))

    async def key(ref: tuple[str, str]) -> bytes:
        async with KubeClient(conn) as kube:
            return await secret_seal_key(kube, ref)

    first = asyncio.run(key((ns, "ovnvnet-seal")))
    assert len(first) == 32
    assert asyncio.run(key((ns, "ovnvnet-seal"))) == first
    stored = cluster.core.read_namespaced_secret("ovnvnet-seal", ns).data["key"]
    assert base64.b64decode(stored) == first
    cluster.core.create_namespaced_secret(ns, {"metadata": {"name": "other"}, "data": {"x": "eA=="}})
    with pytest.raises(SealKeyError, match=f"Secret {ns}/other \\(data key 'key'\\) has no seal key"):
        asyncio.run(key((ns, "other")))
    with pytest.raises(ConfigError, match="must be <namespace>/<name>"):
        Settings.from_env({"OVN_NB_DB": "tcp:127.0.0.1:6641", "OVNVNET_SEAL_SECRET": "no-slash"})


def test_operator_without_a_seal_key_refuses_to_start(cluster: Cluster) -> None:
    env = {k: v for k, v in cluster.stack.operator_env().items() if not k.startswith("OVNVNET_SEAL")}
    env["OVNVNET_HEALTH_PORT"] = str(free_port())
    out = subprocess.run([sys.executable, "-m", "ovnvnet"], env=env, capture_output=True, text=True,
                         timeout=60, cwd=cluster.stack.root)
    assert out.returncode != 0
    assert "no seal key: set OVNVNET_SEAL_KEY_FILE" in out.stdout + out.stderr, (out.stdout + out.stderr)[-3000:]


def test_key_from_a_secret_and_a_new_key_reseals_with_the_same_addresses(cluster: Cluster, ns: str, subnet,
                                                                          net_name) -> None:
    """The operator started with OVNVNET_SEAL_SECRET (no key file) creates the Secret and seals
    with its key. Results sealed with the previous key are not taken as the truth, but the pod keeps
    its address (the NB port records its UID) and gets its result sealed again."""
    n = net_name("rekey")
    cluster.create_vnet(n, subnet())
    cluster.wait_ready(n)
    cluster.create_pod(ns, "p", [{"name": n, "interface": "net0"}])
    before = cluster.iface_list(ns, "p")
    uid = cluster.pod(ns, "p").metadata.uid
    stack = cluster.stack

    def sealed_with(key: bytes) -> bool:
        ann = cluster.annotations(ns, "p")
        try:
            check_seal(key, uid, RESULT_ANNOTATION, ann.get(RESULT_ANNOTATION), ann.get(SEAL_ANNOTATION), "p")
        except SealError:
            return False
        return True

    try:
        stack.stop_operator()
        stack.start_operator({**OPERATOR_ENV, "OVNVNET_SEAL_KEY_FILE": "",
                              "OVNVNET_SEAL_SECRET": f"{ns}/ovnvnet-seal"})
        secret_key = base64.b64decode(cluster.core.read_namespaced_secret("ovnvnet-seal", ns).data["key"])
        assert len(secret_key) == 32
        wait_until(lambda: sealed_with(secret_key), timeout=30, what="result sealed with the Secret's key")
        assert cluster.iface_list(ns, "p") == before
    finally:
        stack.stop_operator()
        stack.start_operator(OPERATOR_ENV)
    wait_until(lambda: sealed_with(read_seal_key(stack.seal_key_file)), timeout=30,
               what="result sealed with the file's key again")
    assert cluster.iface_list(ns, "p") == before
    cluster.delete_pod(ns, "p")
    cluster.delete_vnet(n)


def test_deeply_nested_ovn_annotation_does_not_stop_the_operator(cluster: Cluster, ns: str, subnet,
                                                                 net_name) -> None:
    """Issue 9.3: an `ovn` annotation of 2,000 `[` raised RecursionError out of the rebuild, and
    the start-up handler retried forever: no pod was attached cluster-wide."""
    n = net_name("deep")
    cluster.create_vnet(n, subnet())
    cluster.wait_ready(n)
    body = {"metadata": {"name": "deep", "annotations": {"ovn": "[" * 2000}},
            "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "busybox"}]}}
    cluster.core.create_namespaced_pod(ns, body)
    stack = cluster.stack
    stack.stop_operator(signal.SIGKILL)
    stack.start_operator(OPERATOR_ENV)      # waits until it leads (the rebuild is done)
    cluster.create_pod(ns, "after", [{"name": n, "interface": "net0"}])
    assert cluster.iface_list(ns, "after", timeout=20)
    cluster.delete_pod(ns, "after")
    cluster.delete_pod(ns, "deep")
    cluster.delete_vnet(n)
