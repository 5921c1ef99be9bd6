"""Kubernetes label selectors (matchLabels + matchExpressions), parsed once, matched purely.

The parser and the VirtualNetwork CRD schema (crds/virtualnetworks.ovnvnet.io.yaml, spec.namespaceSelector)
accept exactly the same set of selectors: the same patterns, lengths and operator/values rules
(tests/unit/test_selector.py compares the two on generated selectors, tests/integration
test_selectors.py against the API server itself). Unknown fields are pruned by the API server and
ignored here. A selector that cannot be parsed anyway (stored before the schema was tightened)
fails closed: `closed_selector` turns it into a selector that admits no namespace.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
# the same patterns and limits as the CRD schema (which anchors them with ^...$)
KEY_PATTERN = (r"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
               r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
KEY_MAX = 317            # a DNS subdomain prefix (253) + "/" + a name (63)
VALUE_PATTERN = r"([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]"   # not empty: the API server refuses ""
VALUE_MAX = 63
_KEY = re.compile(KEY_PATTERN)
_VALUE = re.compile(VALUE_PATTERN)


class SelectorError(ValueError):
    pass


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str
    values: frozenset[str]

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "In":
            return self.key in labels and labels[self.key] in self.values
        if self.operator == "NotIn":
            return self.key not in labels or labels[self.key] not in self.values
        if self.operator == "Exists":
            return self.key in labels
        return self.key not in labels


@dataclass(frozen=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()
    unreadable: str | None = None   # why the stored selector could not be parsed: it admits nothing

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self.unreadable is not None:
            return False
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    def __str__(self) -> str:
        if self.unreadable is not None:
            return f"nothing (unreadable selector: {self.unreadable})"
        parts = []
        for r in self.requirements:
            if r.operator in ("In", "NotIn"):
                parts.append(f"{r.key} {r.operator.lower()} ({','.join(sorted(r.values))})")
            else:
                parts.append(r.key if r.operator == "Exists" else f"!{r.key}")
        return ", ".join(parts) or "everything"


def closed_selector(raw: Any, where: str = "spec.namespaceSelector") -> LabelSelector | None:
    """`parse_selector`, failing closed: a selector it rejects admits no namespace (never "all")."""
    try:
        return parse_selector(raw, where)
    except SelectorError as exc:
        return LabelSelector(unreadable=str(exc))


def _value(v: Any, where: str) -> str:
    if not isinstance(v, str):
        raise SelectorError(f"{where} must be a string, not {type(v).__name__}")
    if len(v) > VALUE_MAX or not _VALUE.fullmatch(v):
        raise SelectorError(f"{where} {v[:80]!r} is not a label value (1 to {VALUE_MAX} of A-Z a-z 0-9 - _ ., "
                            "beginning and ending alphanumeric)")
    return v


def parse_selector(raw: Any, where: str = "spec.namespaceSelector") -> LabelSelector | None:
    """None means "no restriction" (absent selector); an empty selector matches everything."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise SelectorError(f"{where} must be an object")
    reqs: list[Requirement] = []
    labels = raw.get("matchLabels")
    labels = {} if labels is None else labels
    if not isinstance(labels, Mapping):
        raise SelectorError(f"{where}.matchLabels must be a map of strings")
    for k, v in labels.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise SelectorError(f"{where}.matchLabels must be a map of strings")
        reqs.append(Requirement(k, "In", frozenset([_value(v, f"{where}.matchLabels[{k[:80]!r}]")])))
    exprs = raw.get("matchExpressions")
    exprs = [] if exprs is None else exprs
    if not isinstance(exprs, list):
        raise SelectorError(f"{where}.matchExpressions must be a list")
    for i, e in enumerate(exprs):
        reqs.append(_requirement(e, f"{where}.matchExpressions[{i}]"))
    return LabelSelector(tuple(reqs))


def _requirement(e: Any, where: str) -> Requirement:
    if not isinstance(e, Mapping) or not isinstance(e.get("key"), str):
        raise SelectorError(f"{where} needs a key")
    key = e["key"]
    if len(key) > KEY_MAX or not _KEY.fullmatch(key):
        raise SelectorError(f"{where}.key {key[:80]!r} is not a label key ([prefix/]name: a name of at most 63 "
                            "of A-Z a-z 0-9 - _ ., beginning and ending alphanumeric)")
    op = e.get("operator")
    if op not in OPERATORS:
        raise SelectorError(f"{where}.operator {op!r} is not one of {', '.join(OPERATORS)}")
    values = e.get("values")
    values = [] if values is None else values
    if not isinstance(values, list):
        raise SelectorError(f"{where}.values must be a list of strings")
    values = [_value(v, f"{where}.values[{j}]") for j, v in enumerate(values)]
    if op in ("In", "NotIn") and not values:
        raise SelectorError(f"{where}: operator {op} needs values (at least one)")
    if op in ("Exists", "DoesNotExist") and values:
        raise SelectorError(f"{where}: operator {op} takes no values")
    return Requirement(key, op, frozenset(values))
