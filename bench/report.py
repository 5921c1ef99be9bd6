"""`python -m bench.report`: the performance tables of README.md and bench/README.md, generated
from the committed result files bench/results/<scenario>.json.

Each result file is what one scenario run wrote (`Result.write`): its rows, parameters, whether it
ran at full size, when, at which commit, and the machine's load average before and after. The
tables are written between marker lines in the two READMEs and nowhere else:

    <!-- bench.report: summary -->  ...  <!-- bench.report: end -->     (README.md, Performance)
    <!-- bench.report: detail -->   ...  <!-- bench.report: end -->     (bench/README.md)

    python -m bench.report            rewrite the marked sections from the result files
    python -m bench.report --check    exit 1 (naming the file) if a section is not what the files give

tests/bench/test_report.py runs the check, so a figure typed into a table, or a result file
committed without regenerating the tables, fails the tests.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
# (scenario, result file stem, the command that produces it), in the tables' order
SCENARIOS = [
    ("s1", "s1_attach", "python -m bench s1"),
    ("s1ds", "s1_attach_dualstack", "python -m bench s1ds"),
    ("s2", "s2_restart", "python -m bench s2"),
    ("s2x", "s2x_restart", "python -m bench s2x"),
    ("s3", "s3_allocator", "python -m bench s3"),
    ("s3v6", "s3_allocator_v6", "python -m bench s3v6"),
    ("s4", "s4_cni", "python -m bench s4"),
    ("s4tn", "s4_cni_twonodes", "python -m bench s4tn"),
    ("s5", "s5_status", "python -m bench s5"),
    ("s6", "s6_churn", "python -m bench s6"),
    ("s7", "s7_hotplug", "python -m bench s7"),
]
END = "<!-- bench.report: end -->"
TARGETS = {"summary": REPO / "README.md", "detail": REPO / "bench" / "README.md"}


def load(results_dir: Path = RESULTS) -> dict[str, dict[str, Any]]:
    """The result documents present, by file stem."""
    out = {}
    for _, stem, _ in SCENARIOS:
        path = results_dir / f"{stem}.json"
        if path.exists():
            out[stem] = json.loads(path.read_text())
    return out


# ---------------------------------------------------------------------------- formatting
def fmt(v: float | None) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int) or (isinstance(v, float) and v.is_integer() and abs(v) >= 100):
        return f"{int(v):,}"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}"


def value(row: dict) -> str:
    if row.get("target") == "holds":   # a yes/no figure (value 1 or 0)
        return "holds" if row.get("value") else "does not hold"
    return f"{fmt(row['value'])} {row.get('unit') or ''}".strip()


def baseline(row: dict) -> str:
    if row.get("baseline") is None:
        return "-"
    return f"{row.get('baseline_name') or 'baseline'}: {fmt(row['baseline'])} {row.get('unit') or ''}".strip()


def met(row: dict) -> str:
    return "-" if row.get("met") is None else ("yes" if row["met"] else "**no**")


def ratio(row: dict) -> str:
    return "-" if row.get("ratio") is None else f"{row['ratio']:.2f}"


def size_label(doc: dict) -> str:
    size = doc.get("size", "unlabelled")
    if size == "full":
        return "full size"
    if size == "reduced":
        differ = {k: v for k, v in (doc.get("full_params") or {}).items() if doc["params"].get(k) != v}
        return ("**REDUCED SIZE, not figures to quote** ("
                + ", ".join(f"{k} {doc['params'].get(k)} instead of {v}" for k, v in differ.items()) + ")")
    return "size not labelled by the scenario"


def source(stem: str, doc: dict) -> str:
    host = doc.get("host") or {}
    load = host.get("load_start")
    load_end = host.get("load_end")
    loads = ""
    if load and load_end:
        loads = f"; load average {load[0]:.1f} at start, {load_end[0]:.1f} at end on {host.get('cpus')} CPUs"
    return (f"`bench/results/{stem}.json`: {doc.get('when', '?')}, commit {host.get('git') or '?'}, "
            f"{size_label(doc)}{loads}")


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# ---------------------------------------------------------------------------- sections
def detail(docs: dict[str, dict]) -> str:
    """bench/README.md: every row of every scenario, with its source."""
    out: list[str] = []
    for name, stem, command in SCENARIOS:
        doc = docs.get(stem)
        if doc is None:
            out += [f"**{name}**: no committed result file (`{command}`, then commit "
                    f"`bench/results/{stem}.json` and run `python -m bench.report`).", ""]
            continue
        params = ", ".join(f"{k}={v}" for k, v in doc.get("params", {}).items())
        out += [f"**{name}: {cell(doc['title'])}** ({params})  ",
                f"source: {source(stem, doc)}", "",
                "| figure | measured | baseline (same run) | ratio | target | met? |",
                "|---|---|---|---|---|---|"]
        for row in doc["rows"]:
            note = f" ({row['note']})" if row.get("note") else ""
            out.append(f"| {cell(row['figure'])} | {cell(value(row) + note)} | {cell(baseline(row))} | {ratio(row)} "
                       f"| {cell(row.get('target') or '-')} | {met(row)} |")
        if doc.get("notes"):
            out.append("")
            out += [f"- {cell(n)}" for n in doc["notes"]]
        out.append("")
    return "\n".join(out).rstrip("\n")


def summary(docs: dict[str, dict]) -> str:
    """README.md: the rows that carry a target, one table, each with its source's date and size."""
    out = ["| scenario | figure | measured | baseline (same run) | ratio | target | met? | measured on |",
           "|---|---|---|---|---|---|---|---|"]
    missing = []
    for name, stem, _ in SCENARIOS:
        doc = docs.get(stem)
        if doc is None:
            missing.append(name)
            continue
        when = (doc.get("when") or "?")[:10]
        size = "full size" if doc.get("size") == "full" else ("**reduced size**" if doc.get("size") == "reduced"
                                                                else "size unlabelled")
        for row in doc["rows"]:
            if row.get("met") is None:
                continue
            out.append(f"| {name} | {cell(row['figure'])} | {cell(value(row))} | {cell(baseline(row))} | {ratio(row)} "
                       f"| {cell(row.get('target') or '-')} | {met(row)} | {when}, {host_rev(doc)}, {size} |")
    if missing:
        out += ["", "No committed result for " + ", ".join(missing) + " (see `bench/README.md`)."]
    return "\n".join(out)


