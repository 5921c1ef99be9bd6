import pytest

from ovnvnet.model.selector import SelectorError, parse_selector


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
