#!/usr/bin/env bash
# What the test suite needs on top of scripts/setup.sh (scripts/test.sh runs this first; as root):
# the packages of scripts/debian-test-packages.txt, installed with no service started, and
# kernel headers for the eBPF tests. The tests start their own dockerd, dnsmasq and Prometheus
# (own sockets, ports and folders) and stop them by pid: none of the system's services is used.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/packages.sh

install_packages scripts/debian-test-packages.txt
# Installing enabled these packages' services for the next boot (policy-rc.d only kept them
# from starting now); the tests never use them, so a package this run installed is disabled.
for p in "${NEWLY_INSTALLED[@]}"; do
  case "$p" in
    docker.io) units="docker.service docker.socket containerd.service" ;;
    dnsmasq) units="dnsmasq.service" ;;
    prometheus) units="prometheus.service" ;;
    *) continue ;;
  esac
  for unit in $units; do
    systemctl disable --now "$unit" >/dev/null 2>&1 || true
    echo "setup-tests: $unit disabled (installed for the tests, which run their own)"
  done
done

# The eBPF tests need bcc to compile the sampler. With headers for the running kernel they use
# those. Without (a kernel Debian does not ship, such as this project's 6.18 VMs), Debian's
# newest headers are linked as the running kernel's, for the tests: bcc compiles the sampler
# against them (it uses only long-stable tc/BPF interfaces) and the eBPF tests run rather than
# skip. kernel-headers.sh says so on every run; 'scripts/test.sh --clean' removes the link.
kver=$(uname -r)
if ! bash scripts/kernel-headers.sh >/dev/null; then
  hdr=$(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -n 1 || true)
  common=$(ls -d /usr/src/linux-headers-*-common 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -n "$hdr" ] && [ ! -e "/lib/modules/$kver/build" ]; then
    mkdir -p "/lib/modules/$kver"
    ln -sfn "$hdr" "/lib/modules/$kver/build"
    [ -z "$common" ] || ln -sfn "$common" "/lib/modules/$kver/source"
  fi
fi
bash scripts/kernel-headers.sh || true
