"""OVS side of a pod interface: a Port/Interface on br-int carrying the OVN binding.

ovn-controller binds an OVS Interface to the logical switch port named by its
``external_ids:iface-id`` and sets ``external_ids:ovn-installed=true`` once the port's flows are
in place. Our own keys (pod identity, sandbox = the full CNI container id, interface) let DEL
find every port of a container without the pod object, by exact match on the container id.

These keys are also the agent's memory of the sandboxes it plumbed (cni/hotplug.py): each port
records the sandbox's container id, netns path, pod identity, interface and ``ovnvnet.io/entry``,
a digest of the ``ovnIfaceList`` entry it was plumbed from. They are written in the same
transaction as the port, live in the OVS database (on disk, so they outlive an agent or OVS
restart), and go with the port at DEL: there is no second record that could disagree.

All methods block (ovsdbapp commits wait for the server): call them with ``asyncio.to_thread``.
One logical operation is one transaction, always with ``check_error=True``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ovsdbapp.backend.ovs_idl import connection
from ovsdbapp.schema.open_vswitch import impl_idl

from ..model.annotation import InterfaceResult
from ..model.names import (
    INTERFACE_KEY,
    OWNER_KEY,
    OWNER_VALUE,
    POD_NAME_KEY,
    POD_NAMESPACE_KEY,
    POD_UID_KEY,
)

__all__ = ["ENTRY_KEY", "SANDBOX_KEY", "OvsPorts", "PortBinding", "entry_digest"]

SANDBOX_KEY = "ovnvnet.io/sandbox"  # the CNI container id
NETNS_KEY = "ovnvnet.io/netns"
ENTRY_KEY = "ovnvnet.io/entry"  # digest of the ovnIfaceList entry the port was plumbed from
ATTACHMENT_KEY = "ovnvnet.io/attachment"  # the network configuration's name, in one-interface-per-call mode
IFACE_ID = "iface-id"
log = logging.getLogger("ovnvnet.cni.ovs")
OVN_INSTALLED = "ovn-installed"
INSTALLED_RECHECK = 0.5  # seconds: wait_installed's re-check without any Interface change


def entry_digest(iface: InterfaceResult) -> str:
    """A digest of everything the agent plumbs from one interface's result (name, network,
    addresses, MAC, MTU, routes, default gateway): equal digests, same plumbing."""
    text = json.dumps(dataclasses.asdict(iface), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class PortBinding:
    """Identity written into the OVS Interface's external_ids."""

    port_name: str  # OVS port/interface name (the host veth)
    lsp_name: str  # OVN logical switch port
    mac: str
    container_id: str
    netns: str
    pod_namespace: str
    pod_name: str
    pod_uid: str
    interface: str
    attachment: str = ""
    """The attachment (network configuration name) that plumbed only this interface; empty
    when one call plumbed every interface of the pod."""
    entry: str = ""
    """:func:`entry_digest` of the result entry plumbed (the hot-plug converge compares it)."""

    def external_ids(self) -> dict[str, str]:
        extra = {ATTACHMENT_KEY: self.attachment} if self.attachment else {}
        if self.entry:
            extra[ENTRY_KEY] = self.entry
        return {**extra,
            IFACE_ID: self.lsp_name,
            "attached-mac": self.mac,
            "iface-status": "active",
            OWNER_KEY: OWNER_VALUE,
            SANDBOX_KEY: self.container_id,
            NETNS_KEY: self.netns,
            POD_NAMESPACE_KEY: self.pod_namespace,
            POD_NAME_KEY: self.pod_name,
            POD_UID_KEY: self.pod_uid,
            INTERFACE_KEY: self.interface,
        }


