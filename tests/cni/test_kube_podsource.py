"""The production PodSource: a list+watch cache of one node's pods, against a real API server."""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import uuid
from pathlib import Path

import pytest

from harness.stack import KUBE_BIN, Stack
from ovnvnet.cni.pods import KubePodSource
from ovnvnet.kube.connection import from_kubeconfig
from tests.prerequisites import require, stack_missing

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(180),
]


@pytest.fixture(scope="module")
def kube():
    require("the pod cache against a real API server", stack_missing(KUBE_BIN))
    root = Path(tempfile.mkdtemp(prefix="ovnvcni-kube-", dir="/tmp"))
    stack = Stack(root)
    try:
        stack.up(operator=False, controller_manager=False)
        from kubernetes import client, config

        api = client.CoreV1Api(config.new_client_from_config(config_file=str(stack.kubeconfig)))
        yield stack, api
    finally:
        stack.down(remove=not os.environ.get("OVNVNET_KEEP_STACK"))


def _pod(name: str, node: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "annotations": {"ovnNetwork": "[]"}},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}}


async def test_watch_cache_wakes_waiter_on_annotation(kube):
    stack, api = kube
    node = "node-" + uuid.uuid4().hex[:6]
    mine, other = "p-" + uuid.uuid4().hex[:6], "q-" + uuid.uuid4().hex[:6]
    await asyncio.to_thread(api.create_namespaced_pod, "default", _pod(mine, node))
    await asyncio.to_thread(api.create_namespaced_pod, "default", _pod(other, "elsewhere"))
    source = KubePodSource(node, from_kubeconfig(str(stack.kubeconfig)))
    await source.start()
    try:
        pod, ok = await source.wait_for("default", mine, lambda p: p is not None, 20)
        assert ok and pod.node == node and pod.uid
        waiter = asyncio.create_task(source.wait_for(
            "default", mine, lambda p: p is not None and "ovnIfaceList" in p.annotations, 20))
        await asyncio.sleep(0.5)
        assert not waiter.done()
        await asyncio.to_thread(api.patch_namespaced_pod, mine, "default",
                                {"metadata": {"annotations": {"ovnIfaceList": "[]"}}})
        pod, ok = await asyncio.wait_for(waiter, 20)
        assert ok and pod.annotations["ovnIfaceList"] == "[]"
        # only this node's pods are cached
        assert source.get("default", other) is None
        await asyncio.to_thread(api.delete_namespaced_pod, mine, "default",
                                grace_period_seconds=0)
        _, gone = await source.wait_for("default", mine, lambda p: p is None, 20)
        assert gone
    finally:
        await source.stop()
        for name in (mine, other):
            try:
                await asyncio.to_thread(api.delete_namespaced_pod, name, "default",
                                        grace_period_seconds=0)
            except Exception:  # noqa: BLE001 - already gone
                pass


async def test_watch_resumes_after_each_watch_ends(kube, caplog):
    """Watches end (server timeout, connection reset): the cache resumes from the last
    resourceVersion without a relist and misses no change."""
    stack, api = kube
    caplog.set_level(logging.INFO, logger="ovnvnet.cni.pods")
    node = "node-" + uuid.uuid4().hex[:6]
    name = "r-" + uuid.uuid4().hex[:6]
    source = KubePodSource(node, from_kubeconfig(str(stack.kubeconfig)), watch_timeout=1)
    await source.start()
    try:
        assert (await source.wait_for("default", name, lambda p: p is None and source.synced, 20))[1]
        await asyncio.sleep(3.5)                          # several watches have ended by now
        await asyncio.to_thread(api.create_namespaced_pod, "default", _pod(name, node))
        pod, ok = await source.wait_for("default", name, lambda p: p is not None, 20)
        assert ok and pod.node == node
        await asyncio.sleep(2.5)
        await asyncio.to_thread(api.patch_namespaced_pod, name, "default",
                                {"metadata": {"annotations": {"ovnIfaceList": "[]"}}})
        pod, ok = await source.wait_for(
            "default", name, lambda p: p is not None and "ovnIfaceList" in p.annotations, 20)
        assert ok
        assert sum("synced" in r.getMessage() for r in caplog.records) == 1   # listed once only
    finally:
        await source.stop()
        try:
            await asyncio.to_thread(api.delete_namespaced_pod, name, "default", grace_period_seconds=0)
        except Exception:  # noqa: BLE001 - already gone
            pass
