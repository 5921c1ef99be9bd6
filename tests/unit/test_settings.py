"""Settings (config.py): every variable, its default, and a ConfigError naming the variable for a
bad value; the product reads the environment nowhere else, and importing it has no side effect."""
from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ovnvnet.config import ConfigError, KubeAccess, LeaseSettings, Settings, WebhookSettings, seal_key_file

PRODUCT = Path(__file__).resolve().parents[2] / "operator" / "ovnvnet"
NB = {"OVN_NB_DB": "tcp:127.0.0.1:6641"}


def test_defaults():
    s = Settings.from_env(NB)
    assert s == Settings(nb_remote="tcp:127.0.0.1:6641")
    assert (s.health_port, s.sweep_interval, s.retry_interval, s.status_flush_delay, s.nb_timeout) == (
        8080, 30.0, 5.0, 0.2, 30.0)
    assert (s.default_network, s.ssl_key, s.ssl_cert, s.ssl_ca) == (None, None, None, None)
    assert s.kube == KubeAccess(kubeconfig=None, service_host=None, service_port=443)
    assert s.lease is None and s.webhook is None
    assert (s.repair, s.seal_key_file, s.seal_secret) == ("repair", None, None)


def test_every_variable():
    env = {
        "OVN_NB_DB": " ssl:10.0.0.1:6641,ssl:10.0.0.2:6641 ",
        "OVN_NB_SSL_KEY": "/k", "OVN_NB_SSL_CERT": "/c", "OVN_NB_SSL_CA": "/ca",
        "OVNVNET_HEALTH_PORT": "9090", "OVNVNET_SWEEP_INTERVAL": "60", "OVNVNET_RETRY_INTERVAL": "2.5",
        "OVNVNET_STATUS_FLUSH_DELAY": "0.05", "OVNVNET_NB_TIMEOUT": "10",
        "OVNVNET_DEFAULT_NETWORK": "ovn-default",
        "KUBECONFIG": "/etc/kube/config", "KUBERNETES_SERVICE_HOST": "10.96.0.1",
        "KUBERNETES_SERVICE_PORT": "6443",
        "OVNVNET_LEADER_ELECT": "true", "OVNVNET_NAMESPACE": "ovnvnet-system", "POD_NAMESPACE": "other",
        "OVNVNET_LEASE_NAME": "my-lease", "POD_NAME": "op-0", "OVNVNET_LEASE_DURATION": "20",
        "OVNVNET_LEASE_RENEW": "4",
        "OVNVNET_WEBHOOK": "yes", "OVNVNET_WEBHOOK_ADDR": "10.1.1.1", "OVNVNET_WEBHOOK_PORT": "8443",
        "OVNVNET_WEBHOOK_HOST": "ovnvnet.svc", "OVNVNET_WEBHOOK_CERT": "/tls.crt",
        "OVNVNET_WEBHOOK_KEY": "/tls.key", "OVNVNET_SERVICE_ACCOUNT": "ovnvnet-operator",
        "OVNVNET_REPAIR": "LOG",
        "OVNVNET_SEAL_KEY_FILE": "/etc/ovnvnet/seal/key", "OVNVNET_SEAL_SECRET": "ovnvnet-system/ovnvnet-seal",
    }
    s = Settings.from_env(env)
    assert s == Settings(
        nb_remote="ssl:10.0.0.1:6641,ssl:10.0.0.2:6641", health_port=9090, sweep_interval=60.0,
        retry_interval=2.5, status_flush_delay=0.05, nb_timeout=10.0, default_network="ovn-default",
        ssl_key="/k", ssl_cert="/c", ssl_ca="/ca",
        kube=KubeAccess(kubeconfig="/etc/kube/config", service_host="10.96.0.1", service_port=6443),
        lease=LeaseSettings(namespace="ovnvnet-system", name="my-lease", identity="op-0", duration=20.0, renew=4.0),
        webhook=WebhookSettings(addr="10.1.1.1", port=8443, host="ovnvnet.svc", certfile="/tls.crt",
                                pkeyfile="/tls.key", cafile="/tls.crt",
                                operator_users=frozenset({"system:serviceaccount:other:ovnvnet-operator"}),
                                pod=("other", "op-0")),
        repair="log", seal_key_file="/etc/ovnvnet/seal/key", seal_secret=("ovnvnet-system", "ovnvnet-seal"),
        nad_namespace="ovnvnet-system",   # OVNVNET_NAMESPACE, as the lease
    )


def test_nad_namespace():
    assert Settings.from_env(NB).nad_namespace is None
    assert Settings.from_env({**NB, "POD_NAMESPACE": "ns1"}).nad_namespace == "ns1"
    assert Settings.from_env({**NB, "POD_NAMESPACE": "ns1", "OVNVNET_NAD_NAMESPACE": "nets"}).nad_namespace == "nets"
    assert Settings.from_env({**NB, "POD_NAMESPACE": "ns1", "OVNVNET_NAD_NAMESPACE": "None"}).nad_namespace is None
    with pytest.raises(ConfigError, match="OVNVNET_NAD_NAMESPACE='Nets!' is not a namespace name"):
        Settings.from_env({**NB, "OVNVNET_NAD_NAMESPACE": "Nets!"})


