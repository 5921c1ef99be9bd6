"""Kubernetes label selectors (matchLabels + matchExpressions), parsed once, matched purely."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


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

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    def __str__(self) -> str:
        parts = []
        for r in self.requirements:
            if r.operator in ("In", "NotIn"):
                parts.append(f"{r.key} {r.operator.lower()} ({','.join(sorted(r.values))})")
            else:
                parts.append(r.key if r.operator == "Exists" else f"!{r.key}")
        return ", ".join(parts) or "everything"


def parse_selector(raw: Any, where: str = "spec.namespaceSelector") -> LabelSelector | None:
    """None means "no restriction" (absent selector); an empty selector matches everything."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise SelectorError(f"{where} must be an object")
    reqs: list[Requirement] = []
    labels = raw.get("matchLabels") or {}
    if not isinstance(labels, Mapping):
        raise SelectorError(f"{where}.matchLabels must be a map of strings")
    for k, v in labels.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise SelectorError(f"{where}.matchLabels must be a map of strings")
        reqs.append(Requirement(k, "In", frozenset([v])))
    exprs = raw.get("matchExpressions") or []
    if not isinstance(exprs, list):
        raise SelectorError(f"{where}.matchExpressions must be a list")
    for i, e in enumerate(exprs):
        if not isinstance(e, Mapping) or not isinstance(e.get("key"), str):
            raise SelectorError(f"{where}.matchExpressions[{i}] needs a key")
        op = e.get("operator")
        if op not in OPERATORS:
            raise SelectorError(f"{where}.matchExpressions[{i}].operator {op!r} is not one of {', '.join(OPERATORS)}")
        values = e.get("values") or []
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise SelectorError(f"{where}.matchExpressions[{i}].values must be a list of strings")
        if op in ("In", "NotIn") and not values:
            raise SelectorError(f"{where}.matchExpressions[{i}]: operator {op} needs values")
        if op in ("Exists", "DoesNotExist") and values:
            raise SelectorError(f"{where}.matchExpressions[{i}]: operator {op} takes no values")
        reqs.append(Requirement(e["key"], op, frozenset(values)))
    return LabelSelector(tuple(reqs))
