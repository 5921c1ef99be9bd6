"""manifests/ renders with Debian's kubectl 1.20, every object passes the real API server's
validation (server-side dry run) for the base and the example overlay, the CRD is structural, and
what the manifests name (config keys, agent flags, probe paths, the shim path) exists in the code."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import yaml

from .conftest import NAMESPACE, OVERLAYS, REPO, find, kustomize

pytestmark = pytest.mark.timeout(300)

OPERATOR_RULES = [
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "patch"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    {"apiGroups": ["ovnvnet.io"], "resources": ["virtualnetworks"], "verbs": ["get", "list", "watch", "patch"]},
    {"apiGroups": ["ovnvnet.io"], "resources": ["virtualnetworks/status"], "verbs": ["patch"]},
    {"apiGroups": ["ovnvnet.io"], "resources": ["ipblocks"], "verbs": ["list", "create", "patch"]},
    {"apiGroups": ["ovnvnet.io"], "resources": ["ipclaims"], "verbs": ["get", "list", "watch", "create", "delete"]},
    {"apiGroups": ["ovnvnet.io"], "resources": ["ipclaims/status"], "verbs": ["patch"]},
    {"apiGroups": ["apps"], "resources": ["statefulsets"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list"]},
    {"apiGroups": ["admissionregistration.k8s.io"], "resources": ["validatingwebhookconfigurations"],
     "resourceNames": ["ovnvnet.io"], "verbs": ["get", "patch"]},
    {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"], "verbs": ["list", "watch"]},
]
SEAL_RULES = [
    {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["ovnvnet-seal"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
]
AGENT_RULES = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch", "patch"]},  # hot-plug
               {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]}]


def containers(obj: dict) -> list[dict]:
    spec = obj["spec"]["template"]["spec"]
    return spec.get("initContainers", []) + spec["containers"]


def test_base_installs_every_piece(rendered):
    kinds = {(o["kind"], o["metadata"]["name"]) for o in rendered["base"]}
    assert kinds == {
        ("Namespace", NAMESPACE),
        ("CustomResourceDefinition", "virtualnetworks.ovnvnet.io"),
        ("CustomResourceDefinition", "ipblocks.ovnvnet.io"),
        ("CustomResourceDefinition", "ipclaims.ovnvnet.io"),
        ("ServiceAccount", "ovnvnet-operator"), ("ServiceAccount", "ovnvnet-agent"),
        ("ClusterRole", "ovnvnet-operator"), ("ClusterRole", "ovnvnet-agent"),
        ("ClusterRoleBinding", "ovnvnet-operator"), ("ClusterRoleBinding", "ovnvnet-agent"),
        ("Role", "ovnvnet-operator-leader"), ("RoleBinding", "ovnvnet-operator-leader"),
        ("Role", "ovnvnet-operator-seal"), ("RoleBinding", "ovnvnet-operator-seal"),
        ("Role", "ovnvnet-operator-nads"), ("RoleBinding", "ovnvnet-operator-nads"),
        ("ConfigMap", "ovnvnet-config"), ("ConfigMap", "ovnvnet-cni"),
        ("Service", "ovnvnet-operator"), ("Deployment", "ovnvnet-operator"),
        ("Service", "ovnvnet-webhook"), ("ValidatingWebhookConfiguration", "ovnvnet.io"),
        ("DaemonSet", "ovnvnet-agent"), ("NetworkAttachmentDefinition", "ovn-network"),
    }
    # the namespace and the CRD come first (kustomize orders them), so one apply works
    assert [o["kind"] for o in rendered["base"][:2]] == ["Namespace", "CustomResourceDefinition"]


def test_crd_is_crds_directory_not_a_copy(rendered):
    source = yaml.safe_load((REPO / "crds" / "virtualnetworks.ovnvnet.io.yaml").read_text())
    crd = find(rendered["base"], "CustomResourceDefinition", "virtualnetworks.ovnvnet.io")
    assert crd["spec"] == source["spec"]
    assert not list((REPO / "manifests").rglob("*virtualnetworks*")), "the CRD must not be copied"


def test_rbac_is_exactly_what_the_code_uses(rendered):
    roles = {o["metadata"]["name"]: o for o in rendered["base"] if o["kind"] in ("ClusterRole", "Role")}
    assert set(roles) == {"ovnvnet-operator", "ovnvnet-agent", "ovnvnet-operator-leader", "ovnvnet-operator-seal",
                          "ovnvnet-operator-nads"}
    leader = roles.pop("ovnvnet-operator-leader")
    assert leader["kind"] == "Role" and leader["metadata"]["namespace"] == NAMESPACE
    assert leader["rules"] == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                                "verbs": ["get", "create", "update"]}]
    seal = roles.pop("ovnvnet-operator-seal")
    assert seal["kind"] == "Role" and seal["metadata"]["namespace"] == NAMESPACE
    assert seal["rules"] == SEAL_RULES
    nads = roles.pop("ovnvnet-operator-nads")   # the NADs it publishes, in its own namespace only
    assert nads["kind"] == "Role" and nads["metadata"]["namespace"] == NAMESPACE
    assert nads["rules"] == [{"apiGroups": ["k8s.cni.cncf.io"], "resources": ["network-attachment-definitions"],
                              "verbs": ["get", "list", "create", "patch", "delete"]}]
    for binding in (o for o in rendered["base"] if o["kind"] == "RoleBinding"):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "ovnvnet-operator", "namespace": NAMESPACE}]
    assert roles["ovnvnet-operator"]["rules"] == OPERATOR_RULES
    assert roles["ovnvnet-agent"]["rules"] == AGENT_RULES
    for role in roles.values():
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], (role["metadata"]["name"], rule)
    for binding in (o for o in rendered["base"] if o["kind"] == "ClusterRoleBinding"):
        name = binding["metadata"]["name"]
        assert binding["roleRef"]["name"] == name
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": name, "namespace": NAMESPACE}]
    deploy = find(rendered["base"], "Deployment", "ovnvnet-operator")
    daemon = find(rendered["base"], "DaemonSet", "ovnvnet-agent")
    assert deploy["spec"]["template"]["spec"]["serviceAccountName"] == "ovnvnet-operator"
    assert daemon["spec"]["template"]["spec"]["serviceAccountName"] == "ovnvnet-agent"


def test_operator_pod_is_non_root_with_probes_and_limits(rendered):
    deploy = find(rendered["base"], "Deployment", "ovnvnet-operator")
    # two replicas with leader election, as tests/integration/test_replicas.py proves safe
    assert deploy["spec"]["replicas"] == 2 and deploy["spec"]["strategy"]["type"] == "RollingUpdate"
    env = {e["name"]: e for e in deploy["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["OVNVNET_LEADER_ELECT"]["value"] == "true" and "POD_NAME" in env
    pod = deploy["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (c,) = pod["containers"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert set(c["resources"]) == {"requests", "limits"}
    port = {p["name"]: p["containerPort"] for p in c["ports"]}["health"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["OVNVNET_HEALTH_PORT"] == str(port)
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    nb_tls = next(v for v in pod["volumes"] if v["name"] == "nb-tls")
    assert nb_tls["secret"]["optional"] is True


def test_agent_pod_has_what_it_needs_and_no_more(rendered):
    daemon = find(rendered["base"], "DaemonSet", "ovnvnet-agent")
    pod = daemon["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    (agent,) = pod["containers"]
    mounts = {m["mountPath"]: m for m in agent["volumeMounts"]}
    assert {"/var/run/ovnvnet", "/var/run/openvswitch", "/var/run/netns", "/etc/ovnvnet/seal"} <= set(mounts)
    assert mounts["/var/run/netns"]["mountPropagation"] == "HostToContainer"
    hostpaths = {v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    assert {"/opt/cni/bin", "/etc/cni/net.d", "/var/run/openvswitch", "/var/run/netns"} <= hostpaths
    for c in containers(daemon):
        assert set(c["resources"]) == {"requests", "limits"}


def test_seal_key_reaches_both_workloads(rendered):
    """The operator gets or creates Secret ovnvnet-seal in its namespace (OVNVNET_SEAL_SECRET); the
    agent reads the same Secret's `key` from a mount (OVNVNET_SEAL_KEY_FILE), with no Secret RBAC."""
    deploy = find(rendered["base"], "Deployment", "ovnvnet-operator")
    env = {e["name"]: e for e in deploy["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["OVNVNET_SEAL_SECRET"]["value"] == "$(POD_NAMESPACE)/ovnvnet-seal"
    assert list(env).index("POD_NAMESPACE") < list(env).index("OVNVNET_SEAL_SECRET")  # $(VAR) needs it first
    daemon = find(rendered["base"], "DaemonSet", "ovnvnet-agent")
    pod = daemon["spec"]["template"]["spec"]
    (agent,) = pod["containers"]
    key_file = {e["name"]: e.get("value") for e in agent["env"]}["OVNVNET_SEAL_KEY_FILE"]
    mount = next(m for m in agent["volumeMounts"] if key_file.startswith(m["mountPath"] + "/"))
    assert mount["readOnly"] is True and key_file == mount["mountPath"] + "/key"
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == "ovnvnet-seal" and not volume["secret"].get("optional")
    assert volume["secret"]["defaultMode"] == 0o400


def test_agent_command_line_matches_the_agent(rendered):
    """Every --flag the DaemonSet passes is one `python -m ovnvnet.cni.agent` accepts."""
    daemon = find(rendered["base"], "DaemonSet", "ovnvnet-agent")
    (agent,) = daemon["spec"]["template"]["spec"]["containers"]
    assert agent["command"][:3] == ["python", "-m", "ovnvnet.cni.agent"]
    helptext = subprocess.run([sys.executable, "-m", "ovnvnet.cni.agent", "--help"],
                              capture_output=True, text=True, check=True).stdout
    for arg in agent["command"][3:]:
        flag = arg.split("=", 1)[0]
        assert flag in helptext, flag
        for var in re.findall(r"\$\((\w+)\)", arg):  # every $(VAR) is defined for the container
            config = find(rendered["base"], "ConfigMap", "ovnvnet-config")["data"]
            assert var in config or var in {e["name"] for e in agent["env"]}, var


def test_config_keys_are_read_by_the_code(rendered):
    config = find(rendered["base"], "ConfigMap", "ovnvnet-config")["data"]
    settings_src = (REPO / "operator" / "ovnvnet" / "config.py").read_text()
    daemon_text = json.dumps(find(rendered["base"], "DaemonSet", "ovnvnet-agent"))
    for key in config:
        if key.startswith(("OVN_NB", "OVNVNET_")):
            assert f'"{key}"' in settings_src, f"{key} is not read by ovnvnet.config"
        else:
            assert f"$({key})" in daemon_text or f"${key}" in daemon_text, f"{key} is used by nothing"
    assert config["INSTALL_MULTUS_CONF"] == "false"


def test_multus_pieces(rendered):
    nad = find(rendered["base"], "NetworkAttachmentDefinition", "ovn-network")
    assert nad["apiVersion"] == "k8s.cni.cncf.io/v1"
    assert json.loads(nad["spec"]["config"])["type"] == "ovn-k8s-cni-overlay"
    conf = json.loads(find(rendered["base"], "ConfigMap", "ovnvnet-cni")["data"]["00-multus.conf"])
    assert conf["type"] == "multus"
    (default,) = conf["delegates"]
    assert default["type"] == "flannel" and default["masterplugin"] is True


def test_shim_path_is_where_the_image_puts_it(rendered):
    daemon = find(rendered["base"], "DaemonSet", "ovnvnet-agent")
    (init,) = daemon["spec"]["template"]["spec"]["initContainers"]
    script = init["command"][-1]
    dockerfile = (REPO / "Dockerfile").read_text()
    shim = re.search(r"cp (/opt/ovnvnet/bin/ovn-k8s-cni-overlay) ", script).group(1)
    assert re.search(rf"^COPY --from=build \S+ {re.escape(shim)}$", dockerfile, re.M)


def test_example_overlay_changes_image_and_nb(rendered):
    for name, image in (("base", "ovnvnet:0.1.0"), ("example", "registry.example.com/ovnvnet:0.1.0")):
        for kind, obj in (("Deployment", "ovnvnet-operator"), ("DaemonSet", "ovnvnet-agent")):
            for c in containers(find(rendered[name], kind, obj)):
                assert c["image"] == image, (name, obj, c["name"])
    nb = find(rendered["example"], "ConfigMap", "ovnvnet-config")["data"]["OVN_NB_DB"]
    assert len(nb.split(",")) == 3 and all(m.startswith("tcp:") for m in nb.split(","))
    base_cfg = find(rendered["base"], "ConfigMap", "ovnvnet-config")["data"]
    example_cfg = find(rendered["example"], "ConfigMap", "ovnvnet-config")["data"]
    assert set(base_cfg) == set(example_cfg)  # a strategic merge: every other key kept


# ---------------------------------------------------------------------------- real API server
@pytest.mark.integration
@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_server_side_dry_run(stack, overlay):
    """The API server validates every object (schemas, the DaemonSet's pod template...)."""
    # namespaced objects need their namespace to exist, even in a dry run
    stack.kubectl("create", "namespace", NAMESPACE, check=False)
    out = stack.kubectl("apply", "--dry-run=server", "-f", "-", input=kustomize(OVERLAYS[overlay]),
                        check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("(server dry run)") == 24, out.stdout


@pytest.mark.integration
def test_crds_are_structural_and_established(stack):
    out = stack.kubectl("apply", "-f", "-", input=kustomize(OVERLAYS["base"]), check=False)
    assert out.returncode == 0, out.stderr
    crd = json.loads(stack.kubectl("get", "crd", "virtualnetworks.ovnvnet.io", "-o", "json").stdout)
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions.get("Established") == "True"
    assert conditions.get("NonStructuralSchema", "False") == "False", crd["status"]["conditions"]
    # structural: every level says its type (1.20 reports a violation only after the fact)
    def walk(schema: dict, path: str) -> None:
        if schema.get("x-kubernetes-preserve-unknown-fields") and "type" not in schema:
            return
        assert "type" in schema, f"{path} has no type"
        for name, sub in schema.get("properties", {}).items():
            walk(sub, f"{path}.{name}")
        if isinstance(schema.get("items"), dict):
            walk(schema["items"], f"{path}[]")
        if isinstance(schema.get("additionalProperties"), dict):
            walk(schema["additionalProperties"], f"{path}{{}}")
    for version in crd["spec"]["versions"]:
        walk(version["schema"]["openAPIV3Schema"], version["name"])


@pytest.mark.integration
def test_chart_with_every_knob_server_side_dry_run(stack):
    """The Helm chart rendered with every knob set (tests/install/chart-values-all.yaml, see
    test_chart.py) passes the real API server's validation too, as the base does above."""
    from harness import chart
    for ns in (NAMESPACE, "nads", "team-a"):
        stack.kubectl("create", "namespace", ns, check=False)
    rendered = chart.template(values=(REPO / "tests" / "install" / "chart-values-all.yaml",)).stdout
    out = stack.kubectl("apply", "--dry-run=server", "-f", "-", input=rendered, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("(server dry run)") == len([d for d in yaml.safe_load_all(rendered) if d]), out.stdout
