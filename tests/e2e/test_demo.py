"""`make demo-dataplane`'s program on its own stack: it attaches the seed's pods and the dual-stack ones,
reports the ping matrix (IPv6 included) and the invalid pod's error, and a second run reuses
everything."""
from __future__ import annotations

import subprocess
import sys

import pytest

from harness.stack import REPO, Stack

pytestmark = pytest.mark.timeout(240)


def test_demo_runs_twice_and_reports(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    try:
        runs = [subprocess.run([sys.executable, "-m", "harness.demo", "--dir", str(root)],
                               capture_output=True, text=True, cwd=REPO, timeout=200) for _ in range(2)]
        for r in runs:
            assert r.returncode == 0, r.stdout + r.stderr
            out = r.stdout
            assert "pod-ovn   attached" in out and "pod-bad   ADD failed" in out
            assert "0a:00:00:00:00:15" in out and "172.16.26.3/24" in out
            # the dual-stack network: both families configured and pinged
            assert "pod-ds-one attached" in out and "pod-ds-two attached" in out
            assert "172.16.27.0/24,fd00:27::/64" in out
            assert "172.16.27.10/24,fd00:27::10/64" in out
            assert "pod-ds-one/net0 v6" in out and "gw ovn-ds-27 v6" in out
            assert 'ip_address "172.16.2526.3" is not a valid IPv4 address' in out
            assert "!" not in out.split("Ping matrix")[1].split("The invalid pod")[0]   # all as predicted
            assert f"source {root}/env" in out
        assert "up in" in runs[1].stdout and "unchanged" in runs[1].stdout
    finally:
        stack = Stack(root)
        stack.down()
        assert not stack.stack_netns()
