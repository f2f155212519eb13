#!/usr/bin/env bash
# Run the checks and the test suite (as root: the tests create namespaces, veths and raw sockets).
#   bash scripts/test.sh [PYTEST ARGS]   set up what the tests need (scripts/setup-tests.sh), ruff, pytest
#   bash scripts/test.sh --clean         remove what test runs keep between runs (see below)
#
# A run leaves the host as it found it (tests/host_state.py checks links, mounts, namespaces,
# services and the session's processes). It keeps one cache, /var/lib/hsflowd-test-docker: the
# test Docker engine's images and the debootstrapped bookworm rootfs (about 700 MB), so a second
# run does not build them again. --clean removes it, and the kernel headers link that
# scripts/setup-tests.sh made for a kernel with no headers of its own.
set -euo pipefail
cd "$(dirname "$0")/.."
cache=/var/lib/hsflowd-test-docker

if [ "${1:-}" = "--clean" ]; then
  if [ -S /run/hsflowd-test-docker/docker.sock ] &&
    docker -H unix:///run/hsflowd-test-docker/docker.sock version >/dev/null 2>&1; then
    echo "test.sh --clean: a test Docker engine still answers on /run/hsflowd-test-docker/docker.sock; stop it first" >&2
    exit 1
  fi
  if [ -d "$cache" ]; then
    # what an interrupted run left mounted inside (debootstrap's /proc, the engine's data root)
    findmnt -rn -o TARGET | grep "^$cache/" | sort -ru | xargs -r -n1 umount -l 2>/dev/null || true
    rm -rf --one-file-system "$cache"
    echo "removed $cache"
  fi
  build="/lib/modules/$(uname -r)/build"
  headers=0
  bash scripts/kernel-headers.sh >/dev/null || headers=$?
  if [ $headers -eq 1 ]; then  # a link to another kernel's headers: only setup-tests.sh makes one
    rm -f "$build" "/lib/modules/$(uname -r)/source"
    rmdir --ignore-fail-on-non-empty "/lib/modules/$(uname -r)"
    echo "removed the test-only kernel headers link $build"
  fi
  exit 0
fi

[ -x .venv/bin/python ] || bash scripts/setup.sh
bash scripts/setup-tests.sh
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