def test_lease_and_webhook_defaults():
    s = Settings.from_env({**NB, "OVNVNET_LEADER_ELECT": "1", "OVNVNET_WEBHOOK": "True",
                           "OVNVNET_WEBHOOK_SERVICE": "ovnvnet-system/ovnvnet-webhook",
                           "OVNVNET_OPERATOR_USERS": "admin"})
    assert s.lease == LeaseSettings(namespace="default", name="ovnvnet-operator",
                                    identity=s.lease.identity, duration=15.0, renew=5.0, retry=1.0)
    assert s.lease.identity.startswith(socket.gethostname() + "-")
    assert s.webhook == WebhookSettings(addr="0.0.0.0", port=9443, host=None, certfile=None, pkeyfile=None,
                                        service=("ovnvnet-system", "ovnvnet-webhook"),
                                        operator_users=frozenset({"admin"}))
    # the pod's namespace when OVNVNET_NAMESPACE is not set; the listen address is the host by default
    s = Settings.from_env({**NB, "OVNVNET_LEADER_ELECT": "true", "POD_NAMESPACE": "ns1",
                           "OVNVNET_WEBHOOK": "true", "OVNVNET_WEBHOOK_ADDR": "127.0.0.9",
                           "OVNVNET_OPERATOR_USERS": "admin"})
    assert s.lease.namespace == "ns1" and s.webhook.host == "127.0.0.9"
    # disabled explicitly
    s = Settings.from_env({**NB, "OVNVNET_LEADER_ELECT": "false", "OVNVNET_WEBHOOK": "0"})
    assert s.lease is None and s.webhook is None


@pytest.mark.parametrize("env, variable", [
    ({}, "OVN_NB_DB"),
    ({"OVN_NB_DB": "  "}, "OVN_NB_DB"),
    ({"OVNVNET_HEALTH_PORT": "http"}, "OVNVNET_HEALTH_PORT"),
    ({"OVNVNET_HEALTH_PORT": "70000"}, "OVNVNET_HEALTH_PORT"),
    ({"OVNVNET_SWEEP_INTERVAL": "soon"}, "OVNVNET_SWEEP_INTERVAL"),
    ({"OVNVNET_SWEEP_INTERVAL": "0"}, "OVNVNET_SWEEP_INTERVAL"),
    ({"OVNVNET_RETRY_INTERVAL": "-1"}, "OVNVNET_RETRY_INTERVAL"),
    ({"OVNVNET_STATUS_FLUSH_DELAY": "nan"}, "OVNVNET_STATUS_FLUSH_DELAY"),
    ({"OVNVNET_NB_TIMEOUT": "inf"}, "OVNVNET_NB_TIMEOUT"),
    ({"KUBERNETES_SERVICE_PORT": "https"}, "KUBERNETES_SERVICE_PORT"),
    ({"OVNVNET_LEADER_ELECT": "maybe"}, "OVNVNET_LEADER_ELECT"),
    ({"OVNVNET_LEADER_ELECT": "true", "OVNVNET_LEASE_DURATION": "x"}, "OVNVNET_LEASE_DURATION"),
    ({"OVNVNET_LEADER_ELECT": "true", "OVNVNET_LEASE_DURATION": "0.5", "OVNVNET_LEASE_RENEW": "0.1"},
     "OVNVNET_LEASE_DURATION"),
    ({"OVNVNET_LEADER_ELECT": "true", "OVNVNET_LEASE_RENEW": "-5"}, "OVNVNET_LEASE_RENEW"),
    ({"OVNVNET_LEADER_ELECT": "true", "OVNVNET_LEASE_RENEW": "15"}, "OVNVNET_LEASE_RENEW"),
    ({"OVNVNET_WEBHOOK": "enabled"}, "OVNVNET_WEBHOOK"),
    ({"OVNVNET_WEBHOOK": "true", "OVNVNET_WEBHOOK_PORT": "0"}, "OVNVNET_WEBHOOK_PORT"),
    ({"OVNVNET_WEBHOOK": "true", "OVNVNET_WEBHOOK_CERT": "/tls.crt"}, "OVNVNET_WEBHOOK_KEY"),
    ({"OVNVNET_WEBHOOK": "true", "OVNVNET_WEBHOOK_KEY": "/tls.key"}, "OVNVNET_WEBHOOK_CERT"),
    ({"OVNVNET_WEBHOOK": "true", "OVNVNET_OPERATOR_USERS": "admin"}, "OVNVNET_WEBHOOK_ADDR=0.0.0.0"),
    ({"OVNVNET_WEBHOOK": "true", "OVNVNET_WEBHOOK_HOST": "h"}, "OVNVNET_OPERATOR_USERS"),
    ({"OVNVNET_WEBHOOK": "true", "OVNVNET_WEBHOOK_SERVICE": "svc"}, "OVNVNET_WEBHOOK_SERVICE"),
    ({"OVNVNET_REPAIR": "fix"}, "OVNVNET_REPAIR"),
    ({"OVNVNET_SEAL_SECRET": "ovnvnet-seal"}, "OVNVNET_SEAL_SECRET"),
    ({"OVNVNET_SEAL_SECRET": "a/b/c"}, "OVNVNET_SEAL_SECRET"),
    ({"OVNVNET_SEAL_SECRET": "/name"}, "OVNVNET_SEAL_SECRET"),
])
def test_bad_value_names_the_variable(env, variable):
    full = env if "OVN_NB_DB" in env or not env else {**NB, **env}
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env(full)


