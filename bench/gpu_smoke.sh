#!/usr/bin/env bash
# A lent GPU machine, end to end in one call (see ../shared/gpu/README.md for the wheels in .whl/):
# synthetic data at real-ish size, a single-objective search with two trials packed on the GPU, a
# multi-objective deploy search with latency timed on the GPU (bf16/fp16 autocast), status/export/report.
# Then trials per GPU-hour (about 8 minutes on one H100): the same 4 trials with --workers-per-gpu 1,
# 2 --mps off, 2 --mps on, auto, with val_fraction 0.25 and with torch.compile; one line each in $OUT/packing.txt,
# one record each in $OUT/packing.jsonl (`python -m bench.gpu_record into-results` imports them here).
# What it prints lands in $OUT (default /tmp/gpu-out), every log in $OUT/logs.tgz. Not part of `make test`.
# SMOKE_PARTS="packing" runs the trials-per-hour block only (default: "searches packing");
# PACK_MODEL, PACK_IMGSZ, PACK_BATCH, PACK_EPOCHS change the shape of its trials; PACK_ARMS picks and orders
# the arms (default "wpg1 wpg2_on wpg2_off auto vf025 compile"; compile: Ultralytics' train.compile=true).
set -uo pipefail
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
# a wheel too big for the device call's 64 MiB may travel unzipped and re-packed as .tar.xz (polars' runtime:
# 54 MB as a wheel, 31 MB so): unpacking it into the target is what pip would have done
for packed in .whl/*.tar.xz; do [[ -e $packed ]] && { tar xJf "$packed" -C /tmp/site || exit 1; }; done
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
W=/tmp/hpo-gpu; rm -rf "$W"; mkdir -p "$W/logs"
nvidia-smi --query-gpu=name,memory.total --format=csv > "$OUT/gpu.txt" 2>&1
(nvidia-smi dmon -s um -d 2 -o T > "$OUT/dmon.log" 2>&1 &)
step() {  # step CMD...: its output, wall time and exit status in steps.log (bash's clock: no /usr/bin/time needed)
  echo "== $*" | tee -a "$OUT/steps.log"
  local t0=$EPOCHREALTIME rc
  "$@" >> "$OUT/steps.log" 2>&1; rc=$?
  echo "   $(python3 -c "print(f'{$EPOCHREALTIME - $t0:.1f}')") s, rc=$rc" >> "$OUT/steps.log"
}
step python3 -m hpo --version
step python3 -m hpo data synth "$W/raw" --cows 600 --pigs 200 --scale 0.5 --seed 0
step python3 -m hpo data prepare "$W/raw" "$W/data"
PARTS=${SMOKE_PARTS:-searches packing}
if [[ " $PARTS " == *" searches "* ]]; then
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
step python3 -m hpo report --storage "sqlite:///$W/hpo.db" --study gpu_deploy -o "$W/logs/report_deploy"
cp -r "$W/runs/gpu_tpe/logs" "$W/logs/tpe" 2>/dev/null; cp -r "$W/runs/gpu_deploy/logs" "$W/logs/deploy" 2>/dev/null
fi

# --- trials per GPU-hour: packing, MPS, --workers-per-gpu auto, val_fraction ---------------------------
# The same 4 trials (random sampler, seed 0, no pruning: every trial trains every epoch) per arm, each arm
# a fresh study; wall time of the whole `hpo launch` (what a user waits for), trials per hour from it.
if [[ " $PARTS " == *" packing "* ]]; then
CARD=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
python3 - "$W" "${PACK_MODEL:-yolov5s6.yaml}" "${PACK_IMGSZ:-640}" "${PACK_BATCH:-16}" "${PACK_EPOCHS:-3}" <<'PY'
import sys, yaml
w, model, imgsz, batch, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
demo = yaml.safe_load(open("studies/demo.yaml"))
for arm, fraction, extra in (("wpg1", 1.0, {}), ("vf025", 0.25, {}), ("wpg2_off", 1.0, {}), ("wpg2_on", 1.0, {}),
                             ("auto", 1.0, {}), ("compile", 1.0, {"compile": True})):
    spec = dict(demo, name=f"pack_{arm}", model=model, weights=None, data=f"{w}/data/mini.yaml", trials=4, sampler="random",
                pruner="none", prune_after=1, val_fraction=fraction)
    spec["train"] = dict(demo["train"], imgsz=imgsz, batch=batch, nbs=64, epochs=epochs, deterministic=False, **extra)
    spec.pop("retrain", None)
    yaml.safe_dump(spec, open(f"{w}/pack_{arm}.yaml", "w"), sort_keys=False)
PY
SHAPE="${PACK_MODEL:-yolov5s6.yaml} from scratch, ${PACK_IMGSZ:-640} px, batch ${PACK_BATCH:-16}, ${PACK_EPOCHS:-3} epochs, 4 trials on a 320-image mini set (twin at half size)"
pack() {  # pack ARM LABEL LAUNCH-OPTIONS...: one arm, one record in packing.jsonl and one line in packing.txt
  local arm=$1 label=$2; shift 2
  local t0 t1 rc
  t0=$EPOCHREALTIME
  python3 -m hpo launch --study "$W/pack_$arm.yaml" --storage "sqlite:///$W/pack.db" --gpus 0 --seed 0 \
    --runs-dir "$W/runs" --json "$@" > "$W/logs/pack_$arm.json" 2> "$W/logs/pack_$arm.err"
  rc=$?
  t1=$EPOCHREALTIME
  python3 -m bench.gpu_record arm --out "$OUT" --arm "$arm" --label "$label" --shape "$SHAPE" --card "$CARD" \
    --start "$t0" --end "$t1" --rc "$rc" --summary "$W/logs/pack_$arm.json" --dmon "$OUT/dmon.log"
  cp -r "$W/runs/pack_$arm/logs" "$W/logs/pack_$arm" 2>/dev/null
}
echo "== trials per hour on ${CARD:-unknown GPU}" | tee -a "$OUT/steps.log"
for arm in ${PACK_ARMS:-wpg1 wpg2_on wpg2_off auto vf025 compile}; do
  case $arm in
    wpg1) pack wpg1 "--workers-per-gpu 1, val_fraction 1" --workers-per-gpu 1 ;;
    vf025) pack vf025 "--workers-per-gpu 1, val_fraction 0.25" --workers-per-gpu 1 ;;
    wpg2_off) pack wpg2_off "--workers-per-gpu 2 --mps off" --workers-per-gpu 2 --mps off ;;
    wpg2_on) pack wpg2_on "--workers-per-gpu 2 --mps on" --workers-per-gpu 2 --mps on ;;
    auto) pack auto "--workers-per-gpu auto (MPS auto)" --workers-per-gpu auto ;;
    compile) pack compile "--workers-per-gpu 1, train.compile true" --workers-per-gpu 1 ;;
    *) echo "unknown PACK_ARMS entry: $arm" | tee -a "$OUT/packing.txt" ;;
  esac
done
echo "   MPS daemons left: $(pgrep -c nvidia-cuda-mps || true)" | tee -a "$OUT/packing.txt"
fi
pkill -f "nvidia-smi dmon" || true
# the device call brings back only a few files: the logs travel as one archive
tar czf "$OUT/logs.tgz" -C "$W" logs
