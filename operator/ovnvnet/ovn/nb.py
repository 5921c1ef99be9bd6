"""OVN Northbound client: ensure/delete/list the rows ovnvnet owns, through ovsdbapp.

Every method is blocking (ovsdbapp commits on its own connection thread and waits); async callers
run them with `asyncio.to_thread`. One logical operation is one transaction with check_error=True.
Ownership lives in `external_ids` (`ovnvnet.io/owner=ovnvnet`); rows without it are never changed:
an "ensure" that meets a foreign row of the same name fails with NotOwnedError instead.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ovsdbapp.backend.ovs_idl import command as cmd
from ovsdbapp.backend.ovs_idl import connection, idlutils
from ovsdbapp.schema.ovn_northbound import impl_idl

from ovnvnet import metrics
from ovnvnet.model import names
from ovnvnet.model.names import NETWORK_KEY, OWNER_KEY, OWNER_VALUE, ROUTER_NAME

log = logging.getLogger(__name__)


COLUMNS = {
    "Logical_Switch": ("name", "ports", "external_ids", "other_config"),
    "Logical_Switch_Port": ("name", "type", "options", "addresses", "port_security", "external_ids", "up"),
    "Logical_Router": ("name", "ports", "external_ids"),
    "Logical_Router_Port": ("name", "mac", "networks", "external_ids"),
}
"""What the replica monitors: only the columns ovnvnet reads or writes (those the server's schema
has). Updates of other columns (e.g. those ovn-controller or northd keep) are not sent to it.

