"""Smoke run of every benchmark scenario at tiny sizes, so the benchmark code cannot rot.

No figure is asserted (the machines are shared and noisy): only that each scenario runs to the
end on the real stack, fills its table and writes its JSON.
"""
from __future__ import annotations

import json

import pytest

from bench import s1_attach, s2_restart, s2x_restart, s3_allocator, s4_cni, s5_status, s6_churn
from bench.common import Result

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def _check(res: Result, tmp_path, *, rows: bool = True) -> None:
    table = res.table()
    assert res.scenario in table
    if rows:
        assert res.rows and all(r.value is not None for r in res.rows), table
    doc = json.loads(res.write(tmp_path).read_text())
    assert doc["scenario"] == res.scenario and len(doc["rows"]) == len(res.rows)


def test_allocator(tmp_path):
    _check(s3_allocator.run(repeats=1, ops=2000), tmp_path)


def test_allocator_ipv6(tmp_path):
    _check(s3_allocator.run_v6(repeats=1, ops=1000, memory_held=2000), tmp_path)


def _floors_measured(res: Result, runs: dict, repeats: int) -> None:
    """Both API floors ran in every repeat (the raw one on ovnvnet's client answered every pod:
    a burst or churn waits for each pod's annotation) and the main ratio is against the raw one."""
    assert [len(runs[side]) for side in ("raw", "kopf", "operator")] == [repeats] * 3, runs
    main = res.rows[0]
    assert main.baseline_name == "raw API floor" and main.baseline and main.ratio, res.table()
    assert any(r.baseline_name == "Kopf API floor" and r.baseline for r in res.rows), res.table()


def test_attach(tmp_path):
    res = s1_attach.run(20, repeats=1)
    _check(res, tmp_path)
    _floors_measured(res, res.extra["runs"], 1)


def test_attach_dualstack(tmp_path):
    res = s1_attach.run_dualstack(20, repeats=1)
    _check(res, tmp_path)
    runs = res.extra["runs"]
    assert len(runs["ipv4"]) == len(runs["dual-stack"]) == 1
    main = res.rows[0]
    assert main.baseline and main.ratio and main.value, res.table()


def test_restart(tmp_path):
    _check(s2_restart.run(allocations=30, nets=3, repeats=1), tmp_path)


def test_restart_10x(tmp_path):
    res = s2x_restart.run(pods=20, ifaces=2, nets=3, big=1, repeats=1)
    _check(res, tmp_path)
    assert res.size == "reduced" and res.params["allocations"] == 40


def test_status_size(tmp_path):
    res = s5_status.run(allocations=40)
    _check(res, tmp_path)
    assert res.params["name_length"] == 63 and res.params["namespace_length"] == 63
    assert res.size == "reduced"


def test_churn(tmp_path):
    res = s6_churn.run(30, 10, repeats=2)
    _check(res, tmp_path)
    _floors_measured(res, res.extra["runs"], 2)
    assert len(res.extra["checks"]) == 2   # the invariant after each operator run
    assert all(r.met for r in res.rows if r.figure.startswith(("invariant", "leaked"))), res.table()


def test_cni(tmp_path):
    _check(s4_cni.run(3), tmp_path)


def test_cni_dual_stack(tmp_path):
    res = s4_cni.run(2, dual_stack=True)
    assert res.scenario == "s4_cni_dualstack" and res.params["dual_stack"] is True
    _check(res, tmp_path)
