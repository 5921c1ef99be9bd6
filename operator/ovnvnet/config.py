"""Typed settings, parsed once from the environment at start.

The operator reads its whole environment here, in `Settings.from_env()`, called once by
`python -m ovnvnet` (__main__.py) before anything else runs; the result is passed to what needs
it (Kopf's memo, the leader elector, the webhook). The node agent takes its settings from its
command line and asks this module only where the API server is (`KubeAccess.from_env`). No other
module of the product reads the environment, and importing a module has no side effect.

Every bad value raises `ConfigError` naming the variable and the value.
"""
from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass

TRUE = ("1", "true", "yes", "on")
FALSE = ("", "0", "false", "no", "off")
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
REPAIR_MODES = ("repair", "log")


class ConfigError(ValueError):
    pass


def _float(env: Mapping[str, str], key: str, default: float) -> float:
    raw = env.get(key)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{key}={raw!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise ConfigError(f"{key}={raw!r} must be a positive number")
    return value


def _port(env: Mapping[str, str], key: str, default: int) -> int:
    raw = env.get(key)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{key}={raw!r} is not a port number") from None
    if not 0 < value < 65536:
        raise ConfigError(f"{key}={raw!r} is not a port number (1-65535)")
    return value


def _bool(env: Mapping[str, str], key: str) -> bool:
    raw = env.get(key, "").strip().lower()
    if raw in TRUE:
        return True
    if raw in FALSE:
        return False
    raise ConfigError(f"{key}={env[key]!r} is not a boolean: use true or false")


def _str(env: Mapping[str, str], key: str) -> str | None:
    return (env.get(key) or "").strip() or None


@dataclass(frozen=True)
class KubeAccess:
    """Where the API server is: in a pod, the ServiceAccount (KUBERNETES_SERVICE_HOST/PORT and the
    mounted token, CA and namespace); otherwise a kubeconfig (KUBECONFIG, else ~/.kube/config).
    kube/connection.py turns this into credentials."""
    kubeconfig: str | None = None
    service_host: str | None = None
    service_port: int = 443
    service_account_dir: str = SERVICE_ACCOUNT_DIR

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, kubeconfig: str | None = None) -> KubeAccess:
        """`kubeconfig`, if given (the agent's --kubeconfig), wins over the environment."""
        env = os.environ if env is None else env
        return cls(
            kubeconfig=kubeconfig or _str(env, "KUBECONFIG"),
            service_host=_str(env, "KUBERNETES_SERVICE_HOST"),
            service_port=_port(env, "KUBERNETES_SERVICE_PORT", 443),
        )


@dataclass(frozen=True)
class LeaseSettings:
    """Leader election (OVNVNET_LEADER_ELECT=true); see leader.py."""
    namespace: str
    name: str = "ovnvnet-operator"
    identity: str = ""
    duration: float = 15.0
    """Seconds a Lease holds without renewal (a standby takes over after it)."""
    renew: float = 5.0
    """Seconds between renewals (less than `duration`)."""
    retry: float = 1.0
    """Seconds between a standby's attempts."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> LeaseSettings:
        duration = _float(env, "OVNVNET_LEASE_DURATION", 15.0)
        renew = _float(env, "OVNVNET_LEASE_RENEW", 5.0)
        if renew >= duration:
            raise ConfigError(f"OVNVNET_LEASE_RENEW={renew:g} must be less than "
                              f"OVNVNET_LEASE_DURATION={duration:g}: the Lease would expire between renewals")
        if duration < 1:
            raise ConfigError(f"OVNVNET_LEASE_DURATION={env['OVNVNET_LEASE_DURATION']!r} must be at least 1 "
                              "(the Lease counts whole seconds)")
        return cls(
            namespace=_str(env, "OVNVNET_NAMESPACE") or _str(env, "POD_NAMESPACE") or "default",
            name=_str(env, "OVNVNET_LEASE_NAME") or "ovnvnet-operator",
            identity=_str(env, "POD_NAME") or f"{socket.gethostname()}-{os.getpid()}",
            duration=duration,
            renew=renew,
        )


@dataclass(frozen=True)
class WebhookSettings:
    """The validating admission webhook (OVNVNET_WEBHOOK=true); webhook.py prepares its TLS files
    at start (a self-signed certificate for the Service's DNS name, or for `host`, when no cert/key
    files are given). Installed: `service` names the Service that the shipped configuration
    `configuration` points at, and the operator patches its caBundle there. Otherwise (`host`) Kopf
    registers a URL. Only `operator_users` may write the annotations the operator owns."""
    addr: str = "0.0.0.0"
    port: int = 9443
    host: str | None = None
    certfile: str | None = None
    pkeyfile: str | None = None
    cafile: str | None = None
    service: tuple[str, str] | None = None
    configuration: str = "ovnvnet.io"
    operator_users: frozenset[str] = frozenset()
    pod: tuple[str, str] | None = None
    """This replica's pod (POD_NAMESPACE, POD_NAME): labelled while it serves."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> WebhookSettings:
        addr = _str(env, "OVNVNET_WEBHOOK_ADDR") or "0.0.0.0"
        port = _port(env, "OVNVNET_WEBHOOK_PORT", 9443)
        cert, key = _str(env, "OVNVNET_WEBHOOK_CERT"), _str(env, "OVNVNET_WEBHOOK_KEY")
        if bool(cert) != bool(key):
            given, missing = ("OVNVNET_WEBHOOK_CERT", "OVNVNET_WEBHOOK_KEY") if cert else (
                "OVNVNET_WEBHOOK_KEY", "OVNVNET_WEBHOOK_CERT")
            raise ConfigError(f"{given} is set but {missing} is not: give both, or neither for a "
                              "self-signed certificate")
        service = _namespaced(env, "OVNVNET_WEBHOOK_SERVICE")
        host = _str(env, "OVNVNET_WEBHOOK_HOST")
        if service is None and host is None:
            if addr in ("0.0.0.0", "::"):
                raise ConfigError(
                    f"OVNVNET_WEBHOOK_ADDR={addr} listens on every address, so there is no address to "
                    "register: set OVNVNET_WEBHOOK_SERVICE=<namespace>/<name> (installed: the "
                    "manifests' Service) or OVNVNET_WEBHOOK_HOST (a URL registration)")
            host = addr
        namespace, pod = _str(env, "POD_NAMESPACE"), _str(env, "POD_NAME")
        return cls(
            addr=addr,
            port=port,
            host=None if service else host,
            certfile=cert,
            pkeyfile=key,
            cafile=_str(env, "OVNVNET_WEBHOOK_CA") or cert,
            service=service,
            configuration=_str(env, "OVNVNET_WEBHOOK_CONFIGURATION") or "ovnvnet.io",
            operator_users=_operator_users(env),
            pod=(namespace, pod) if namespace and pod else None,
        )


