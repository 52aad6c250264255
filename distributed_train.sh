#!/usr/bin/env bash
# Distributed data parallel (DDP) training with torchrun:
#
#   bash distributed_train.sh N [torchrun options] -Y cfg.yaml [--section.key value ...]
#
# starts N processes of train.py on this node, one per GPU: the first N GPUs, or those
# CUDA_VISIBLE_DEVICES lists. A config with environment.gpus empty runs N CPU processes (gloo).
# Without rendezvous options, torchrun's standalone rendezvous takes a free port on localhost.
# Options before -Y go to torchrun (several nodes: --nnodes, --node_rank, --rdzv_endpoint, ...);
# everything from -Y on goes to train.py. See docs/distributed.md.
set -euo pipefail

usage="usage: bash distributed_train.sh N [torchrun options] -Y cfg.yaml [--section.key value ...]"
if [[ $# -lt 1 || ! "$1" =~ ^[1-9][0-9]*$ ]]; then
    echo "$usage" >&2
    exit 2
fi
nproc="$1"
shift

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-$repo/.venv/bin/python}"
if [[ ! -x "$python" ]]; then
    python="$(command -v python3 || command -v python)"
fi

launcher=()
while [[ $# -gt 0 && "$1" != "-Y" && "$1" != "--yaml" && "$1" != --yaml=* ]]; do
    launcher+=("$1")
    shift
done
if [[ $# -eq 0 ]]; then
    echo "$usage" >&2
    exit 2
fi

# A rendezvous of its own (one node, a free port) unless the options say where to meet.
rendezvous=(--standalone)
for option in "${launcher[@]+"${launcher[@]}"}"; do
    case "$option" in
        --nnodes* | --node_rank* | --node-rank* | --rdzv* | --master_addr* | --master-addr* | \
            --master_port* | --master-port* | --standalone)
            rendezvous=()
            ;;
    esac
done

exec "$python" -m torch.distributed.run \
    "${rendezvous[@]+"${rendezvous[@]}"}" \
    --nproc_per_node="$nproc" \
    "${launcher[@]+"${launcher[@]}"}" \
    "$repo/train.py" "$@"
