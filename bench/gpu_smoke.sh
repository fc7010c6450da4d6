#!/usr/bin/env bash
# A lent GPU machine, end to end in one call (see ../shared/gpu/README.md for the wheels in .whl/):
# synthetic data at real-ish size, a single-objective search with two trials packed on the GPU, a
# multi-objective deploy search with latency timed on the GPU (bf16/fp16 autocast), status/export/report.
# Everything it prints and every log lands in $OUT (default /tmp/gpu-out). Not part of `make test`.
set -uo pipefail
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
W=/tmp/hpo-gpu; rm -rf "$W"; mkdir -p "$W"
nvidia-smi --query-gpu=name,memory.total --format=csv > "$OUT/gpu.txt" 2>&1
(nvidia-smi dmon -s um -d 2 > "$OUT/dmon.log" 2>&1 &)
step() { echo "== $*" | tee -a "$OUT/steps.log"; /usr/bin/time -f "   %e s" -a -o "$OUT/steps.log" "$@" >> "$OUT/steps.log" 2>&1; echo "   rc=$?" >> "$OUT/steps.log"; }
step python3 -m hpo --version
step python3 -m hpo data synth "$W/raw" --cows 600 --pigs 200 --scale 0.5 --seed 0
step python3 -m hpo data prepare "$W/raw" "$W/data"
python3 - "$W" <<'PY'
import sys, yaml
w = sys.argv[1]
demo = yaml.safe_load(open("studies/demo.yaml"))
demo.update(name="gpu_tpe", data=f"{w}/data/mini.yaml", trials=6, sampler="tpe", pruner="hyperband", prune_after=2)
demo["train"].update(imgsz=320, batch=16, nbs=64, epochs=4, deterministic=False)
demo.pop("retrain", None)
yaml.safe_dump(demo, open(f"{w}/gpu_tpe.yaml", "w"), sort_keys=False)
dep = yaml.safe_load(open("studies/deploy.yaml"))
dep.update(name="gpu_deploy", data=f"{w}/data/mini.yaml", trials=4)
dep["train"].update(epochs=2, batch=16, deterministic=False)
dep["latency"] = {"device": "train", "runs": 20, "warmup": 5}
dep["search_space"]["imgsz"] = {"type": "categorical", "choices": [256, 320]}
dep["base"]["imgsz"] = 320
yaml.safe_dump(dep, open(f"{w}/gpu_deploy.yaml", "w"), sort_keys=False)
PY
step python3 -m hpo launch --study "$W/gpu_tpe.yaml" --storage "sqlite:///$W/hpo.db" --gpus 0 --workers-per-gpu 2 --runs-dir "$W/runs" --json
step python3 -m hpo launch --study "$W/gpu_deploy.yaml" --storage "sqlite:///$W/hpo.db" --gpus 0 --runs-dir "$W/runs" --json
step python3 -m hpo status --storage "sqlite:///$W/hpo.db" --study gpu_tpe
step python3 -m hpo status --storage "sqlite:///$W/hpo.db" --study gpu_deploy --json
step python3 -m hpo export --storage "sqlite:///$W/hpo.db" --study gpu_tpe -o "$OUT/hyp.yaml"
step python3 -m hpo report --storage "sqlite:///$W/hpo.db" --study gpu_deploy -o "$OUT/report_deploy"
cp -r "$W/runs/gpu_tpe/logs" "$OUT/logs_tpe" 2>/dev/null; cp -r "$W/runs/gpu_deploy/logs" "$OUT/logs_deploy" 2>/dev/null
pkill -f "nvidia-smi dmon" || true
