#!/bin/bash
# tools/bench/constraint_cost.py on the lent NVIDIA machine (as device.sh: MLX CUDA staged in
# .device, wheels in .whl, tokenizer files in .device/tok):
#   bash tools/bench/device_constraint.sh BITS LABEL [constraint_cost.py options]
set -euo pipefail
bits=$1 label=$2; shift 2
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
eval "$(bash .device/mlx-cuda.sh env)"
export PYTHONPATH=/tmp/site:$(ls -d "$PWD"/packages/*/src | tr '\n' ':')$PYTHONPATH PYTHONUNBUFFERED=1
model=/tmp/phi3-mini-$bits
[ -d "$model" ] || python3 tools/bench/make_model.py "$model" --shape phi3-mini \
    $([ "$bits" != 0 ] && echo --bits "$bits") --tokenizer-from .device/tok
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 tools/bench/constraint_cost.py --model "$model" --label "$label" --out "${OUT:-/tmp/bench-out}" "$@"