def _operator_users(env: Mapping[str, str]) -> frozenset[str]:
    explicit = [u.strip() for u in (env.get("OVNVNET_OPERATOR_USERS") or "").split(",") if u.strip()]
    if explicit:
        return frozenset(explicit)
    namespace, account = _str(env, "POD_NAMESPACE"), _str(env, "OVNVNET_SERVICE_ACCOUNT")
    if namespace and account:
        return frozenset({f"system:serviceaccount:{namespace}:{account}"})
    raise ConfigError("OVNVNET_WEBHOOK=true needs the operator's identity to tell its own writes from "
                      "others': set OVNVNET_OPERATOR_USERS (usernames) or POD_NAMESPACE and "
                      "OVNVNET_SERVICE_ACCOUNT (the manifests set both from the pod)")


@dataclass(frozen=True)
class Settings:
    nb_remote: str
    """OVN Northbound DB: `tcp:H:P`, `ssl:H:P`, `unix:PATH`, or a comma-separated RAFT member list."""
    health_port: int = 8080
    sweep_interval: float = 30.0
    claim_retention: float = 300.0   # seconds a scaled-down StatefulSet ordinal's claims are kept
    """Seconds between drift sweeps (orphan pods, missing/stale NB rows)."""
    retry_interval: float = 5.0
    """Seconds between retries of pods waiting for a network or a free address."""
    status_flush_delay: float = 0.2
    """Coalescing window for VirtualNetwork status writes."""
    nb_timeout: float = 30.0
    log_level: str = "INFO"
    """OVNVNET_LOG_LEVEL: the level of the `ovnvnet` loggers (DEBUG, INFO, WARNING, ERROR)."""
    default_network: str | None = None
    ssl_key: str | None = None
    ssl_cert: str | None = None
    ssl_ca: str | None = None
    kube: KubeAccess = KubeAccess()
    lease: LeaseSettings | None = None
    """None: no leader election (one replica)."""
    webhook: WebhookSettings | None = None
    """None: no admission webhook."""
    repair: str = "repair"
    """OVNVNET_REPAIR: `repair` fixes NB drift, `log` only reports it."""
    seal_key_file: str | None = None
    """OVNVNET_SEAL_KEY_FILE: the file holding the key that seals results."""
    seal_secret: tuple[str, str] | None = None
    """OVNVNET_SEAL_SECRET=<namespace>/<name>: the Secret to get or create the seal key in."""
    nad_namespace: str | None = None
    """OVNVNET_NAD_NAMESPACE: where the operator publishes one NetworkAttachmentDefinition per
    VirtualNetwork (named after it); every `k8s.v1.cni.cncf.io/networks` element referring to
    this namespace is an ovnvnet request. Default: the operator's namespace (OVNVNET_NAMESPACE,
    POD_NAMESPACE); `none`: no NADs published, the networks annotation is not read."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        nb = (env.get("OVN_NB_DB") or "").strip()
        if not nb:
            raise ConfigError("OVN_NB_DB is not set: give the OVN Northbound DB, e.g. tcp:127.0.0.1:6641 "
                              "or a comma-separated RAFT member list")
        repair = (env.get("OVNVNET_REPAIR") or "repair").strip().lower()
        if repair not in REPAIR_MODES:
            raise ConfigError(f"OVNVNET_REPAIR={env['OVNVNET_REPAIR']!r} is not one of {', '.join(REPAIR_MODES)}")
        return cls(
            nb_remote=nb,
            health_port=_port(env, "OVNVNET_HEALTH_PORT", 8080),
            sweep_interval=_float(env, "OVNVNET_SWEEP_INTERVAL", 30.0),
            claim_retention=_float(env, "OVNVNET_CLAIM_RETENTION", 300.0),
            retry_interval=_float(env, "OVNVNET_RETRY_INTERVAL", 5.0),
            status_flush_delay=_float(env, "OVNVNET_STATUS_FLUSH_DELAY", 0.2),
            nb_timeout=_float(env, "OVNVNET_NB_TIMEOUT", 30.0),
            log_level=_log_level(env),
            default_network=_str(env, "OVNVNET_DEFAULT_NETWORK"),
            ssl_key=_str(env, "OVN_NB_SSL_KEY"),
            ssl_cert=_str(env, "OVN_NB_SSL_CERT"),
            ssl_ca=_str(env, "OVN_NB_SSL_CA"),
            kube=KubeAccess.from_env(env),
            lease=LeaseSettings.from_env(env) if _bool(env, "OVNVNET_LEADER_ELECT") else None,
            webhook=WebhookSettings.from_env(env) if _bool(env, "OVNVNET_WEBHOOK") else None,
            repair=repair,
            seal_key_file=seal_key_file(env),
            seal_secret=_namespaced(env, "OVNVNET_SEAL_SECRET"),
            nad_namespace=_nad_namespace(env),
        )


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _log_level(env: Mapping[str, str]) -> str:
    level = (_str(env, "OVNVNET_LOG_LEVEL") or "INFO").upper()
    if level not in LOG_LEVELS:
        raise ConfigError(f"OVNVNET_LOG_LEVEL={env['OVNVNET_LOG_LEVEL']!r} is not one of {', '.join(LOG_LEVELS)}")
    return level


def _nad_namespace(env: Mapping[str, str]) -> str | None:
    raw = _str(env, "OVNVNET_NAD_NAMESPACE")
    if raw is not None and raw.lower() == "none":
        return None
    value = raw or _str(env, "OVNVNET_NAMESPACE") or _str(env, "POD_NAMESPACE")
    if value is not None and not re.fullmatch(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?", value):
        raise ConfigError(f"OVNVNET_NAD_NAMESPACE={value!r} is not a namespace name (or `none`)")
    return value


def seal_key_file(env: Mapping[str, str] | None = None) -> str | None:
    """OVNVNET_SEAL_KEY_FILE: for the operator (Settings) and the node agent, which has no other
    setting from the environment."""
    return _str(os.environ if env is None else env, "OVNVNET_SEAL_KEY_FILE")


def _namespaced(env: Mapping[str, str], key: str) -> tuple[str, str] | None:
    """An optional `<namespace>/<name>` reference (a Service, a Secret)."""
    raw = _str(env, key)
    if raw is None:
        return None
    namespace, slash, name = raw.partition("/")
    if not (slash and namespace and name) or "/" in name:
        raise ConfigError(f"{key}={raw!r} must be <namespace>/<name>")
    return namespace, name


# ---------------------------------------------------------------------- process-level markers
REEXEC_ENV = "OVNVNET_REEXECS"
"""``<count>:<unix time of the last re-execution>``: written before the operator re-executes
itself in place (``__main__._reexec_delay``), kept across ``execv`` with the environment."""

REBUILD_PAUSE_ENV = "OVNVNET_TEST_REBUILD_PAUSE"
"""A test hook (tests/integration/test_recovery_per_network.py): ``network=path`` holds that
network's pass of ``recovery.finish_rebuild`` until ``path`` exists. Unset in any real deployment."""


def reexec_marker() -> str:
    return os.environ.get(REEXEC_ENV, "0:0")


def set_reexec_marker(value: str) -> None:
    os.environ[REEXEC_ENV] = value


def rebuild_pause() -> tuple[str, str]:
    """(network, path) of :data:`REBUILD_PAUSE_ENV`; ("", "") when unset."""
    name, _, path = os.environ.get(REBUILD_PAUSE_ENV, "").partition("=")
    return name, path
