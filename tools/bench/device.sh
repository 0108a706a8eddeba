#!/bin/bash
# The benchmark on the lent NVIDIA machine (docs/performance.md says how MLX CUDA gets there):
#   bash tools/bench/device.sh BITS LABEL [bench.py options]    BITS: 4, or 0 for bf16
#   BENCH=constraint_cost bash tools/bench/device.sh BITS LABEL [constraint_cost.py options]
#   SHAPE=qwen3-8b ...                                          a make_model.py shape (phi3-mini)
# Needs .device (mlx-cuda.sh, staged) and .whl (the wheels pensieve needs there) carried;
# writes to $OUT.
set -euo pipefail
bits=$1 label=$2; shift 2
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
eval "$(bash .device/mlx-cuda.sh env)"
export PYTHONPATH=/tmp/site:$(ls -d "$PWD"/packages/*/src | tr '\n' ':')$PYTHONPATH PYTHONUNBUFFERED=1
shape=${SHAPE:-phi3-mini}
model=/tmp/$shape-$bits
[ -f "$model/model.safetensors" ] || python3 tools/bench/make_model.py "$model" --shape "$shape" \
    $([ "$bits" != 0 ] && echo --bits "$bits") --tokenizer-from .device/tok
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
bench=${BENCH:-bench}
[ "$bench" = bench ] && set -- --profile gpu "$@"
python3 "tools/bench/$bench.py" --model "$model" --label "$label" --out "${OUT:-/tmp/bench-out}" "$@"
