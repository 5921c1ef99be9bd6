"""The rebuild's decision on one pod's result annotation, once the records are reserved
(`pod.restore_claims`), and the retry round's isolation per pod (`pod.retry_pending`).
Real allocators; the state is reduced to what these functions touch."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from ovnvnet.ipam.allocator import Holder, NetworkAllocator
from ovnvnet.kube.client import ApiError
from ovnvnet.model.annotation import InterfaceResult
from ovnvnet.model.network import parse_network_spec
from ovnvnet.model.selector import parse_selector
from ovnvnet.reconcile import pod as pod_rec

MAC5, MAC6 = "0a:58:0a:00:00:05", "0a:58:0a:00:00:06"


def _state(selector=None) -> SimpleNamespace:
    spec = parse_network_spec({"subnet": "10.0.0.0/24"})
    net = SimpleNamespace(spec=spec, allocator=NetworkAllocator("n", spec), selector=selector)
    st = SimpleNamespace(networks={"n": net}, attached={}, refused={}, holdings={})
    st.hold = lambda network, ip, holder, record_status=True: st.holdings.setdefault(holder.pod_uid, set()).add(
        (network, ip))
    return st


def _pod(ns: str, name: str, uid: str, **annotations: str) -> dict:
    return {"metadata": {"namespace": ns, "name": name, "uid": uid, "annotations": annotations}}


def _res(ip: str, mac: str, interface: str = "net0") -> InterfaceResult:
    return InterfaceResult(interface, "n", ip, 24, mac, "10.0.0.1", False, None, ())


def _record(st, ip: str, holder: Holder) -> None:   # what the rebuild reserved from NB ports / IPBlocks
    st.networks["n"].allocator.reserve(ip, holder)


def _admit_all(network: str, namespace: str) -> bool:
    return True


def test_result_agreeing_with_the_records_is_restored() -> None:
    st = _state()
    _record(st, "10.0.0.5", Holder("zeta/victim", "uid-v", "net0", MAC5))
    assert pod_rec.restore_claims(st, _pod("zeta", "victim", "uid-v"), [_res("10.0.0.5", MAC5)],
                                  is_legacy=False, admits=_admit_all)
    assert "uid-v" in st.attached and not st.refused


def test_copy_of_another_pods_result_is_refused_and_the_holder_keeps_it() -> None:
    st = _state()
    victim = Holder("zeta/victim", "uid-v", "net0", MAC5)
    _record(st, "10.0.0.5", victim)
    assert not pod_rec.restore_claims(st, _pod("alpha", "evil", "uid-e"), [_res("10.0.0.5", MAC5)],
                                      is_legacy=False, admits=_admit_all)
    assert "uid-e" not in st.attached
    refusal = st.refused["uid-e"]
    assert refusal.reason == "ResultNotOwned" and not refusal.retry
    assert "records give to pod zeta/victim" in str(refusal) and "10.0.0.5" in str(refusal)
    assert st.networks["n"].allocator.holder_of("10.0.0.5").pod_uid == "uid-v"


def test_gap_filled_only_when_admitted_and_without_error() -> None:
    st = _state(parse_selector({"matchLabels": {"team": "red"}}))
    body = _pod("blue", "p", "uid-p")
    assert not pod_rec.restore_claims(st, body, [_res("10.0.0.7", MAC6)], is_legacy=False,
                                      admits=lambda network, namespace: namespace == "red")
    assert st.networks["n"].allocator.holder_of("10.0.0.7") is None and "uid-p" not in st.attached

    st = _state()
    errored = _pod("ns", "p", "uid-p", ovnNetworkError="refused before")
    assert not pod_rec.restore_claims(st, errored, [_res("10.0.0.7", MAC6)], is_legacy=False, admits=_admit_all)
    assert st.networks["n"].allocator.holder_of("10.0.0.7") is None

    assert pod_rec.restore_claims(st, _pod("ns", "p", "uid-p"), [_res("10.0.0.7", MAC6)], is_legacy=False,
                                  admits=_admit_all)
    assert st.networks["n"].allocator.holder_of("10.0.0.7").pod_uid == "uid-p"
    assert st.holdings["uid-p"] == {("n", "10.0.0.7")}


def test_records_giving_the_pod_another_address_win() -> None:
    st = _state()
    _record(st, "10.0.0.5", Holder("ns/p", "uid-p", "net0", MAC5))
    assert not pod_rec.restore_claims(st, _pod("ns", "p", "uid-p"), [_res("10.0.0.9", MAC6)], is_legacy=False,
                                      admits=_admit_all)
    assert st.networks["n"].allocator.holder_of("10.0.0.9") is None and "uid-p" not in st.attached


def test_gaps_are_all_or_nothing() -> None:
    st = _state()
    _record(st, "10.0.0.8", Holder("ns/other", "uid-o", "net0", MAC6))   # its MAC is taken
    results = [_res("10.0.0.7", MAC5, "net0"), _res("10.0.0.9", MAC6, "net1")]
    assert not pod_rec.restore_claims(st, _pod("ns", "p", "uid-p"), results, is_legacy=False, admits=_admit_all)
    assert st.networks["n"].allocator.holder_of("10.0.0.7") is None
    assert "uid-p" not in st.attached and "uid-p" not in st.holdings


async def test_retry_round_isolates_each_pod(monkeypatch: pytest.MonkeyPatch) -> None:
    handled = []

    class Kube:
        def pod_path(self, ns: str, name: str) -> str:
            return f"{ns}/{name}"

        async def get(self, path: str) -> dict:
            if path == "ns/api-error":
                raise ApiError(500, "etcd timeout")
            return {"metadata": {"uid": {"ns/explodes": "u2", "ns/good": "u3"}[path]}}

    async def handle(state, body, event_type) -> None:
        if body["metadata"]["uid"] == "u2":
            raise RecursionError("maximum recursion depth exceeded")
        handled.append(body["metadata"]["uid"])

    monkeypatch.setattr(pod_rec, "handle_pod", handle)
    state = SimpleNamespace(kube=Kube(), pending={"u1": ("ns", "api-error"), "u2": ("ns", "explodes"),
                                                  "u3": ("ns", "good")})
    await pod_rec.retry_pending(state)
    assert handled == ["u3"]
    assert set(state.pending) == {"u1", "u2", "u3"}   # the failed ones wait for the next round
