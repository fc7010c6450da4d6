#!/usr/bin/env bash
# A lent GPU machine, the fine-tuning problem (the demo's: pasture-pretrained yolov5n-p6 on the farm twin), in
# one call (see ../shared/gpu/README.md for the wheels in .whl/; not part of `make test`):
#   1. bench.fidelity: the base and GA children of it, each trained with short and long full schedules; do short
#      schedules rank what 15-epoch trainings rank, where the first epochs of a 15-epoch training do not?
#   2. bench.finetune_search --gpu: 15-epoch studies of 12 trials, the pruning arms given the unpruned arms'
#      epochs (--equal-epochs), several studies side by side on the one GPU.
# Each part stops starting work at its deadline and writes what finished. Results land in $OUT (default
# /tmp/gpu-out): fidelity.{json,md}, finetune_search.{json,md,png}, gpu.txt, dmon.log, logs.tgz.
# Knobs: FID_CHILDREN FID_SCHEDULES FID_JOBS FID_DEADLINE, SEARCH_ARMS SEARCH_SEEDS SEARCH_JOBS SEARCH_DEADLINE,
# PARTS ("fidelity search"); LOCAL=1 runs on this machine's CPU from .venv (a dry run of the script).
set -uo pipefail
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
if [[ ${LOCAL:-0} == 1 ]]; then
  PY=.venv/bin/python; DEVICE=cpu; GPU_FLAG=""
else
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
  for packed in .whl/*.tar.xz; do [[ -e $packed ]] && { tar xJf "$packed" -C /tmp/site || exit 1; }; done
  export PYTHONPATH=/tmp/site:$PWD
  PY=python3; DEVICE=0; GPU_FLAG=--gpu
fi
export PYTHONUNBUFFERED=1
W=${WORK:-/tmp/hpo-gpu-ft}; mkdir -p "$W/logs"
nvidia-smi --query-gpu=name,memory.total --format=csv > "$OUT/gpu.txt" 2>&1
(nvidia-smi dmon -s um -d 2 -o T > "$OUT/dmon.log" 2>&1 &)
PARTS=${PARTS:-fidelity search}
t0=$EPOCHREALTIME
if [[ " $PARTS " == *" fidelity "* ]]; then
  dl=${FID_DEADLINE:-150}
  timeout $((dl + 150)) $PY -m bench.fidelity --device $DEVICE --jobs "${FID_JOBS:-12}" \
    --children "${FID_CHILDREN:-40}" --schedules "${FID_SCHEDULES:-2,3,5,15}" --deadline "$dl" \
    --workdir "$W" --out "$OUT/fidelity" > "$W/logs/fidelity.log" 2>&1
  echo "fidelity: rc=$? after $($PY -c "print(round($EPOCHREALTIME - $t0))") s" | tee -a "$W/logs/steps.log"
fi
if [[ " $PARTS " == *" search "* ]]; then
  dl=${SEARCH_DEADLINE:-270}
  timeout $((dl + 150)) $PY -m bench.finetune_search $GPU_FLAG --jobs "${SEARCH_JOBS:-12}" --epochs 15 --trials 12 \
    --equal-epochs --arms "${SEARCH_ARMS:-ga-none,ga-hyperband,tpe-none,tpe-hyperband}" \
    --seeds "${SEARCH_SEEDS:-0,1,2}" --deadline "$dl" --workdir "$W" --out "$OUT/finetune_search" \
    > "$W/logs/search.log" 2>&1
  echo "search: rc=$? after $($PY -c "print(round($EPOCHREALTIME - $t0))") s" | tee -a "$W/logs/steps.log"
fi
pkill -f "nvidia-smi dmon" || true
# the device call brings back only a few files: the logs (and each study's worker log) travel as one archive
# shellcheck disable=SC2046  # the logs' paths hold no spaces
(cd "$W" && tar czf "$OUT/logs.tgz" logs $(find search -name log.txt 2>/dev/null))
