"""Ultralytics' own GA tuner on the demo study, offline: the outside baseline of benchmark 4.

``python -m bench.ultra_tune --spec SPEC.json --project DIR --iterations N --out OUT.json``

It does what ``model.tune(data=..., epochs=..., iterations=N, ..., space={...})`` does in Ultralytics
8.4 (``Model.tune`` builds ``Tuner(args={**model.overrides, **kwargs, "mode": "train"},
model=model.model, _callbacks=model.callbacks)`` and calls it), with one difference: ``cleanup=False``,
so that every iteration's ``results.csv`` survives and its per-epoch mAPs give the same objective hpo
optimises (0.1 mAP50 + 0.9 mAP50-95 at the best epoch). The training arguments are an hpo trial's
(``TrialRunner.train_args``: same data, model, epochs, image size, batch, nbs, optimizer, seed,
device), plus ``plots=False, save=False, val=True`` as the tuner is normally run. The space has the
study's bounds and YOLOv5's gains; Ultralytics mutates in the linear range (hpo's lr0 is log-scaled
for the Optuna samplers; the GA mutates multiplicatively). Each iteration trains in its own
subprocess (``python -m ultralytics.cfg.__init__ train ...``), which inherits the offline environment
(``YOLO_OFFLINE=1``, no AMP check on CPU, local font): nothing is downloaded. No MongoDB is used.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ultra_tune")
    p.add_argument("--spec", required=True)
    p.add_argument("--project", required=True)
    p.add_argument("--iterations", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="cpu", help="cpu or a CUDA index")
    args = p.parse_args(argv)

    from hpo.offline import import_ultralytics
    from hpo.spec import FloatParam, parse_spec
    from hpo.search.trial_runner import TrialRunner

    import_ultralytics()
    from ultralytics import YOLO
    from ultralytics.engine.tuner import Tuner

    from bench.demo import objective_from_results_csv

    spec = parse_spec(json.loads(Path(args.spec).read_text()))
    project = Path(args.project).resolve()
    project.mkdir(parents=True, exist_ok=True)
    train_args = TrialRunner(spec, runs_dir=project, device=args.device).train_args(spec.base_params(), project / "unused")
    for key in ("project", "name", "exist_ok"):
        train_args.pop(key, None)
    train_args.update({"plots": False, "save": False, "val": True})
    gains = spec.gains()
    space = {}
    for name, param in spec.search_space.items():
        assert isinstance(param, FloatParam), "Ultralytics' tuner needs numeric hyps"
        space[name] = (param.low, param.high, gains[name])

    model = YOLO(spec.model)
    tune_args = {**model.overrides, **train_args, "space": space, "project": str(project), "mode": "train"}
    tuner = Tuner(args=tune_args, model=model.model, _callbacks=model.callbacks)
    start = time.perf_counter()
    tuner(iterations=args.iterations, cleanup=False)
    seconds = time.perf_counter() - start

    iterations = []
    for line in (tuner.tune_dir / "tune_results.ndjson").read_text().splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        save_dirs = list((rec.get("save_dirs") or {}).values())
        csv = Path(save_dirs[0]) / "results.csv" if save_dirs else None
        values = objective_from_results_csv(csv)[0] if csv and csv.is_file() else []
        iterations.append({
            "iteration": rec["iteration"], "tuner_fitness": rec.get("fitness"),
            "hyperparameters": rec.get("hyperparameters"), "epochs": len(values),
            "value": max(values) if values else None, "values": values,
            "complete": os.path.getmtime(csv) if csv and csv.is_file() else None,
        })
    Path(args.out).write_text(json.dumps({"seconds": seconds, "tune_dir": str(tuner.tune_dir),
                                          "space": space, "iterations": iterations}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
