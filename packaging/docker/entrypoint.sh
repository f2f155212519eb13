#!/bin/sh
# The container image's entrypoint: writes hsflowd.conf from the environment, as the established
# sflow/host-sflow image does, then runs the agent in the foreground as PID 1 (SIGTERM stops it,
# SIGHUP re-reads the config). A config file mounted at $HSFLOWD_CONFIG is used as it is.
#
#   COLLECTOR      collector addresses, space-separated              (127.0.0.1)
#   PORT           their UDP port                                    (6343)
#   SAMPLING       1-in-N packet sampling, the same on every link    (1000)
#   POLLING        seconds between counter samples                   (30)
#   NET            which links to sample:                            (host)
#                    docker   docker0 and docker_gwbridge
#                    flannel  cni0
#                    host     every link of 1 Gbit/s or faster, and TCP performance (tcp {})
#                    other    each device whose name matches it (a regular expression)
#   DEBUG          none, info, fine, finer or finest                 (none)
#   HOST_RUN       where the host's /run is (the DaemonSet mounts it   (/var/run)
#                    at /host/run): the two sockets below are looked for there
#   DOCKER_SOCKET  docker {} is added when this is a socket          ($HOST_RUN/docker.sock)
#   CRI_SOCKET     k8s {} is added, on this socket, when it is one   (the first socket of
#                    $HOST_RUN/containerd/containerd.sock, $HOST_RUN/k3s/containerd/containerd.sock,
#                    $HOST_RUN/crio/crio.sock: containerd, k3s's containerd, CRI-O)
#   MARK_TRAFFIC   on: flow samples of container and pod traffic     (off)
#                    name them (markTraffic in docker {} and k8s {})
#   HSFLOWD_CONFIG the config file                                   (/etc/hsflowd.conf)
# Arguments go to hsflowd-py: `docker run IMAGE --check` prints the effective settings.
set -eu

HSFLOWD_CONFIG=${HSFLOWD_CONFIG:-/etc/hsflowd.conf}
MARK="# Written by hsflowd-py-entrypoint from the environment; rewritten at each start."

case "${DEBUG:-none}" in
  none | info) flags=-d ;;
  fine | finer | finest) flags=-dd ;;
  *)
    echo "hsflowd-py-entrypoint: DEBUG=$DEBUG: expected none, info, fine, finer or finest" >&2
    exit 1
    ;;
esac

run=${HOST_RUN:-/var/run}
docker_socket=${DOCKER_SOCKET:-$run/docker.sock}
mark_traffic=${MARK_TRAFFIC:-off}
marking=
if [ "$mark_traffic" != off ]; then
  marking=" markTraffic = \"$mark_traffic\""
fi
cri_socket=
for socket in ${CRI_SOCKET:-$run/containerd/containerd.sock $run/k3s/containerd/containerd.sock $run/crio/crio.sock}; do
  if [ -S "$socket" ]; then
    cri_socket=$socket
    break
  fi
done

write_config() {
  echo "$MARK"
  echo "sflow {"
  echo "  sampling = \"${SAMPLING:-1000}\""
  echo "  sampling.bps_ratio = 0"
  echo "  polling = \"${POLLING:-30}\""
  for collector in ${COLLECTOR:-127.0.0.1}; do
    echo "  collector { ip = \"$collector\" udpport = \"${PORT:-6343}\" }"
  done
  case "${NET:-host}" in
    docker)
      echo "  pcap { dev = docker0 }"
      echo "  pcap { dev = docker_gwbridge }"
      ;;
    flannel) echo "  pcap { dev = cni0 }" ;;
    host)
      echo "  pcap { speed = 1G- }"
      echo "  tcp { }"
      ;;
    *) echo "  pcap { dev.pattern = \"$NET\" }" ;;
  esac
  if [ -S "$docker_socket" ]; then
    echo "  docker { socket = \"$docker_socket\"$marking }"
  fi
  if [ -n "$cri_socket" ]; then
    echo "  k8s { unixsock = \"$cri_socket\"$marking }"
  fi
  echo "}"
}

# Ours to rewrite: no file yet, or one this script wrote (a restarted container). Anything else
# was mounted by the operator.
if [ ! -e "$HSFLOWD_CONFIG" ] || [ "$(head -n 1 "$HSFLOWD_CONFIG")" = "$MARK" ]; then
  write_config >"$HSFLOWD_CONFIG.tmp"
  mv "$HSFLOWD_CONFIG.tmp" "$HSFLOWD_CONFIG"
fi
exec hsflowd-py "$flags" -f "$HSFLOWD_CONFIG" "$@"
