#!/usr/bin/env bash
# GPU measurement in one go on a CUDA machine (about 6 minutes on an H100-class GPU): training and
# evaluation throughput with MFU, then a short run of configs/gpu.yaml.
#
# A GPU image without network access needs the wheels it lacks (it usually has torch, transformers,
# accelerate, peft, pyarrow, pandas, tensorboard, matplotlib): benchmarks/gpu_wheels.sh downloads them
# into .whl/ on a machine that reaches PyPI, and this script installs them from there when .whl/ exists.
#     bash benchmarks/gpu.sh              # from the repository root
# Results go to $OUT when it is set, else to benchmarks/results/.
#
# The throughput rows and the short run use SmolLM2-135M's exact architecture with random weights
# (--shape_only; FLOPs and memory are the same), so the script needs no model download: it measures the
# GPU path's speed and correctness, not recommendation quality.
set -euo pipefail
cd "$(dirname "$0")/.."
RESULTS="${OUT:-benchmarks/results}"
mkdir -p "$RESULTS"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:$PWD"
else
    export PYTHONPATH="$PWD"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$RESULTS/gpu-info.csv"

# 1. Training and evaluation throughput, MFU against the measured bf16 matmul rate (~2 min).
timeout 240 python3 benchmarks/throughput.py --shape_only --batch_sizes 32,64,128,256 --seq_lens 50,200 \
    --steps 10 --warmup 3 --eval_users 943 --output_dir "$RESULTS" 2>&1 | tee "$RESULTS/throughput.log"

# 2. A short full run of the GPU config on the random SmolLM2-shaped backbone (~3 min).
python3 - <<'PY'
import json
from pathlib import Path
from transformers import AutoConfig, LlamaForCausalLM
values = json.loads(Path("benchmarks/assets/smollm2-135m-config.json").read_text())
model = LlamaForCausalLM(AutoConfig.for_model(values.pop("model_type"), **values))
model.save_pretrained("/tmp/smollm2-shape")
PY
timeout 240 python3 scripts/finetune.py --config configs/gpu.yaml --backbone /tmp/smollm2-shape --item_text_init false \
    --num_epochs 3 --early_stopping_patience 0 --output_dir /tmp/gpu-run --report_to none 2>&1 | tail -n 30 | tee "$RESULTS/gpu-run.log"
cp /tmp/gpu-run/metrics.json "$RESULTS/gpu-run-metrics.json" || true
