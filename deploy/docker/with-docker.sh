#!/usr/bin/env bash
# Runs a command with a docker daemon: installs Debian's docker.io and debootstrap when missing
# (needs root, as CI has), starts dockerd in the background when none answers (no systemd
# needed), and stops the daemon it started once the command ends, whatever its outcome.
# The command is bounded by DOCKER_STEP_TIMEOUT seconds (default 1200), so a hang cannot outlast CI.
# Usage: deploy/docker/with-docker.sh COMMAND [ARGS...]
set -euo pipefail

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
  echo "with-docker: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

started=""
if ! docker info >/dev/null 2>&1; then
  log=$(mktemp /tmp/onnxserve-dockerd.XXXXXX.log)
  dockerd >"$log" 2>&1 &
  started=$!
  for _ in $(seq 1 300); do
    docker info >/dev/null 2>&1 && break
    kill -0 "$started" 2>/dev/null || { cat "$log" >&2; exit 1; }
    sleep 0.1  # pacing: the daemon answers within seconds
  done
  docker info >/dev/null 2>&1 || { echo "with-docker: dockerd did not start" >&2; exit 1; }
  echo "with-docker: started dockerd (pid $started, log $log)" >&2
fi

stop_daemon() {
  if [ -n "$started" ]; then
    kill -TERM "$started" 2>/dev/null || true
    wait "$started" 2>/dev/null || true
    rm -f "$log"
    echo "with-docker: stopped dockerd (pid $started)" >&2
  fi
}
trap stop_daemon EXIT
trap 'exit 143' TERM INT
timeout --kill-after=10 "${DOCKER_STEP_TIMEOUT:-1200}" "$@"
