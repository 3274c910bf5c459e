#!/usr/bin/env bash
# GPU dress rehearsal: the per-GPU rates of every stage on this machine, written for `genview config estimate`, the
# estimate from them, and the GPU error paths (a real out-of-memory error; a GPU that torch cannot see). One command,
# under 10 minutes on an H100/H200-class card, from the repository root:
#   bash benchmarks/gpu_rehearsal.sh                 # logs and rates.yaml in OUT (default /tmp/gpu_rehearsal)
# Models (MODELS, passed to benchmarks/rates.py):
#   default "--random-encoders": the paper's open_clip encoders with random weights (same speed, no download); the
#     diffusion pipelines and the chat model are measured only where their weights are present (models.cache_dir /
#     GENVIEW_MODEL_CACHE after `genview models fetch`), otherwise that phase says "skipped" and keeps the default;
#   "--models-dir DIR": DIR/<role> folders (e.g. full-size random-weight builds of every role).
# A second, tiny generation run checks the fp16 generation path and the FLOP count on the GPU (not for the estimate).
set -uo pipefail
set -f  # the experiment patterns are for rates.py, not the shell
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}  # a GPU node without internet: a missing weight is a quick "skipped"
OUT=${OUT:-/tmp/gpu_rehearsal}
CONFIG=${CONFIG:-config/paper.yaml}
MODELS=${MODELS:---random-encoders}
# One experiment of each (method, backbone), and the genview variant of one two-view and one vision-language method.
EXPERIMENTS=${EXPERIMENTS:-"imagenet1k_*_baseline imagenet1k_mocov2_genview imagenet1k_mocov3_vitb_genview cc3m_clip_baseline cc3m_clip_views cc3m_slip_genview"}
mkdir -p "$OUT"
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1
PY=${PY:-python3}
step() { echo; echo "=== $* ($(date +%T))"; }

step versions
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
$PY -c 'import torch, diffusers, open_clip, transformers; print("torch", torch.__version__, "CUDA", torch.version.cuda, torch.cuda.is_available() and torch.cuda.get_device_name(0), "| diffusers", diffusers.__version__, "open_clip", open_clip.__version__, "transformers", transformers.__version__)'

step "rates of every stage ($CONFIG, $MODELS)"
# shellcheck disable=SC2086
timeout 420 $PY benchmarks/rates.py --config "$CONFIG" $MODELS --out "$OUT/rates.yaml" --images 24 \
  --official-images 4 --captions 2 --train-steps 4 --input-rounds 1 --experiments $EXPERIMENTS 2>"$OUT/rates.log"
echo "rates.py exit status $? (124: cut at 420 s; the file keeps the phases measured)"
cat "$OUT/rates.yaml"

step "estimate from the measured rates"
$PY -m genview config estimate "$CONFIG" "$OUT/rates.yaml"

step "generation path on the GPU with tiny pipelines (fp16, FLOP count, ratios; not for the estimate)"
timeout 90 $PY benchmarks/rates.py --config config/config.yaml --tiny --only generation --images 32 --steps 20 \
  --out "$OUT/rates_tiny_generation.yaml" 2>"$OUT/rates_tiny.log" | tail -6

step "a real GPU out-of-memory error becomes one message"
$PY - <<'PY'
import torch
from genview.runtime.devices import out_of_memory_advice
from genview.errors import GenviewError
try:
    with out_of_memory_advice("rehearsal (rule none)", batch_size=1 << 40, lower="the batch", device="cuda"):
        torch.empty(1 << 40, 1 << 10, dtype=torch.uint8, device="cuda")
except GenviewError as error:
    print("OK:", error)
PY

step "a GPU that torch cannot see fails the job (CUDA_VISIBLE_DEVICES names a device that does not exist)"
CUDA_VISIBLE_DEVICES=99 $PY -m genview pretrain run --experiment '{}' --out-dir "$OUT/none" --manifest none.csv
echo "exit status $? (2 expected)"
