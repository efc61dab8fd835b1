#!/usr/bin/env bash
# Installs what the tests need (system packages as root, the project with its test extras),
# runs the linters, then the whole suite inside a fresh network namespace in which only
# loopback exists, so no test can send a packet anywhere but 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
command -v unshare >/dev/null 2>&1 || need_apt+=(util-linux)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
if [ ${#need_apt[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

python3 -m pip install -q --disable-pip-version-check -e '.[test]'

echo "== ruff"; python3 -m ruff check .
echo "== mypy"; python3 -m mypy
echo "== import layers"; lint-imports --no-cache

echo "== pytest (loopback-only network namespace)"
exec unshare --net -- sh -c 'ip link set lo up && exec python3 -m pytest "$@"' pytest "$@"
