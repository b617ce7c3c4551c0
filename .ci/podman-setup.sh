#!/usr/bin/env bash
# Debian's podman as this machine needs it, and its Docker-compatible API on a socket (there is
# no systemd to socket-activate it). Idempotent: a second run changes nothing.
set -euo pipefail

if ! command -v podman >/dev/null || ! command -v runc >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # runc, not the default crun: crun 1.8 refuses this host's v1/v2 hybrid cgroup layout.
  apt-get install -y -qq podman runc >/dev/null
fi
podman --version

# Without CAP_SYS_RESOURCE no rlimit can go above the hard limits (nofile 20000; conmon caps
# nproc at 32768), and podman's defaults ask for more.
conf=/etc/containers/containers.conf
if ! grep -q "meshauth" "$conf" 2>/dev/null; then
  [ -f "$conf" ] && cp "$conf" "$conf.before-meshauth"
  mkdir -p /etc/containers
  cat >"$conf" <<'CONF'
# Written by meshauth's .ci/podman-setup.sh (the previous file, if any: containers.conf.before-meshauth).
[containers]
default_ulimits = [
  "nofile=20000:20000",
  "nproc=32768:32768",
]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
fi

socket=/run/podman/podman.sock
if ! curl -sf --unix-socket "$socket" http://podman/_ping >/dev/null 2>&1; then
  mkdir -p /run/podman
  # Detached from this shell's output, so that nothing waits on it; its pid for whoever stops it.
  setsid nohup podman system service --time=0 "unix://$socket" </dev/null >/tmp/podman-service.log 2>&1 &
  echo $! >/run/podman/meshauth-service.pid
  for _ in $(seq 1 50); do
    curl -sf --unix-socket "$socket" http://podman/_ping >/dev/null 2>&1 && break
    sleep 0.2
  done
fi
curl -sf --unix-socket "$socket" http://podman/_ping >/dev/null || {
  echo "podman's Docker API did not answer on $socket:" >&2
  cat /tmp/podman-service.log >&2
  exit 1
}
echo "podman's Docker API answers on $socket"
