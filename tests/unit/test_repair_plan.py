"""The pure NB repair plan: desired rows vs the rows ovnvnet owns in the NB."""
from ovnvnet.model.network import parse_network_spec
from ovnvnet.ovn.nb import NbState, PortSpec
from ovnvnet.reconcile.recovery import drift_lines, plan_repair
from ovnvnet.reconcile.state import network_rows


def _port(name: str, switch: str, ip: str) -> PortSpec:
    return PortSpec(name, switch, "0a:58:0a:00:00:05", ip, (("ovnvnet.io/owner", "ovnvnet"),))


def _converged(nets: dict) -> NbState:
    st = NbState(router=True)
    for name, (_sw, rp) in nets.items():
        st.switches[name] = {}
        if rp is not None:
            st.router_ports[rp.lrp_name] = (rp.mac, rp.networks)
            st.switch_router_ports[rp.lsp_name] = name
    return st


def test_converged_state_needs_nothing() -> None:
    nets = {"a": network_rows("a", parse_network_spec({"subnet": "10.0.0.0/24"}))}
    ports = {"ns_p_net0": _port("ns_p_net0", "a", "10.0.0.5")}
    actual = _converged(nets)
    actual.ports = dict(ports)
    assert plan_repair(nets, ports, {"a"}, actual).empty()


def test_wiped_nb_is_rebuilt_whole() -> None:
    nets = {"a": network_rows("a", parse_network_spec({"subnet": "10.0.0.0/24"}))}
    ports = {"ns_p_net0": _port("ns_p_net0", "a", "10.0.0.5")}
    plan = plan_repair(nets, ports, {"a"}, NbState())
    assert [sw.name for sw, _ in plan.ensure_networks] == ["a"]
    assert plan.ensure_ports == [ports["ns_p_net0"]]
    assert not plan.delete_ports and not plan.delete_switches


def test_stale_and_wrong_rows() -> None:
    nets = {"a": network_rows("a", parse_network_spec({"subnet": "10.0.0.0/24"}))}
    want = _port("ns_p_net0", "a", "10.0.0.5")
    actual = _converged(nets)
    actual.ports = {"ns_p_net0": _port("ns_p_net0", "a", "10.0.0.9"),
                    "ns_gone_net0": _port("ns_gone_net0", "a", "10.0.0.7")}
    actual.switches["deleted-net"] = {}
    actual.router_ports["rtr-deleted-net"] = ("0a:58:0a:01:00:01", ("10.1.0.1/24",))
    plan = plan_repair(nets, {want.name: want}, {"a"}, actual)
    assert plan.ensure_ports == [want]                     # wrong address rewritten
    assert plan.delete_ports == ["ns_gone_net0"]           # port of no holder removed
    assert plan.delete_switches == ["deleted-net"]         # switch of a network that no longer exists
    assert plan.delete_router_ports == ["rtr-deleted-net"]


def test_known_but_unapplied_network_is_left_alone() -> None:
    actual = NbState(router=True, switches={"broken": {}})
    plan = plan_repair({}, {}, {"broken"}, actual)
    assert plan.empty()


def test_unrouted_network_loses_its_router_port() -> None:
    routed = network_rows("a", parse_network_spec({"subnet": "10.0.0.0/24"}))
    nets = {"a": network_rows("a", parse_network_spec({"subnet": "10.0.0.0/24", "routed": False}))}
    actual = _converged({"a": routed})
    plan = plan_repair(nets, {}, {"a"}, actual)
    assert plan.delete_router_ports == ["rtr-a"] and plan.delete_ports == ["rtr-a-ls"]
    assert not plan.ensure_networks


def test_one_log_line_per_drifted_row() -> None:
    nets = {"a": network_rows("a", parse_network_spec({"subnet": "10.0.0.0/24"})),
            "b": network_rows("b", parse_network_spec({"subnet": "10.0.1.0/24"}))}
    want = _port("ns_p_net0", "a", "10.0.0.5")
    missing = _port("ns_q_net0", "a", "10.0.0.6")
    actual = _converged({"a": nets["a"]})
    actual.ports = {"ns_p_net0": _port("ns_p_net0", "a", "10.0.0.9"),
                    "ns_gone_net0": _port("ns_gone_net0", "a", "10.0.0.7")}
    actual.switches["deleted-net"] = {}
    actual.router_ports["rtr-deleted-net"] = ("0a:58:0a:01:00:01", ("10.1.0.1/24",))
    plan = plan_repair(nets, {want.name: want, missing.name: missing}, {"a", "b"}, actual)
    lines = drift_lines(plan, actual)
    assert sorted(lines) == sorted([
        "switch b found in the records but not in NB",
        f"port ns_p_net0 differs in NB: NB has a 0a:58:0a:00:00:05 10.0.0.9 {dict(want.external_ids)}, "
        f"the records a 0a:58:0a:00:00:05 10.0.0.5 {dict(want.external_ids)}",
        "port ns_q_net0 found in the records but not in NB (network a, 0a:58:0a:00:00:05 10.0.0.6)",
        "port ns_gone_net0 found in NB but not in the records (network a, 10.0.0.7, pod None)",
        "router port rtr-deleted-net found in NB but its network is gone or not routed",
        "switch deleted-net found in NB but no VirtualNetwork deleted-net exists",
    ])


def test_repair_mode_setting() -> None:
    import pytest

    from ovnvnet.config import ConfigError, Settings
    assert Settings.from_env({"OVN_NB_DB": "tcp:127.0.0.1:6641"}).repair == "repair"
    assert Settings.from_env({"OVN_NB_DB": "tcp:127.0.0.1:6641", "OVNVNET_REPAIR": "log"}).repair == "log"
    with pytest.raises(ConfigError, match="OVNVNET_REPAIR='fix' is not one of repair, log"):
        Settings.from_env({"OVN_NB_DB": "tcp:127.0.0.1:6641", "OVNVNET_REPAIR": "fix"})
