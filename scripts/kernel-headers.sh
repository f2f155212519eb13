#!/usr/bin/env bash
# Say which kernel headers bcc will compile the eBPF sampler against, and whether they are the
# running kernel's. Exit status 0 when they match, 1 when they do not, 2 when there are none.
kver=$(uname -r)
build="/lib/modules/$kver/build"
if [ ! -e "$build" ]; then
  echo "kernel headers: none for the running kernel $kver ($build is missing): the agent samples with classic BPF (pcap blocks with sampler = auto fall back to it; those with sampler = ebpf are not sampled, and the log says why)"
  exit 2
fi
target=$(readlink -f "$build")
headers=$(basename "$target")
headers=${headers#linux-headers-}
if [ "$headers" = "$kver" ] || [ "$target" = "$(readlink -f "/usr/src/linux-headers-$kver" 2>/dev/null)" ] || [ ! -L "$build" ]; then
  echo "kernel headers: $build matches the running kernel $kver: eBPF sampling available"
  exit 0
fi
echo "kernel headers: $build -> $target is $headers, NOT the running kernel $kver (linked for the test suite by scripts/setup-tests.sh; bcc compiles the sampler against them, and so would an agent run on this machine; 'bash scripts/test.sh --clean' removes the link)"
exit 1
