#!/usr/bin/env bash
# Set up a fresh Debian bookworm machine (as root) for running and testing hsflowd-py:
# Debian packages, kernel headers for bcc, and a venv from Debian's python3 that sees
# Debian's python3-* libraries (the versions the deb depends on).
set -euo pipefail
cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive
packages=$(grep -v '^#' scripts/debian-packages.txt | tr '\n' ' ')
if ! status=$(dpkg-query -W -f='${Status}\n' $packages 2>/dev/null) || grep -qv '^install ok installed$' <<<"$status"; then
  apt-get update -q
  apt-get install -y -q --no-install-recommends $packages
fi

# bcc compiles against the running kernel's headers; Debian ships them for its own kernel
# only, so point the running kernel's module folder at them.
kver=$(uname -r)
hdr=$(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -n 1 || true)
common=$(ls -d /usr/src/linux-headers-*-common 2>/dev/null | sort -V | tail -n 1 || true)
if [ -n "$hdr" ] && [ ! -e "/lib/modules/$kver/build" ]; then
  mkdir -p "/lib/modules/$kver"
  ln -sfn "$hdr" "/lib/modules/$kver/build"
  [ -n "$common" ] && ln -sfn "$common" "/lib/modules/$kver/source"
fi

if [ ! -x .venv/bin/python ]; then
  /usr/bin/python3 -m venv --system-site-packages .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
echo "setup done: $(.venv/bin/python --version), venv at .venv"