A new pod port is inserted with ``up`` false, the value northd gives an unbound port: otherwise
northd writes it into every new port itself, an NB transaction of its own after each of ours,
and every NB change costs northd a full recompute of the logical flows (OVN 23.03 has no
incremental processing of switch ports): two recomputes per batch of ports instead of one."""
TABLES = tuple(COLUMNS)


class NotOwnedError(RuntimeError):
    """A row with the wanted name exists but ovnvnet does not own it."""


def _owned(row: Any) -> bool:
    return getattr(row, "external_ids", {}).get(OWNER_KEY) == OWNER_VALUE


def _owner_ids(**extra: str) -> dict[str, str]:
    return {OWNER_KEY: OWNER_VALUE, **extra}


@dataclass(frozen=True)
class SwitchSpec:
    name: str
    other_config: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RouterPortSpec:
    network: str
    lrp_name: str
    lsp_name: str
    mac: str
    cidrs: tuple[str, ...]  # gateway/prefix of each family of the network, IPv4 first

    @property
    def networks(self) -> tuple[str, ...]:
        """``cidrs`` as the NB reads them back (a set column: sorted)."""
        return tuple(sorted(self.cidrs))


@dataclass(frozen=True)
class PortSpec:
    """A pod interface's port. ``ip`` is its address, or its addresses (one per family, IPv4
    first) separated by a space: ``addresses`` and ``port_security`` are "MAC ipv4 ipv6"."""

    name: str
    switch: str
    mac: str
    ip: str
    external_ids: tuple[tuple[str, str], ...]

    @property
    def address(self) -> str:
        return f"{self.mac} {self.ip}"

    @property
    def ips(self) -> tuple[str, ...]:
        return tuple(self.ip.split())


@dataclass
class NbState:
    """The rows ovnvnet owns, as read from the replica."""
    switches: dict[str, dict[str, str]] = field(default_factory=dict)        # name -> external_ids
    router_ports: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)  # lrp -> (mac, networks)
    switch_router_ports: dict[str, str] = field(default_factory=dict)        # lsp -> switch
    ports: dict[str, PortSpec] = field(default_factory=dict)                 # pod ports, name -> spec
    router: bool = False


# ---------------------------------------------------------------------------- commands
def _set(row: Any, column: str, value: Any) -> None:
    """Write a column only when it differs (a freshly inserted row has no value to read yet)."""
    try:
        current = getattr(row, column)
    except AttributeError:
        current = None
    if isinstance(value, dict):
        same = current is not None and dict(current) == value
    elif isinstance(value, list):
        same = current is not None and list(current) == value
    else:
        same = current == value
    if not same:
        setattr(row, column, value)


class _Cmd(cmd.BaseCommand):
    def _row(self, table: str, name: str) -> Any:
        if table in ("Logical_Switch", "Logical_Router"):
            return idlutils.row_by_value(self.api.idl, table, "name", name, None)
        return self.api.lookup(table, name, default=None)

    def _owned_child(self, txn: Any, table: str, name: str, parent: Any, what: str) -> Any:
        """The port `name` in `parent.ports`: inserted if missing, linked if unlinked; a row of
        that name that ovnvnet does not own is refused."""
        row = self._row(table, name)
        if row is None:
            row = txn.insert(self.api.tables[table])
            row.name = name
            parent.addvalue("ports", row)
        elif not _owned(row):
            raise NotOwnedError(f"{what} {name} exists and is not owned by ovnvnet")
        elif row not in parent.ports:
            parent.addvalue("ports", row)
        return row


class EnsureSwitch(_Cmd):
    def __init__(self, api: Any, spec: SwitchSpec) -> None:
        super().__init__(api)
        self.spec = spec

    def run_idl(self, txn: Any) -> None:
        sw = self._row("Logical_Switch", self.spec.name)
        if sw is None:
            sw = txn.insert(self.api.tables["Logical_Switch"])
            sw.name = self.spec.name
        elif not _owned(sw):
            raise NotOwnedError(f"logical switch {self.spec.name} exists and is not owned by ovnvnet")
        ids = _owner_ids(**{NETWORK_KEY: self.spec.name})
        _set(sw, 'external_ids', ids)
        _set(sw, 'other_config', self.spec.other_config)
        self.result = sw.uuid


class EnsureRouterWithPort(_Cmd):
    """The shared router, its port for one network, and the router-type switch port joining them."""

    def __init__(self, api: Any, spec: RouterPortSpec) -> None:
        super().__init__(api)
        self.spec = spec

    def run_idl(self, txn: Any) -> None:
        s = self.spec
        lr = self._row("Logical_Router", ROUTER_NAME)
        if lr is None:
            lr = txn.insert(self.api.tables["Logical_Router"])
            lr.name = ROUTER_NAME
            lr.external_ids = _owner_ids()
        elif not _owned(lr):
            raise NotOwnedError(f"logical router {ROUTER_NAME} exists and is not owned by ovnvnet")
        lrp = self._owned_child(txn, "Logical_Router_Port", s.lrp_name, lr, "logical router port")
        ids = _owner_ids(**{NETWORK_KEY: s.network})
        _set(lrp, 'mac', s.mac)
        _set(lrp, 'networks', list(s.networks))
        _set(lrp, 'external_ids', ids)
        sw = self._row("Logical_Switch", s.network)
        if sw is None:
            raise RuntimeError(f"logical switch {s.network} is missing")
        lsp = self._owned_child(txn, "Logical_Switch_Port", s.lsp_name, sw, "logical switch port")
        _set(lsp, 'type', "router")
        _set(lsp, 'options', {"router-port": s.lrp_name})
        _set(lsp, 'addresses', ["router"])
        _set(lsp, 'external_ids', ids)


class EnsurePorts(_Cmd):
    def __init__(self, api: Any, ports: Iterable[PortSpec]) -> None:
        super().__init__(api)
        self.ports = list(ports)

    def run_idl(self, txn: Any) -> None:
        switches: dict[str, Any] = {}
        members: dict[str, set[Any]] = {}   # switch -> uuids of its ports, built once (no O(n) scan per port)
        for p in self.ports:
            sw = switches.get(p.switch)
            if sw is None:
                sw = self._row("Logical_Switch", p.switch)
                if sw is None:
                    raise RuntimeError(f"logical switch {p.switch} is missing")
                switches[p.switch] = sw
            lsp = self._row("Logical_Switch_Port", p.name)
            if lsp is None:
                lsp = txn.insert(self.api.tables["Logical_Switch_Port"])
                lsp.name = p.name
                if "up" in self.api.tables["Logical_Switch_Port"].columns:
                    lsp.up = [False]   # as northd would set it (see COLUMNS): nothing left for it to write
                sw.addvalue("ports", lsp)
            elif not _owned(lsp):
                raise NotOwnedError(f"logical switch port {p.name} exists and is not owned by ovnvnet")
            else:
                if p.switch not in members:
                    members[p.switch] = {r.uuid for r in sw.ports}
                if lsp.uuid not in members[p.switch]:
                    # owned port on another switch (stale): move it
                    for other in self.api.tables["Logical_Switch"].rows.values():
                        if other is not sw and lsp in other.ports:
                            other.delvalue("ports", lsp)
                    sw.addvalue("ports", lsp)
                    members[p.switch].add(lsp.uuid)
            want_ids = dict(p.external_ids)
            _set(lsp, 'addresses', [p.address])
            _set(lsp, 'port_security', [p.address])
            _set(lsp, 'external_ids', want_ids)


class DeleteOwned(_Cmd):
    """Delete owned switch ports (pod or router-type), router ports or switches, by name."""

    def __init__(self, api: Any, *, ports: Iterable[str] = (), router_ports: Iterable[str] = (),
                 switches: Iterable[str] = ()) -> None:
        super().__init__(api)
        self.ports, self.router_ports, self.switches = list(ports), list(router_ports), list(switches)

    def run_idl(self, txn: Any) -> None:
        for name in self.ports:
            lsp = self._row("Logical_Switch_Port", name)
            if lsp is None or not _owned(lsp):
                continue
            # our ports name their switch: unlink there (a mutation, no scan of its ports);
            # a port whose switch is unknown is looked for everywhere
            home = self._row("Logical_Switch", dict(lsp.external_ids).get(NETWORK_KEY, "")) \
                if lsp.type != "router" else None
            switches = [home] if home is not None else list(self.api.tables["Logical_Switch"].rows.values())
            for sw in switches:
                if home is not None or lsp in sw.ports:
                    sw.delvalue("ports", lsp)
            lsp.delete()
        for name in self.router_ports:
            lrp = self._row("Logical_Router_Port", name)
            if lrp is None or not _owned(lrp):
                continue
            for lr in self.api.tables["Logical_Router"].rows.values():
                if lrp in lr.ports:
                    lr.delvalue("ports", lrp)
            lrp.delete()
        for name in self.switches:
            sw = self._row("Logical_Switch", name)
            if sw is None or not _owned(sw):
                continue
            sw.delete()


class ReadOwned(_Cmd):
    READ_ONLY = True

    def run_idl(self, txn: Any) -> None:
        n = names
        st = NbState()
        for sw in self.api.tables["Logical_Switch"].rows.values():
            if not _owned(sw):
                continue
            sw_name = sw.name
            st.switches[sw_name] = dict(sw.external_ids)
            for lsp in sw.ports:
                # each column read converts the OVSDB datum again: read each one once
                ids = lsp.external_ids
                if ids.get(OWNER_KEY) != OWNER_VALUE:
                    continue
                name = lsp.name
                if lsp.type == "router":
                    st.switch_router_ports[name] = sw_name
                    continue
                addr = (list(lsp.addresses) or [""])[0].split()
                if len(addr) < 2:
                    addr = ["", ""]
                st.ports[name] = PortSpec(name, sw_name, addr[0], " ".join(addr[1:]), tuple(sorted(ids.items())))
        for lr in self.api.tables["Logical_Router"].rows.values():
            if lr.name == n.ROUTER_NAME and _owned(lr):
                st.router = True
                for lrp in lr.ports:
                    if _owned(lrp):
                        st.router_ports[lrp.name] = (lrp.mac, tuple(sorted(lrp.networks)))
        self.result = st


# ---------------------------------------------------------------------------- client
class _NbApi(impl_idl.OvnNbApiIdlImpl):
    # ovsdbapp's Backend keeps the connection at class level: shadow it so that each client
    # (and each test) owns its connection.
    _ovsdb_connection = None


class NbClient:
    def __init__(self, remote: str, *, timeout: float = 30.0, ssl_key: str | None = None,
                 ssl_cert: str | None = None, ssl_ca: str | None = None):
        self.remote = remote
        self.timeout = timeout
        self._ssl = (ssl_key, ssl_cert, ssl_ca)
        self.api: _NbApi | None = None
        self._lock = threading.Lock()

    def connect(self) -> None:
        """Blocking; raises ConnectionError when no member of `remote` answers."""
        key, cert, ca = self._ssl
        if key and cert and ca:
            import ovs.stream
            ovs.stream.Stream.ssl_set_private_key_file(key)
            ovs.stream.Stream.ssl_set_certificate_file(cert)
            ovs.stream.Stream.ssl_set_ca_cert_file(ca)
        try:
            # only the tables ovnvnet reads or writes: a smaller replica syncs faster
            helper = idlutils.get_schema_helper(self.remote, "OVN_Northbound")
            for table, columns in COLUMNS.items():
                have = helper.schema_json["tables"][table]["columns"]
                helper.register_columns(table, [c for c in columns if c in have])
            idl = connection.OvsdbIdl(self.remote, helper)
        except Exception as exc:  # ovsdbapp raises a bare Exception when unreachable
            raise ConnectionError(f"cannot reach OVN NB at {self.remote}: {exc}") from exc
        conn = connection.Connection(idl=idl, timeout=self.timeout)
        api_cls = type("NbApi", (_NbApi,), {"_ovsdb_connection": None})
        self.api = api_cls(conn)

    def close(self) -> None:
        if self.api is not None:
            try:
                self.api.ovsdb_connection.stop()
            except Exception:
                log.debug("NB connection stop failed", exc_info=True)
            self.api = None

    def _commit(self, *commands: cmd.BaseCommand) -> None:
        assert self.api is not None, "NbClient.connect() first"
        metrics.NB_TRANSACTIONS.inc()
        with self.api.transaction(check_error=True) as txn:
            for c in commands:
                txn.add(c)

    # -------------------------------------------------------------- operations
    def ensure_network(self, switch: SwitchSpec, router_port: RouterPortSpec | None) -> None:
        """The switch, and its router port when routed (an unrouted network loses its router port)."""
        if router_port is not None:
            self._commit(EnsureSwitch(self.api, switch), EnsureRouterWithPort(self.api, router_port))
        else:
            self._commit(EnsureSwitch(self.api, switch), DeleteOwned(
                self.api, ports=[names.switch_router_port_name(switch.name)],
                router_ports=[names.router_port_name(switch.name)]))

    def delete_network(self, name: str, lrp_name: str, lsp_name: str) -> None:
        self._commit(DeleteOwned(self.api, ports=[lsp_name], router_ports=[lrp_name], switches=[name]))

    def ensure_ports(self, ports: Iterable[PortSpec]) -> None:
        ports = list(ports)
        if ports:
            self._commit(EnsurePorts(self.api, ports))

    def delete_ports(self, names: Iterable[str]) -> None:
        names = list(names)
        if names:
            self._commit(DeleteOwned(self.api, ports=names))

    def apply(self, *, ensure_networks: Iterable[tuple[SwitchSpec, RouterPortSpec | None]] = (),
              ensure_ports: Iterable[PortSpec] = (), delete_ports: Iterable[str] = (),
              delete_router_ports: Iterable[str] = (), delete_switches: Iterable[str] = ()) -> None:
        """Apply a whole repair plan in one transaction."""
        cmds: list[cmd.BaseCommand] = []
        for sw, rp in ensure_networks:
            cmds.append(EnsureSwitch(self.api, sw))
            if rp is not None:
                cmds.append(EnsureRouterWithPort(self.api, rp))
        ports = list(ensure_ports)
        if ports:
            cmds.append(EnsurePorts(self.api, ports))
        dp, drp, ds = list(delete_ports), list(delete_router_ports), list(delete_switches)
        if dp or drp or ds:
            cmds.append(DeleteOwned(self.api, ports=dp, router_ports=drp, switches=ds))
        if cmds:
            self._commit(*cmds)

    def read_owned(self) -> NbState:
        assert self.api is not None
        result: NbState = ReadOwned(self.api).execute(check_error=True)
        return result

    def connected(self) -> bool:
        return self.api is not None and self.api.idl._session.is_connected()
