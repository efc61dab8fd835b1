#!/usr/bin/env bash
# Installs what the tests need (system packages as root, the project with its test extras),
# runs the linters, then the whole suite inside a fresh network namespace in which only
# loopback exists, so no test can send a packet anywhere but 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
# tests/deploy/test_k8s_lifecycle.py: `promtool check rules` / `test rules` on the storage alerts
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
command -v unshare >/dev/null 2>&1 || need_apt+=(util-linux)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
if [ ${#need_apt[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
# tests/deploy/ renders deploy/overlays/ with kustomize 5: the standalone `kustomize`, or the one
# built into kubectl (1.27 and later: `kubectl kustomize`). No Debian package ships either
# (bookworm's kubernetes-client is kubectl 1.20, whose kustomize 2 cannot read the overlays), so
# neither is installed here: without one the overlay checks skip, and under CI they fail.
if ! command -v kustomize >/dev/null 2>&1 && ! command -v kubectl >/dev/null 2>&1; then
  echo "warning: neither kustomize nor kubectl is installed: the overlay checks of" \
    "tests/deploy/ will skip (and fail under CI)" >&2
fi

python3 -m pip install -q --disable-pip-version-check -e '.[test]'

echo "== ruff"; python3 -m ruff check .
echo "== mypy"; python3 -m mypy
echo "== import layers"; lint-imports --no-cache

echo "== pytest (loopback-only network namespace)"
exec unshare --net -- sh -c 'ip link set lo up && exec python3 -m pytest "$@"' pytest "$@"
