#!/usr/bin/env bash
# CUDA paths and GPU throughput, in one short run on a GPU machine (a developer check; CI has no GPU):
# fp16 diffusion pipelines, generation throughput ratios, bf16/fp16 training with quality weights, quality overhead.
# Needs the repository's Python dependencies; OUT (default /tmp/gpu_check) receives the logs.
set -uo pipefail
OUT=${OUT:-/tmp/gpu_check}
DEVICE=${DEVICE:-cuda}
mkdir -p "$OUT"
work=$(mktemp -d)
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1
py() { python3 "$@"; }
step() { echo; echo "=== $*"; }

step versions
py -c 'import torch, diffusers, open_clip, transformers; print(torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name(0), diffusers.__version__, open_clip.__version__, transformers.__version__)'

step tiny models and data
py -m genview models build-tiny --out-dir "$work/models" 2>"$OUT/build.log" || tail -20 "$OUT/build.log"
spec='{"kind": "shapes", "train_per_class": 20, "test_per_class": 2, "sources": ["ic"]}'
(cd "$work" && py -m genview data make-shapes --dataset s --spec "$spec" && \
  py -m genview data index --dataset s --spec "$spec" --out-dir data && \
  py -m genview data shard --manifest data/manifest.csv --num-shards 1 --out-dir shards) 2>"$OUT/data.log"
printf 'id,fg_ratio,noise_level,mask_iou\n' >"$work/foreground.csv"
tail -n +2 "$work/shards/0.csv" | cut -d, -f1 | awk '{print $0",0.5,"(NR%5)*100","}' >>"$work/foreground.csv"

step "generation (fp16 on CUDA): views identical across batch sizes?"
for b in 8 3; do
  (cd "$work" && py -m genview generation views --source ic --shard shards/0.csv --foreground foreground.csv \
    --views-dir "views$b" --out "views$b.csv" --generation \
    '{"steps": 10, "batch_size": '$b', "samples": 1, "save_size": 64, "jpeg_quality": 95, "ic": {"guidance_scale": 10, "noise_level": "adaptive"}}' \
    --model '{"path": "'"$work"'/models/unclip"}' --device "$DEVICE") 2>>"$OUT/generate.log"
done
py - "$work" <<'PY'
import sys, hashlib, pathlib
import numpy as np
from PIL import Image
w = pathlib.Path(sys.argv[1])
a, b = sorted((w / "views8").glob("*.jpg")), sorted((w / "views3").glob("*.jpg"))
same = sum(x.read_bytes() == y.read_bytes() for x, y in zip(a, b))
diff = max(np.abs(np.asarray(Image.open(x), int) - np.asarray(Image.open(y), int)).max() for x, y in zip(a, b))
print(f"{len(a)} views; byte-identical across batch 8 vs 3: {same}/{len(a)}; max pixel difference {diff}")
PY

if [ -z "${SKIP_BENCH:-}" ]; then  # SKIP_BENCH=1 DEVICE=cpu: a quick rehearsal of the rest on a CPU machine
step "generation throughput"
py benchmarks/generation.py --images 128 --batch-size 32 --steps 20 --device "$DEVICE" 2>>"$OUT/bench_generation.log" | tail -7

step "quality overhead"
py benchmarks/quality_overhead.py --batch 256 --image-size 64 --repeats 20 --device "$DEVICE" 2>>"$OUT/bench_quality.log" | tail -7
py benchmarks/quality_overhead.py --backbone resnet50 --batch 128 --image-size 224 --encoder-size 224 --repeats 10 \
  --device "$DEVICE" 2>>"$OUT/bench_quality.log" | tail -7
fi

step "training with quality weights (amp bf16 and fp16 on CUDA)"
(cd "$work" && py -m genview quality fit-vector --manifest data/manifest.csv \
  --encoder '{"model": "local-dir:'"$work"'/models/quality_encoder", "image_size": null}' \
  --analysis '{"fg_sample_per_class": 5, "fg_sample_size": 100, "batch_size": 64, "fg_sign": "auto"}' \
  --out quality.npz --device "$DEVICE") 2>>"$OUT/train.log"
py - "$work" "$DEVICE" <<'PY' 2>>"$OUT/train.log"
import json, subprocess, sys
from genview.config.load import validate_config
from genview.training.experiments import resolve_experiments
w = sys.argv[1]
for method, amp, args in [("simclr", "bf16", {"proj_hidden_dim": 256, "proj_dim": 64}),
                          ("slip", "fp16", {"embed_dim": 64, "text_width": 64, "text_heads": 2, "text_layers": 2,
                                             "context_length": 32, "ssl_mlp_dim": 256, "ssl_emb_dim": 64})]:
    config = validate_config({
        "datasets": {"s": {"kind": "shapes", "sources": ["ic"]}},
        "models": {"quality_encoder": {"model": f"local-dir:{w}/models/quality_encoder"}},
        "pretrain": {"recipes": {"r": {"epochs": 2, "batch_size": 64, "image_size": 64, "amp": amp, "num_workers": 4,
                                       "optimizer": "adamw", "lr": 0.001}},
                     "backbones": {"b": {"name": "vit", "image_size": 64, "patch_size": 8, "embed_dim": 128, "depth": 4, "num_heads": 4}},
                     "experiments": {"e": {"method": method, "variant": "genview", "recipe": "r", "backbone": "b",
                                           "dataset": "s", "method_args": {method: args}}}}})
    exp = resolve_experiments(config)["e"]
    out = f"{w}/pretrain_{method}"
    r = subprocess.run([sys.executable, "-m", "genview", "pretrain", "run", "--experiment", json.dumps(exp),
                        "--out-dir", out, "--manifest", f"{w}/data/manifest.csv", "--views", f"{w}/views8.csv",
                        "--quality-vector", f"{w}/quality.npz", "--device", sys.argv[2]], capture_output=True, text=True,
                       cwd=w)
    records = [json.loads(l) for l in open(f"{out}/metrics.jsonl")] if r.returncode == 0 else []
    epochs = [x for x in records if x["type"] == "epoch"]
    print(method, amp, "rc", r.returncode, "epoch losses", [round(e["loss"], 3) for e in epochs],
          "img/s", [round(e["images_per_second"]) for e in epochs], r.stderr[-800:] if r.returncode else "")
PY

rm -rf "$work"
