#!/usr/bin/env bash
# Install and start a Docker-API engine (podman) plus the local test image, on a fresh Debian 12 machine.
# Idempotent: every step checks whether its work is already done. Needs root. Prints `export DOCKER_HOST=...`.
set -euo pipefail

SOCKET_PATH="${RLM_PODMAN_SOCKET:-/run/rlm-podman.sock}"
PID_FILE="${RLM_PODMAN_PIDFILE:-/run/rlm-podman.pid}"
LOG_FILE="${RLM_PODMAN_LOG:-${TMPDIR:-/tmp}/rlm-podman-service.log}"
IMAGE="${RLM_TEST_IMAGE:-rlm-test-python:3.11}"
started=$(date +%s)

log() { echo "setup-podman: $*" >&2; }

if [ "$(id -u)" != "0" ]; then
    log "needs root (apt-get, /etc/containers, /run); run it with sudo"
    exit 1
fi

# Packages: podman serves the Docker API, runc because this kernel refuses crun's cgroup mode,
# debootstrap builds the test image without any registry.
if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v debootstrap >/dev/null; then
    log "installing podman runc debootstrap"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq podman runc debootstrap >/dev/null
fi

# Podman's default rlimits are above what this kernel lets a container have.
mkdir -p /etc/containers
if ! grep -q 'runtime = "runc"' /etc/containers/containers.conf 2>/dev/null; then
    log "writing /etc/containers/containers.conf"
    cat >/etc/containers/containers.conf <<'CONF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[engine]
runtime = "runc"
CONF
fi

service_alive() {
    [ -f "$PID_FILE" ] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null && [ -S "$SOCKET_PATH" ]
}

if service_alive; then
    log "API service already running (pid $(cat "$PID_FILE"))"
else
    rm -f "$SOCKET_PATH"
    log "starting podman system service on $SOCKET_PATH"
    # From /: conmon writes files such as "oom" into its working directory when a container is killed.
    (cd / && exec nohup podman system service --time=0 "unix://$SOCKET_PATH" >"$LOG_FILE" 2>&1) &
    echo $! >"$PID_FILE"
    for _ in $(seq 1 100); do
        [ -S "$SOCKET_PATH" ] && break
        sleep 0.1
    done
    if [ ! -S "$SOCKET_PATH" ]; then
        log "the service did not create $SOCKET_PATH; see $LOG_FILE"
        exit 1
    fi
fi

if podman image exists "$IMAGE"; then
    log "image $IMAGE already present"
else
    rootfs="$(mktemp -d)"
    trap 'rm -rf "$rootfs"' EXIT
    log "building $IMAGE with debootstrap (about 80 s)"
    # python3 rather than python3-minimal: the minimal package lacks most of the stdlib the runtime uses.
    bootstrap_log="${TMPDIR:-/tmp}/rlm-debootstrap.log"
    debootstrap --variant=minbase --include=python3 bookworm "$rootfs" >"$bootstrap_log" 2>&1 || {
        log "debootstrap failed; see $bootstrap_log"
        exit 1
    }
    tar -C "$rootfs" -c . | podman import - "$IMAGE" >/dev/null
    rm -rf "$rootfs"
    trap - EXIT
fi

log "ready in $(( $(date +%s) - started ))s"
echo "export DOCKER_HOST=unix://$SOCKET_PATH"
echo "export RLM_TEST_IMAGE=$IMAGE"
