#!/usr/bin/env bash
# Regenerate the image's lock files from pyproject.toml (runtime) and requirements-build.in (the
# tools that build sdists), every pin with its sha256 hashes. Run after changing dependencies;
# tests/install/test_lock.py fails until the lock matches pyproject.toml again.
#   bash hack/lock.sh            (uses pip-tools from a throwaway venv)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
python3 -m venv "$tools"
"$tools/bin/pip" install -q pip-tools
cd "$here"
opts=(--quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links)
"$tools/bin/pip-compile" "${opts[@]}" --output-file requirements.lock pyproject.toml
"$tools/bin/pip-compile" "${opts[@]}" --output-file requirements-build.lock requirements-build.in
