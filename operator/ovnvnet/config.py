"""Typed operator settings, parsed once from the environment."""
from __future__ import annotations

import os
from dataclasses import dataclass


class ConfigError(ValueError):
    pass


def _float(env: dict[str, str], key: str, default: float) -> float:
    raw = env.get(key)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{key}={raw!r} is not a number") from None
    if value <= 0:
        raise ConfigError(f"{key}={raw!r} must be positive")
    return value


@dataclass(frozen=True)
class Settings:
    nb_remote: str
    """OVN Northbound DB: `tcp:H:P`, `ssl:H:P`, `unix:PATH`, or a comma-separated RAFT member list."""
    health_port: int = 8080
    sweep_interval: float = 30.0
    """Seconds between drift sweeps (orphan pods, missing/stale NB rows)."""
    retry_interval: float = 5.0
    """Seconds between retries of pods waiting for a network or a free address."""
    status_flush_delay: float = 0.2
    """Coalescing window for VirtualNetwork status writes."""
    nb_timeout: float = 30.0
    default_network: str | None = None
    ssl_key: str | None = None
    ssl_cert: str | None = None
    ssl_ca: str | None = None
    seal_key_file: str | None = None
    """File holding the key results are sealed with (model/annotation.py, kube/seal.py)."""
    seal_secret: str | None = None
    """`<namespace>/<name>` of the Secret holding the seal key (got or created) if no file is given."""

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        env = dict(os.environ if env is None else env)
        nb = env.get("OVN_NB_DB", "").strip()
        if not nb:
            raise ConfigError("OVN_NB_DB is not set: give the OVN Northbound DB, e.g. tcp:127.0.0.1:6641 "
                              "or a comma-separated RAFT member list")
        try:
            port = int(env.get("OVNVNET_HEALTH_PORT", "8080"))
        except ValueError:
            raise ConfigError(f"OVNVNET_HEALTH_PORT={env['OVNVNET_HEALTH_PORT']!r} is not a port number") from None
        return cls(
            nb_remote=nb,
            health_port=port,
            sweep_interval=_float(env, "OVNVNET_SWEEP_INTERVAL", 30.0),
            retry_interval=_float(env, "OVNVNET_RETRY_INTERVAL", 5.0),
            status_flush_delay=_float(env, "OVNVNET_STATUS_FLUSH_DELAY", 0.2),
            nb_timeout=_float(env, "OVNVNET_NB_TIMEOUT", 30.0),
            default_network=env.get("OVNVNET_DEFAULT_NETWORK") or None,
            ssl_key=env.get("OVN_NB_SSL_KEY") or None,
            ssl_cert=env.get("OVN_NB_SSL_CERT") or None,
            ssl_ca=env.get("OVN_NB_SSL_CA") or None,
            seal_key_file=env.get("OVNVNET_SEAL_KEY_FILE") or None,
            seal_secret=env.get("OVNVNET_SEAL_SECRET") or None,
        )
