"""Scenario 4: CNI ADD latency (placeholder: not measured yet).

Planned: a 2-interface pod, shim -> node agent -> interfaces ready (`ovn-installed`), p50/p99
over 100 pods, beside the bare cost of the same veths and OVS ports with no ovnvnet code.
Target: p50 <= 150 ms + the bare cost.
"""
from __future__ import annotations

from bench.common import Result, log


def run(pods: int = 100, **_: object) -> Result:
    res = Result("s4_cni", "CNI ADD latency (NOT MEASURED: scenario not written yet)", params={"pods": pods})
    res.notes.append("placeholder: no figure is reported; see bench/README.md")
    log("s4: CNI ADD latency is not measured yet (placeholder)")
    return res


def main(argv: list[str] | None = None) -> Result:
    res = run()
    print(res.table())
    return res


if __name__ == "__main__":
    main()
