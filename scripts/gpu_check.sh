#!/usr/bin/env bash
# One prepared run for a lent GPU machine (see docs/distributed.md): training tokens/s for fp32,
# bf16, LoRA, int4 LoRA and Flash Attention 2 on one GPU, then DDP and FSDP runs of the demo
# config when more than one GPU is present. Python packages the machine lacks travel as wheels
# (.whl, see the device tool's README); PYTHON names the interpreter (default: python3).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || exit 1
"$PY" scripts/gpu_check.py
GPUS=$(nvidia-smi -L | wc -l)
if [ "$GPUS" -gt 1 ]; then
  echo "DDP on $GPUS GPUs vs one: see docs/distributed.md for the equivalence run"
  for ENGINE in ddp fsdp; do
    echo "== $ENGINE on $GPUS GPUs (steps/s in /tmp/${ENGINE}_check/logs.log)"
    PYTHON="$PY" bash distributed_train.sh "$GPUS" -Y examples/example_demo.yaml \
      --environment.gpus "$(seq -s, 0 $((GPUS - 1)))" \
      --environment.data_parallel_engine "$ENGINE" --output_directory "/tmp/${ENGINE}_check"
    grep -E "sharded|processes|Experiment" "/tmp/${ENGINE}_check/logs.log"
  done
fi