def test_bad_value_message_quotes_the_value():
    with pytest.raises(ConfigError) as err:
        Settings.from_env({**NB, "OVNVNET_SWEEP_INTERVAL": "30s"})
    assert str(err.value) == "OVNVNET_SWEEP_INTERVAL='30s' is not a number"


def test_agent_seal_key_file():
    assert seal_key_file({"OVNVNET_SEAL_KEY_FILE": " /etc/ovnvnet/seal/key "}) == "/etc/ovnvnet/seal/key"
    assert seal_key_file({}) is None


def test_agent_kube_access_flag_wins():
    access = KubeAccess.from_env({"KUBECONFIG": "/env/config", "KUBERNETES_SERVICE_HOST": "fd00::1"},
                                 kubeconfig="/flag/config")
    assert access == KubeAccess(kubeconfig="/flag/config", service_host="fd00::1", service_port=443)


def test_no_environment_reads_outside_config():
    pattern = re.compile(r"\bos\.environ\b|\bgetenv\b|\benviron\[")
    offenders = []
    for path in PRODUCT.rglob("*.py"):
        if path.name == "config.py" and path.parent == PRODUCT or "testing" in path.relative_to(PRODUCT).parts:
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if pattern.search(code):
                offenders.append(f"{path.relative_to(PRODUCT)}:{n}: {line.strip()}")
    assert not offenders, "the environment is read outside config.py:\n" + "\n".join(offenders)


def test_import_has_no_side_effect(tmp_path):
    """With the webhook enabled in the environment, importing the operator mints no certificate and
    registers no admission handler: that happens at start, from the settings."""
    code = ("import kopf, ovnvnet.main, ovnvnet.__main__\n"
            "r = kopf.get_default_registry()\n"
            "assert not r._webhooks.get_all_handlers(), r._webhooks.get_all_handlers()\n"
            "from kopf._core.intents.causes import Activity\n"
            "logins = [h.id for h in r._activities.get_handlers(activity=Activity.AUTHENTICATION)]\n"
            "assert logins == ['ovnvnet'], logins  # one login: ours, none of Kopf's fallbacks\n"
            "ovnvnet.main.enable_admission()\n"
            "assert len(r._webhooks.get_all_handlers()) == 3\n")
    env = {"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path), "OVNVNET_WEBHOOK": "true",
           "OVN_NB_DB": "tcp:127.0.0.1:1", "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert list(tmp_path.iterdir()) == []


def test_bad_setting_stops_the_operator_with_the_variable(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "OVN_NB_DB": "tcp:127.0.0.1:1",
           "OVNVNET_LEASE_RENEW": "20", "OVNVNET_LEADER_ELECT": "true"}
    out = subprocess.run([sys.executable, "-m", "ovnvnet"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "OVNVNET_LEASE_RENEW=20 must be less than OVNVNET_LEASE_DURATION=15" in out.stderr


@pytest.mark.parametrize(("raw", "level"), [(None, "INFO"), ("debug", "DEBUG"), (" WARNING ", "WARNING")])
def test_log_level(raw, level):
    env = dict(NB) if raw is None else {**NB, "OVNVNET_LOG_LEVEL": raw}
    assert Settings.from_env(env).log_level == level


def test_bad_log_level_names_the_variable():
    with pytest.raises(ConfigError, match=r"OVNVNET_LOG_LEVEL='LOUD' is not one of DEBUG, INFO, WARNING, ERROR"):
        Settings.from_env({**NB, "OVNVNET_LOG_LEVEL": "LOUD"})


def test_log_level_applies_to_every_ovnvnet_logger():
    """configure_logging (the operator's start) sets the `ovnvnet` loggers' level; Kopf's own
    handler-success lines stay at WARNING."""
    import logging

    from ovnvnet.__main__ import configure_logging
    logger, root = logging.getLogger("ovnvnet"), logging.getLogger()
    before, root_before = logger.level, (root.level, list(root.handlers))
    try:
        configure_logging(Settings.from_env({**NB, "OVNVNET_LOG_LEVEL": "DEBUG"}))
        assert logging.getLogger("ovnvnet.reconcile.pod").isEnabledFor(logging.DEBUG)
        configure_logging(Settings.from_env({**NB, "OVNVNET_LOG_LEVEL": "ERROR"}))
        assert not logging.getLogger("ovnvnet.reconcile.pod").isEnabledFor(logging.WARNING)
        assert logging.getLogger("kopf.objects").level == logging.WARNING
    finally:   # kopf.configure adds a handler to the root logger: leave the test process as it was
        logger.setLevel(before)
        root.setLevel(root_before[0])
        root.handlers[:] = root_before[1]
