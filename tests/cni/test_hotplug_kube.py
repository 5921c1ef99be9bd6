"""Hot-plug with the real node agent process on the local stack: its pod watch on the real API
server triggers the converge, and it reports through the API (Events, ``ovnvnet.io/plumbed``).

The stack's API server, OVN central, one node's OVS + ovn-controller and the agent process
(``python -m ovnvnet.cni.agent``, as the stack starts it); pods played by
:class:`harness.kubelet.Kubelet` (netns + libcni ADD). The test plays the operator: logical switch
ports with ``ovn-nbctl`` and the result sealed with the stack's seal key.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import kubernetes
import pytest

from harness.kubelet import Kubelet
from harness.stack import KUBE_BIN, Stack
from ovnvnet.model.annotation import RESULT_ANNOTATION, sealed_annotations
from ovnvnet.model.names import port_name
from tests.prerequisites import node_missing, require, stack_missing

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

SWITCHES = {"hpk-a": "10.91.0", "hpk-b": "10.92.0"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    require("hot-plug with the agent process (tests/cni/test_hotplug_kube.py)",
            stack_missing(KUBE_BIN) + node_missing())
    s = Stack(Path(tmp_path_factory.mktemp("hpk")))
    try:
        s.up(operator=False, dataplane=True)
        for switch in SWITCHES:
            s.nbctl("--may-exist", "ls-add", switch)
        yield s
    finally:
        s.down(remove=not os.environ.get("OVNVNET_KEEP_STACK"))


@pytest.fixture(scope="module")
def core(stack: Stack):
    api = kubernetes.config.new_client_from_config(config_file=str(stack.kubeconfig))
    return kubernetes.client.CoreV1Api(api)


def wait_for(cond: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


def entry(interface: str, switch: str, host: int) -> dict:
    prefix = SWITCHES[switch]
    third = int(prefix.split(".")[2])
    return {"interface": interface, "name": switch, "ip_address": f"{prefix}.{host}", "prefix_length": 24,
            "mac_address": f"0a:58:0a:{third:02x}:00:{host:02x}", "gateway_ip": f"{prefix}.1",
            "defaultGateway": False, "mtu": 1400, "routes": []}


class Pod:
    """A pod on the node whose result the test writes as the operator would."""

    def __init__(self, stack: Stack, core, name: str, ifaces: list[dict]) -> None:
        self.stack, self.core, self.name, self.ns = stack, core, name, "default"
        core.create_namespaced_pod(self.ns, {
            "metadata": {"name": name, "annotations": {"ovnNetwork": json.dumps(
                [{"name": e["name"], "interface": e["interface"]} for e in ifaces])}},
            "spec": {"nodeName": stack.node, "containers": [{"name": "c", "image": "busybox"}]}})
        self.uid = core.read_namespaced_pod(name, self.ns).metadata.uid
        self.set(ifaces)

    def set(self, ifaces: list[dict]) -> None:
        for e in ifaces:
            lsp, addr = port_name(self.ns, self.name, e["interface"]), f"{e['mac_address']} {e['ip_address']}"
            self.stack.nbctl("--may-exist", "lsp-add", e["name"], lsp, "--", "lsp-set-addresses", lsp, addr)
        self.stack.nbctl("--timeout=30", "--wait=hv", "sync")
        key = self.stack.seal_key_file.read_bytes()
        ann = {"ovnNetwork": json.dumps([{"name": e["name"], "interface": e["interface"]} for e in ifaces]),
               **sealed_annotations(key, self.uid, RESULT_ANNOTATION, json.dumps(ifaces))}
        self.core.patch_namespaced_pod(self.name, self.ns, {"metadata": {"annotations": ann}})

    def annotations(self) -> dict[str, str]:
        return self.core.read_namespaced_pod(self.name, self.ns).metadata.annotations or {}

    def status(self) -> dict[str, str]:
        return json.loads(self.annotations().get("ovnvnet.io/plumbed", "{}"))

    def events(self, reason: str) -> list[str]:
        items = self.core.list_namespaced_event(
            self.ns, field_selector=f"involvedObject.name={self.name},reason={reason}").items
        return [e.message for e in items if e.involved_object.uid == self.uid]


def test_agent_process_hotplugs_through_the_api(stack: Stack, core):
    kubelet = Kubelet(stack)
    pod = Pod(stack, core, f"hpk-{uuid.uuid4().hex[:5]}", [entry("net0", "hpk-a", 5)])
    sandbox, outcome = kubelet.run_pod(pod.ns, pod.name)
    assert outcome.ok
    wait_for(lambda: pod.status() == {"net0": "plumbed"}, 30, "the status written after ADD")

    def links() -> set[str]:
        out = json.loads(os.popen(f"ip -n {sandbox.netns} -j link show").read())
        return {link["ifname"] for link in out} - {"lo"}

    # add net1: the watch triggers the converge; Event and status through the API
    t0 = time.monotonic()
    pod.set([entry("net0", "hpk-a", 5), entry("net1", "hpk-b", 5)])
    wait_for(lambda: pod.status() == {"net0": "plumbed", "net1": "plumbed"}, 30, "net1 plumbed")
    print(f"\nplug through the API watch, to the status annotation read back: "
          f"{1000 * (time.monotonic() - t0):.0f} ms")
    assert links() == {"net0", "net1"}
    wait_for(lambda: pod.events("InterfaceAdded"), 10, "the InterfaceAdded Event")
    assert "net1 on network hpk-b (10.92.0.5/24" in pod.events("InterfaceAdded")[0]

    # the agent down while net1 is removed and net2 added: converges when it is back
    stack.stop_agent()
    pod.set([entry("net0", "hpk-a", 5), entry("net2", "hpk-b", 6)])
    time.sleep(1)
    assert links() == {"net0", "net1"}  # nobody converged meanwhile
    stack.start_agent()
    wait_for(lambda: pod.status() == {"net0": "plumbed", "net2": "plumbed"}, 60,
             f"the restarted agent's converge (status {pod.status()})")
    assert links() == {"net0", "net2"}
    wait_for(lambda: pod.events("InterfaceRemoved"), 10, "the InterfaceRemoved Event")
    assert kubelet.cni("check", sandbox).ok

    # terminating (a finalizer holds it): a change is never plugged
    core.patch_namespaced_pod(pod.name, pod.ns, {"metadata": {"finalizers": ["test.ovnvnet.io/hold"]}})
    core.delete_namespaced_pod(pod.name, pod.ns)
    wait_for(lambda: core.read_namespaced_pod(pod.name, pod.ns).metadata.deletion_timestamp, 10,
             "the deletionTimestamp")
    pod.set([entry("net0", "hpk-a", 5), entry("net2", "hpk-b", 6), entry("net3", "hpk-a", 7)])
    time.sleep(3)
    assert links() == {"net0", "net2"}
    assert kubelet.cni("del", sandbox).ok
    assert links() == set()
    core.patch_namespaced_pod(pod.name, pod.ns, {"metadata": {"finalizers": None}})
