"""`python -m bench`: run the benchmark scenarios on the real local stack.

    python -m bench --all              every scenario at full size (what `make bench` runs)
    python -m bench s1 s3              some scenarios
    python -m bench --all --quick      every scenario at small sizes (minutes, not figures to quote)
    python -m bench.s1_attach --help   one scenario with all its knobs

Each scenario prints a table (figure, baseline, ratio, target, met?) and writes
bench/results/<scenario>.json (labelled `reduced` when smaller than the full size); the run ends
with every table again and a one-line verdict. `python -m bench.report` then regenerates the
READMEs' tables from those files.
"""
from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable

from bench import s1_attach, s2_restart, s2x_restart, s3_allocator, s4_cni, s5_status, s6_churn, s7_hotplug
from bench.common import Result, log

# name -> (full run, quick run)
SCENARIOS: dict[str, tuple[Callable[[], Result], Callable[[], Result]]] = {
    "s3": (lambda: s3_allocator.run(), lambda: s3_allocator.run(repeats=3, ops=20_000)),
    "s3v6": (lambda: s3_allocator.run_v6(5, 20_000, 100_000), lambda: s3_allocator.run_v6(3, 5000, 20_000)),
    "s1": (lambda: s1_attach.run(1000, repeats=3), lambda: s1_attach.run(200, repeats=3)),
    "s1ds": (lambda: s1_attach.run_dualstack(1000, repeats=3), lambda: s1_attach.run_dualstack(200, repeats=3)),
    "s2": (lambda: s2_restart.run(10_000, 10), lambda: s2_restart.run(1000, 10, repeats=2)),
    "s2x": (lambda: s2x_restart.run(50_000, 2, 20), lambda: s2x_restart.run(2000, 2, 20, repeats=2)),
    "s4": (lambda: s4_cni.run(100), lambda: s4_cni.run(10)),
    "s5": (lambda: s5_status.run(10_000), lambda: s5_status.run(1000)),
    "s6": (lambda: s6_churn.run(2000, 50, repeats=3), lambda: s6_churn.run(300, 50, repeats=3)),
    "s4tn": (lambda: s4_cni.run_two_nodes(100), lambda: s4_cni.run_two_nodes(10)),
    "s7": (lambda: s7_hotplug.run(50), lambda: s7_hotplug.run(10)),
}
ORDER = ["s3", "s3v6", "s1", "s1ds", "s2", "s2x", "s4", "s4tn", "s5", "s6", "s7"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("scenarios", nargs="*", choices=[*ORDER, []], help="default with --all: every scenario")
    ap.add_argument("--all", action="store_true")
    ap.add_argument("--quick", action="store_true", help="small sizes")
    args = ap.parse_args(argv)
    chosen = ORDER if args.all or not args.scenarios else [s for s in ORDER if s in args.scenarios]
    results: list[Result] = []
    failed: list[str] = []
    for name in chosen:
        full, quick = SCENARIOS[name]
        t0 = time.monotonic()
        log(f"--- {name} ({'quick' if args.quick else 'full'})")
        try:
            res = (quick if args.quick else full)()
        except Exception:  # noqa: BLE001 - report and go on with the next scenario
            traceback.print_exc()
            failed.append(name)
            continue
        print(res.table(), flush=True)
        log(f"{name} took {time.monotonic() - t0:.0f}s; wrote {res.write()}")
        results.append(res)
    print("\n================ summary")
    for res in results:
        print(res.table() + "\n")
    missed = [f"{r.scenario}: {row.figure}" for r in results for row in r.rows if row.met is False]
    print(f"scenarios run: {len(results)}; errors: {failed or 'none'}; targets missed: {len(missed)}")
    for m in missed:
        print(f"  missed  {m}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
