"""VirtualNetwork ``spec.multus`` (issue 14's per-network NAD opt-out): absent means true."""
from __future__ import annotations

import pytest

from ovnvnet.model.network import SpecError, parse_network_spec


def test_multus_defaults_to_true_and_round_trips():
    spec = parse_network_spec({"subnet": "10.0.0.0/24"})
    assert spec.multus is True and "multus" not in spec.to_dict()
    off = parse_network_spec({"subnet": "10.0.0.0/24", "multus": False})
    assert off.multus is False and off.to_dict()["multus"] is False
    assert parse_network_spec(off.to_dict()) == off
    assert parse_network_spec({"subnet": "10.0.0.0/24", "multus": None}).multus is True


def test_multus_must_be_a_boolean():
    with pytest.raises(SpecError, match="spec.multus must be true or false, got string"):
        parse_network_spec({"subnet": "10.0.0.0/24", "multus": "no"})