def host_rev(doc: dict) -> str:
    return (doc.get("host") or {}).get("git") or "?"


SECTIONS = {"summary": summary, "detail": detail}


def replace_section(text: str, marker: str, body: str, path: Path) -> str:
    begin = f"<!-- bench.report: {marker} -->"
    pattern = re.compile(re.escape(begin) + r"\n.*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"{path}: no section `{begin}` ... `{END}`")
    return pattern.sub(lambda _: f"{begin}\n{body}\n{END}", text, count=1)


def render(docs: dict[str, dict], targets: dict[str, Path] = TARGETS) -> dict[Path, str]:
    """Each target file's text with its section regenerated from `docs`."""
    out = {}
    for marker, path in targets.items():
        out[path] = replace_section(path.read_text(), marker, SECTIONS[marker](docs), path)
    return out


def stale(results_dir: Path = RESULTS, targets: dict[str, Path] = TARGETS) -> list[Path]:
    """The target files whose section differs from what the result files give."""
    return [path for path, text in render(load(results_dir), targets).items() if path.read_text() != text]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only check; exit 1 if a table is stale")
    args = ap.parse_args(argv)
    if args.check:
        bad = stale()
        for path in bad:
            print(f"{path.relative_to(REPO)}: performance table differs from bench/results/*.json; "
                  "run `python -m bench.report`", file=sys.stderr)
        return 1 if bad else 0
    for path, text in render(load()).items():
        if path.read_text() != text:
            path.write_text(text)
            print(f"rewrote the table in {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
