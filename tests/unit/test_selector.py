import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings

from ovnvnet.model.selector import SelectorError, closed_selector, parse_selector
from tests.selector_cases import go_pattern, parser_accepts, pruned, selector_schema, selectors


def test_absent_selector_means_no_restriction() -> None:
    assert parse_selector(None) is None
    assert parse_selector({}).matches({"any": "thing"})


@pytest.mark.parametrize("sel,labels,ok", [
    ({"matchLabels": {"team": "red"}}, {"team": "red"}, True),
    ({"matchLabels": {"team": "red"}}, {"team": "blue"}, False),
    ({"matchLabels": {"team": "red"}}, {}, False),
    ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]}, {"tier": "b"}, True),
    ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["a"]}]}, {}, True),
    ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["a"]}]}, {"tier": "a"}, False),
    ({"matchExpressions": [{"key": "vnf", "operator": "Exists"}]}, {"vnf": ""}, True),
    ({"matchExpressions": [{"key": "vnf", "operator": "DoesNotExist"}]}, {"vnf": "x"}, False),
    ({"matchLabels": {"a": "1"}, "matchExpressions": [{"key": "b", "operator": "Exists"}]}, {"a": "1"}, False),
])
def test_matching(sel, labels, ok) -> None:
    assert parse_selector(sel).matches(labels) is ok


@pytest.mark.parametrize("sel,msg", [
    ("x", "must be an object"),
    ({"matchLabels": {"a": 1}}, "map of strings"),
    ({"matchExpressions": [{"key": "a", "operator": "Near"}]}, "is not one of"),
    ({"matchExpressions": [{"key": "a", "operator": "In"}]}, "needs values"),
    ({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}, "takes no values"),
])
def test_invalid(sel, msg) -> None:
    with pytest.raises(SelectorError, match=msg):
        parse_selector(sel)


# ------------------------------------------------------------------ the parser and the CRD schema agree

def _schema_validator() -> jsonschema.protocols.Validator:
    def pattern(validator, patrn, instance, schema):
        if isinstance(instance, str) and not go_pattern(patrn).search(instance):
            yield jsonschema.ValidationError(f"{instance!r} does not match {patrn!r}")
    cls = jsonschema.validators.extend(jsonschema.Draft4Validator, {"pattern": pattern})
    return cls(selector_schema())


_VALIDATOR = _schema_validator()


@settings(max_examples=2000, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(selectors)
def test_parser_and_crd_schema_accept_the_same_selectors(sel) -> None:
    schema_ok = _VALIDATOR.is_valid(pruned(sel))
    assert parser_accepts(sel) == schema_ok, (sel, [e.message for e in _VALIDATOR.iter_errors(pruned(sel))])


@pytest.mark.parametrize("sel", [
    {"matchExpressions": [{"key": "team", "operator": "In", "values": []}]},      # issue 9 point 4
    {"matchExpressions": [{"key": "team", "operator": "NotIn"}]},
    {"matchExpressions": [{"key": "team", "operator": "Exists", "values": ["x"]}]},
    {"matchExpressions": [{"key": "", "operator": "Exists"}]},
    {"matchExpressions": [{"key": "a b", "operator": "Exists"}]},
    {"matchLabels": {"team": "a b"}},
    {"matchLabels": {"team": "x" * 64}},
])
def test_schema_and_parser_both_refuse(sel) -> None:
    assert not _VALIDATOR.is_valid(sel)
    assert not parser_accepts(sel)


def test_an_unparsable_stored_selector_admits_no_namespace() -> None:
    sel = closed_selector({"matchExpressions": [{"key": "team", "operator": "In", "values": []}]})
    assert sel is not None and sel.unreadable and "needs values" in sel.unreadable
    assert not sel.matches({"team": "red"}) and not sel.matches({}) and not sel.matches(None)
    assert "nothing" in str(sel)
    assert closed_selector(None) is None                    # absent: no restriction
    assert closed_selector({"matchLabels": {"t": "r"}}).matches({"t": "r"})
