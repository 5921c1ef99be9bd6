"""webhook.py's settings and ownership rule, as pure functions (the API-server side is
test_webhook_installed.py): what registration each environment gives, and which writes of the
operator's annotations are refused to whom."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography import x509

from ovnvnet.config import ConfigError, Settings, WebhookSettings
from ovnvnet.webhook import OWNED, Refused, WebhookConfig, check_writer, owned_changes

OPERATOR = "system:serviceaccount:ovnvnet-system:ovnvnet-operator"
INSTALLED = {"OVNVNET_WEBHOOK": "true", "OVNVNET_WEBHOOK_SERVICE": "ovnvnet-system/ovnvnet-webhook",
             "POD_NAMESPACE": "ovnvnet-system", "POD_NAME": "ovnvnet-operator-abc",
             "OVNVNET_SERVICE_ACCOUNT": "ovnvnet-operator"}
NB = {"OVN_NB_DB": "tcp:127.0.0.1:6641"}
RESULT = json.dumps({"ip_address": "10.1.0.5/24", "mac_address": "0a:58:0a:01:00:05", "gateway_ip": "10.1.0.1"})


def pod(**annotations: str) -> dict:
    return {"metadata": {"name": "p", "namespace": "a", "annotations": annotations}}


def settings(env: dict) -> WebhookSettings | None:
    return Settings.from_env({**NB, **env}).webhook


def config(env: dict) -> WebhookConfig:
    return WebhookConfig.prepare(settings(env))


def test_disabled_unless_asked():
    assert settings({}) is None
    assert settings({"OVNVNET_WEBHOOK": "false"}) is None


def test_installed_registration_names_the_service_with_a_certificate_for_its_dns_name():
    cfg = config(INSTALLED)
    assert cfg.service == ("ovnvnet-system", "ovnvnet-webhook") and cfg.host is None
    assert (cfg.addr, cfg.port, cfg.configuration) == ("0.0.0.0", 9443, "ovnvnet.io")
    assert cfg.operator_users == {OPERATOR} and cfg.pod == ("ovnvnet-system", "ovnvnet-operator-abc")
    cert = x509.load_pem_x509_certificate(Path(cfg.cafile).read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert "ovnvnet-webhook.ovnvnet-system.svc" in names


def test_listening_everywhere_without_a_registration_address_is_refused():
    with pytest.raises(ConfigError, match="OVNVNET_WEBHOOK_ADDR=0.0.0.0 listens on every address"):
        settings({"OVNVNET_WEBHOOK": "true", "OVNVNET_OPERATOR_USERS": "admin"})
    cfg = config({"OVNVNET_WEBHOOK": "true", "OVNVNET_OPERATOR_USERS": "admin",
                                  "OVNVNET_WEBHOOK_HOST": "op.example"})
    assert cfg.host == "op.example" and cfg.service is None
    cfg = config({"OVNVNET_WEBHOOK": "true", "OVNVNET_OPERATOR_USERS": "admin",
                                  "OVNVNET_WEBHOOK_ADDR": "127.0.0.1"})
    assert cfg.host == "127.0.0.1"


@pytest.mark.parametrize("env, message", [
    ({"OVNVNET_WEBHOOK_SERVICE": "no-slash"}, "OVNVNET_WEBHOOK_SERVICE='no-slash' must be <namespace>/<name>"),
    ({"OVNVNET_WEBHOOK_PORT": "nine"}, "OVNVNET_WEBHOOK_PORT='nine'"),
    ({"OVNVNET_SERVICE_ACCOUNT": ""}, "needs the operator's identity"),
])
def test_bad_settings_say_which(env, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("'", ".")):
        settings({**INSTALLED, **env})


def test_explicit_users_win():
    cfg = config({**INSTALLED, "OVNVNET_OPERATOR_USERS": "admin, other"})
    assert cfg.operator_users == {"admin", "other"}


@pytest.mark.parametrize("key", OWNED)
def test_others_may_not_set_change_or_remove_an_owned_annotation(key):
    cfg = config(INSTALLED)
    user = {"username": "system:serviceaccount:a:dev"}
    with pytest.raises(Refused, match=f"annotation {key}: written only by the ovnvnet operator; "
                                      "system:serviceaccount:a:dev may not set it"):
        check_writer(cfg, user, pod(**{key: "x"}), None)
    for new, old in ((pod(**{key: "y"}), pod(**{key: "x"})), (pod(), pod(**{key: "x"})), (pod(**{key: "x"}), pod())):
        with pytest.raises(Refused, match="may not set, change or remove it"):
            check_writer(cfg, user, new, old)
    check_writer(cfg, user, pod(**{key: "x"}, note="new"), pod(**{key: "x"}))   # untouched: fine
    check_writer(cfg, {"username": OPERATOR}, pod(**{key: "y"}), pod(**{key: "x"}))  # the operator


def test_legacy_ovn_is_owned_only_as_a_result():
    request = json.dumps({"ip_address": "10.1.0.9"})
    assert owned_changes(pod(ovn=request), None) == []
    assert owned_changes(pod(ovn=RESULT), None) == ["ovn (a result)"]
    assert owned_changes(pod(ovn=request), pod(ovn=RESULT)) == ["ovn (a result)"]
    assert owned_changes(pod(ovn=RESULT), pod(ovn=RESULT)) == []


@pytest.mark.parametrize("value", ["[" * 100_000, "\udcff", "{" * 5000 + "}" * 5000, "null", "x" * 1_000_000])
def test_any_ovn_value_is_judged_without_raising(value):
    assert owned_changes(pod(ovn=value), None) == []


def test_malformed_objects_are_judged_without_raising():
    for body in ({}, {"metadata": None}, {"metadata": {"annotations": None}}, {"metadata": {"annotations": []}}):
        assert owned_changes(body, None) == []
    cfg = config(INSTALLED)
    with pytest.raises(Refused, match="an anonymous user may not set it"):
        check_writer(cfg, None, pod(ovnIfaceList="[]"), None)
