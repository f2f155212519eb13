#!/usr/bin/env bash
# Set up a Debian bookworm machine (as root) to run hsflowd-py and its collector sflowtool-py:
# the Debian packages they use (scripts/debian-packages.txt; no service is installed or
# started), the running kernel's headers for eBPF sampling when Debian has them, and a venv
# from Debian's python3 that sees Debian's python3-* libraries (the versions the deb depends on).
# The test suite needs more: scripts/setup-tests.sh, which scripts/test.sh runs.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/packages.sh

install_packages scripts/debian-packages.txt

# bcc compiles the eBPF sampler against the running kernel's headers, and only matching ones
# are used: Debian's linux-headers-<release> when the archive has the running kernel's.
kver=$(uname -r)
if [ ! -e "/lib/modules/$kver/build" ] && apt-cache show "linux-headers-$kver" >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "linux-headers-$kver"
fi
bash scripts/kernel-headers.sh || true  # says what eBPF sampling will use

if [ ! -x .venv/bin/python ]; then
  /usr/bin/python3 -m venv --system-site-packages .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
echo "setup done: $(.venv/bin/python --version), venv at .venv"