class _InterfaceWatchingIdl(connection.OvsdbIdl):
    """The replica, counting every change of an Interface row as the IDL thread applies it, so
    :meth:`OvsPorts.wait_installed` wakes on ovn-controller's ``ovn-installed`` write instead of
    polling."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.interface_changes = threading.Condition()
        self.interface_generation = 0

    def notify(self, event: Any, row: Any, updates: Any = None) -> None:
        if getattr(getattr(row, "_table", None), "name", None) == "Interface":
            with self.interface_changes:
                self.interface_generation += 1
                self.interface_changes.notify_all()
        super().notify(event, row, updates)


class OvsPorts:
    """br-int ports of pod interfaces, through ovsdbapp on the local Open_vSwitch DB."""

    def __init__(self, remote: str, bridge: str = "br-int", timeout: float = 30) -> None:
        self.bridge = bridge
        idl = _InterfaceWatchingIdl.from_server(remote, "Open_vSwitch")
        self._idl = idl
        self._conn = connection.Connection(idl=idl, timeout=timeout)
        # ovsdbapp keeps the connection at class level: a private subclass per instance lets
        # several agents (tests) live in one process without sharing a connection.
        api_cls = type("OvnvnetOvsIdl", (impl_idl.OvsdbIdl,), {"_ovsdb_connection": None})
        self.api = api_cls(self._conn)

    def close(self) -> None:
        self._conn.stop()

    def ensure_port(self, binding: PortBinding, recreate: bool) -> None:
        """Port+Interface with our external_ids; ``recreate`` drops a stale binding first.

        The caller holds the link of this name (its alias says so): a port of that name recorded
        for another container is a leftover whose link is gone, and is replaced."""
        self.ensure_ports([(binding, recreate)])

    def ensure_ports(self, bindings: list[tuple[PortBinding, bool]]) -> None:
        """:meth:`ensure_port` for several ports in one transaction (one round trip to
        ovsdb-server). A stale port is deleted first, in a transaction of its own, only when one
        of that name exists in the replica (a fresh ADD has none: no round trip for it)."""
        stale = []
        for binding, recreate in bindings:
            ids = self.interface_ids(binding.port_name)
            previous = (ids or {}).get(SANDBOX_KEY)
            if previous and previous != binding.container_id:
                log.warning("OVS port %s was recorded for container %s, whose link is gone; "
                            "replacing it for %s", binding.port_name, previous, binding.container_id)
                recreate = True
            if recreate and (ids is not None or self._port_exists(binding.port_name)):
                stale.append(binding.port_name)
        if stale:
            self.delete_ports(stale)
        with self.api.transaction(check_error=True) as txn:
            for binding, _ in bindings:
                txn.add(self.api.add_port(self.bridge, binding.port_name, may_exist=True))
                # may_exist returns an existing row untouched: set the columns explicitly
                txn.add(
                    self.api.db_set(
                        "Interface", binding.port_name, ("external_ids", binding.external_ids())
                    )
                )

    def _port_exists(self, port_name: str) -> bool:
        return bool(self.api.db_find_rows("Port", ("name", "=", port_name)).execute(
            check_error=True))

    def interface_ids(self, port_name: str) -> Mapping[str, str] | None:
        rows = self.api.db_find_rows("Interface", ("name", "=", port_name)).execute(
            check_error=True
        )
        if not rows:
            return None
        return dict(rows[0].external_ids)

    def interface_ofport(self, port_name: str) -> int | None:
        rows = self.api.db_find_rows("Interface", ("name", "=", port_name)).execute(
            check_error=True
        )
        if not rows:
            return None
        ofport: Any = rows[0].ofport
        return ofport[0] if ofport else None

    def wait_installed(self, port_names: list[str], timeout: float) -> list[str]:
        """Wait for ovn-installed=true on every port; returns those still not installed.

        Woken by the replica's own update (ovn-controller's write reaches us as an Interface
        change, :class:`_InterfaceWatchingIdl`), re-checked at least every
        :data:`INSTALLED_RECHECK` seconds whatever happens."""
        deadline = time.monotonic() + timeout
        pending = list(port_names)
        changes = self._idl.interface_changes
        while True:
            with changes:
                seen = self._idl.interface_generation
            pending = [
                p for p in pending
                if (self.interface_ids(p) or {}).get(OVN_INSTALLED) != "true"
            ]
            remaining = deadline - time.monotonic()
            if not pending or remaining <= 0:
                return pending
            with changes:  # a change since `seen` was read: re-check at once
                if self._idl.interface_generation == seen:
                    changes.wait(min(remaining, INSTALLED_RECHECK))

    def ports_of_container(self, container_id: str) -> list[tuple[str, Mapping[str, str]]]:
        rows = self.api.db_find_rows(
            "Interface", ("external_ids", "=", {SANDBOX_KEY: container_id})  # subset match
        ).execute(check_error=True)
        return [(row.name, dict(row.external_ids)) for row in rows]

    def delete_ports(self, port_names: list[str]) -> None:
        if not port_names:
            return
        with self.api.transaction(check_error=True) as txn:
            for name in port_names:
                txn.add(self.api.del_port(name, if_exists=True))

    def owned_ports(self, match: Mapping[str, str] | None = None
                    ) -> list[tuple[str, Mapping[str, str]]]:
        """Every ovnvnet pod port (name, external_ids), optionally only those whose external_ids
        hold ``match`` (e.g. the pod's namespace and name). Reads the local replica."""
        want = {OWNER_KEY: OWNER_VALUE, **(match or {})}
        rows = self.api.db_find_rows("Interface", ("external_ids", "=", want)).execute(
            check_error=True
        )
        return [(row.name, dict(row.external_ids)) for row in rows
                if SANDBOX_KEY in row.external_ids]
