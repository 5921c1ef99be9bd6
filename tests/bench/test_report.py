"""The performance tables in README.md and bench/README.md are what `python -m bench.report`
generates from the committed result files (bench/results/<scenario>.json), not typed in.

Pure: no stack, no benchmark run; only the files in the checkout.
"""
from __future__ import annotations

import copy
import json
import shutil

from bench import report


def test_committed_tables_match_committed_results():
    docs = report.load()
    assert docs, "no committed result file in bench/results/"
    for path, text in report.render(docs).items():
        assert path.read_text() == text, (
            f"{path.relative_to(report.REPO)}: the performance table is not what bench/results/*.json "
            "gives; run `python -m bench.report` (and commit the result files it reads)")


def test_every_committed_result_names_its_date_commit_size_and_load():
    for stem, doc in report.load().items():
        host = doc.get("host") or {}
        assert doc.get("when") and host.get("git"), f"{stem}.json: no date or commit"
        assert doc.get("size") in ("full", "reduced"), f"{stem}.json: size {doc.get('size')!r}"
        assert host.get("load_start") and host.get("load_end"), f"{stem}.json: no load average"


def test_a_changed_figure_or_a_reduced_run_shows_in_the_tables(tmp_path):
    """The check can fail: a result file whose figure changed makes the committed tables stale,
    and a reduced-size run is labelled as such in both tables."""
    docs = report.load()
    stem, doc = next(iter(docs.items()))
    changed = copy.deepcopy(doc)
    changed["rows"][0]["value"] = 123456.0
    changed["size"] = "reduced"
    changed["full_params"] = {"pods": 999999}
    results = tmp_path / "results"
    results.mkdir()
    for s, d in docs.items():
        (results / f"{s}.json").write_text(json.dumps(changed if s == stem else d))
    targets = {}
    for marker, path in report.TARGETS.items():
        copy_path = tmp_path / f"{marker}.md"
        shutil.copy(path, copy_path)
        targets[marker] = copy_path
    assert set(report.stale(results, targets)) == set(targets.values())
    rendered = report.render(report.load(results), targets)
    for text in rendered.values():
        assert "123,456" in text and "reduced size" in text.lower()
