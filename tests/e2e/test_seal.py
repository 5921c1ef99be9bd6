"""The port hijack of issue 9.1 on the real data plane: a pod whose creator writes a legacy `ovn`
"result" naming another pod's logical switch port, MAC and address (with the shipped setting, no
OVNVNET_DEFAULT_NETWORK, the operator never replaces it). The agent acts only on a result the
operator sealed for that pod's UID: ADD is refused, no OVS interface claims the victim's port, and
the victim keeps its traffic."""
from __future__ import annotations

import json

import pytest

from harness.kubelet import CniFailed
from harness.stack import Stack

from .conftest import Pods, new_namespace, uniq

pytestmark = pytest.mark.timeout(150)


def _bound_to(stack: Stack, lsp: str) -> list[str]:
    out = stack.dataplane().vsctl("--bare", "--columns=name", "find", "Interface",
                                  f"external_ids:iface-id={lsp}")
    return out.split()


def test_forged_legacy_result_cannot_take_another_pods_port(pods: Pods, e2e_stack: Stack, tmp_path):
    net = uniq("hijack")
    pods.cluster.create_vnet(net, "10.69.0.0/24")  # its own subnet: test_lifecycle keeps 10.68.0.0/24
    pods.cluster.wait_ready(net)
    victim = pods.run("victim", [{"name": net, "interface": "net1"}])
    peer = pods.run("peer", [{"name": net, "interface": "net0"}])
    (v,) = pods.iface_list("victim")
    peer_ip = pods.iface_list("peer")[0]["ip_address"]
    victim_port = f"{pods.ns}_victim_net1"
    assert len(_bound_to(e2e_stack, victim_port)) == 1

    alpha = Pods(pods.cluster, pods.kubelet, new_namespace(pods.cluster))
    try:
        forged = {"ip_address": f"{v['ip_address']}/{v['prefix_length']}", "mac_address": v["mac_address"],
                  "gateway_ip": v["gateway_ip"], "name": net, "port": victim_port}
        alpha.create("evil", annotations={"ovn": json.dumps(forged)})
        uid = pods.cluster.pod(alpha.ns, "evil").metadata.uid
        conflist = e2e_stack.write_conflist(annotation_timeout=2, path=tmp_path / "short.conflist")
        with pytest.raises(CniFailed) as failed:
            alpha.kubelet.run_pod(alpha.ns, "evil", conflist=conflist)
        msg = failed.value.outcome.message
        assert f"ovn of {alpha.ns}/evil is not sealed by the operator for this pod (uid {uid})" in msg, msg
        assert len(_bound_to(e2e_stack, victim_port)) == 1
        assert victim.ping(peer_ip) and peer.ping(v["ip_address"])
    finally:
        alpha.cleanup()
