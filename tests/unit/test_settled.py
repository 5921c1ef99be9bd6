"""`pod.settled`: the watch drops an attached pod's update only when handling it would do nothing
(its request is the one served, its result the one written, nothing to clear or retry)."""
from __future__ import annotations

import asyncio
import json

from ovnvnet.config import Settings
from ovnvnet.model.annotation import ERROR_ANNOTATION, REQUEST_ANNOTATION, InterfaceResult
from ovnvnet.reconcile import pod as pod_rec
from ovnvnet.reconcile.errors import RequestRefused
from ovnvnet.reconcile.state import PodRecord, State

REQUEST = json.dumps([{"name": "a", "interface": "net0"}])


def _state() -> State:
    return State(Settings.from_env({"OVN_NB_DB": "tcp:127.0.0.1:6641"}), None, None, seal_key=b"k" * 32)  # type: ignore[arg-type]


def _attached(state: State) -> tuple[PodRecord, dict]:
    res = InterfaceResult("net0", "a", "10.0.0.5", 24, "0a:58:0a:00:00:05", "10.0.0.1", False, None, ())
    record = PodRecord("ns", "p", "uid-1", [res], request=(REQUEST, None))
    state.attached["uid-1"] = record
    written = pod_rec.result_annotation(state, record)
    body = {"metadata": {"namespace": "ns", "name": "p", "uid": "uid-1",
                         "annotations": {REQUEST_ANNOTATION: REQUEST, **written}}, "status": {"phase": "Running"}}
    return record, body


def test_echo_of_the_written_result_is_settled() -> None:
    async def run() -> None:
        state = _state()
        _, body = _attached(state)
        assert pod_rec.settled(state, body)
    asyncio.run(run())


def test_anything_to_do_is_not_settled() -> None:
    async def run() -> None:
        state = _state()
        record, body = _attached(state)
        ann = body["metadata"]["annotations"]
        cases = [
            {**body, "metadata": {**body["metadata"], "annotations": {**ann, REQUEST_ANNOTATION: "[]"}}},
            {**body, "metadata": {**body["metadata"], "annotations": {**ann, "ovnIfaceList": "[]"}}},
            {**body, "metadata": {**body["metadata"], "annotations": {**ann, ERROR_ANNOTATION: "x"}}},
            {**body, "status": {"phase": "Succeeded"}},
            {**body, "metadata": {**body["metadata"], "uid": "uid-2"}},
        ]
        for case in cases:
            assert not pod_rec.settled(state, case), case
        state.pending["uid-1"] = ("ns", "p")
        assert not pod_rec.settled(state, body)
        state.pending.clear()
        state.refused["uid-1"] = RequestRefused("forged", retry=False, reason="ResultNotOwned")
        assert not pod_rec.settled(state, body)
        state.refused.clear()
        state.seal_key = b"j" * 32   # a new key: the result is written again
        assert not pod_rec.settled(state, body)
    asyncio.run(run())


def test_attached_pods_logged_once_per_window(caplog) -> None:
    """A burst of attaches is one INFO record per window naming each pod (`pod.AttachLog`)."""
    async def run() -> None:
        attach_log = pod_rec.AttachLog(window=0.05, names=2)
        with caplog.at_level("INFO", logger=pod_rec.log.name):
            for i in range(3):
                attach_log.add(f"ns/p{i}")
            assert not caplog.records
            await asyncio.sleep(0.1)
            attach_log.add("ns/late")
            await asyncio.sleep(0.1)
        lines = [r.getMessage() for r in caplog.records]
        assert len(lines) == 2, lines
        assert lines[0].startswith("attached 3 pod(s)") and "ns/p0, ns/p1 and 1 more" in lines[0]
        assert lines[1].startswith("attached 1 pod(s)") and lines[1].endswith("ns/late")
    asyncio.run(run())
