"""Generated label selectors (hypothesis), shared by the unit test that compares the parser with the
CRD schema and the integration test that compares it with the API server's own validation."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

from ovnvnet.model.selector import KEY_PATTERN, OPERATORS, VALUE_PATTERN, SelectorError, parse_selector

CRD = Path(__file__).resolve().parents[1] / "crds" / "virtualnetworks.ovnvnet.io.yaml"

texts = st.one_of(
    st.sampled_from(["", "a", "team", "red", "a.b/c", "example.com/team", "-a", "a-", "A_b.c", "x" * 63, "x" * 64,
                     "a/b/c", "UPPER.com/x", "a b", "a\n", "\u00e9", "a..b", "_a", "a_", "1", "a/" , "/a",
                     "x" * 253 + "/y", "x" * 254 + "/y"]),
    st.text(max_size=70),
    st.from_regex(KEY_PATTERN, fullmatch=True),
    st.from_regex(VALUE_PATTERN, fullmatch=True),
)
value_lists = st.one_of(st.none(), st.lists(texts, max_size=3), st.lists(st.integers(), min_size=1, max_size=2),
                        st.text(max_size=5))
expressions = st.fixed_dictionaries({}, optional={
    "key": st.one_of(texts, st.integers(), st.none()),
    "operator": st.one_of(st.sampled_from(OPERATORS + ("in", "Near", "")), st.none(), st.integers()),
    "values": value_lists,
})
selectors = st.fixed_dictionaries({}, optional={
    "matchLabels": st.one_of(st.none(), st.dictionaries(texts, st.one_of(texts, st.integers()), max_size=3),
                             st.lists(st.text(max_size=3), max_size=2)),
    "matchExpressions": st.one_of(st.none(), st.lists(st.one_of(expressions, st.text(max_size=3)), max_size=3),
                                  st.text(max_size=3)),
})


def selector_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"][
        "namespaceSelector"]


def pruned(value: Any) -> Any:
    """What the API server validates: null fields of an object are dropped (non-nullable fields)."""
    if isinstance(value, dict):
        return {k: pruned(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [pruned(v) for v in value]
    return value


def go_pattern(pattern: str) -> re.Pattern:
    """OpenAPI patterns are Go (RE2) regular expressions: `$` is the end of the text, not before a
    trailing newline as in Python."""
    return re.compile(pattern.replace("$", r"\Z"))


def parser_accepts(sel: Any) -> bool:
    """Whether the operator's selector parser takes ``sel``."""
    try:
        parse_selector(sel)
        return True
    except SelectorError:
        return False
