"""The demo study on the synthetic twin: data, spec, and reading a finished study back.

``python -m bench.demo plain --spec FILE --save-dir DIR --out FILE`` trains once with plain
Ultralytics (``YOLO(model).train(**args)``), the arguments taken from ``TrialRunner.train_args`` so
they are exactly those of an hpo trial; benchmark 5 compares it with one trial through ``hpo worker``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from bench.common import REPO, child_env, run_measured, say, tail

DEMO_YAML = REPO / "studies" / "demo.yaml"
DEMO_SYNTH = {"cows": 240, "pigs": 80, "scale": 0.1, "seed": 0}  # `make demo`'s twin


def ensure_demo_data(workdir: Path) -> Path:
    """`hpo data synth` + `hpo data prepare` as `make demo` does; returns the mini set's yaml."""
    root = workdir / "demo"
    marker = root / "demo.json"
    data = root / "data"
    if marker.is_file() and (data / "mini.yaml").is_file():
        try:
            if json.loads(marker.read_text()) == DEMO_SYNTH:
                return data / "mini.yaml"
        except ValueError:
            pass
    import shutil

    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    s = DEMO_SYNTH
    for cmd in (["synth", str(root / "raw"), "--cows", str(s["cows"]), "--pigs", str(s["pigs"]),
                 "--scale", str(s["scale"]), "--seed", str(s["seed"])],
                ["prepare", str(root / "raw"), str(data)]):
        log = root / f"{cmd[0]}.log"
        r = run_measured([sys.executable, "-m", "hpo", "data", *cmd], env=child_env(), log=log, timeout=1800)
        if r["rc"] != 0:
            raise RuntimeError(f"hpo data {cmd[0]} failed (exit {r['rc']}): {tail(log)}")
    say(f"demo data ready in {data}")
    marker.write_text(json.dumps(DEMO_SYNTH))
    return data / "mini.yaml"


def demo_spec_dict(data_yaml: Path, *, epochs: int | None = None, trials: int | None = None,
                   name: str | None = None) -> dict[str, Any]:
    from hpo.spec import expand_env

    spec = yaml.safe_load(DEMO_YAML.read_text())
    spec["data"] = str(data_yaml.resolve())
    if spec.get("weights"):  # the committed checkpoint, found from any working directory
        spec["weights"] = str((REPO / expand_env(spec["weights"])).resolve())
    if epochs is not None:
        spec["train"]["epochs"] = epochs
        if spec.get("prune_after", 1) > epochs:  # shrunk (quick mode, warm-up): keep the spec valid
            spec["prune_after"] = max(1, epochs // 2)
    if trials is not None:
        spec["trials"] = trials
    if name is not None:
        spec["name"] = name
    spec.pop("retrain", None)
    return spec


def warm_label_cache(workdir: Path, data_yaml: Path, threads: int) -> None:
    """Ultralytics writes labels/<split>.cache on first use: do it once, before anything is timed."""
    labels = data_yaml.parent / "labels"
    if (labels / "mini.cache").is_file() and (labels / "valid.cache").is_file():
        return
    say("warming Ultralytics' label cache (one 1-epoch training, not measured)")
    d = workdir / "warmup"
    d.mkdir(parents=True, exist_ok=True)
    spec_file = d / "spec.json"
    spec_file.write_text(json.dumps(demo_spec_dict(data_yaml, epochs=1)))
    r = run_measured([sys.executable, "-m", "bench.demo", "plain", "--spec", str(spec_file), "--save-dir",
                      str(d / "run"), "--out", str(d / "out.json")], env=child_env(threads), log=d / "log.txt",
                     timeout=1800, cwd=REPO)
    if r["rc"] != 0:
        raise RuntimeError(f"warm-up training failed: {tail(d / 'log.txt')}")


def objective_from_results_csv(path: Path) -> tuple[list[float], list[dict[str, float]]]:
    """Per-epoch fitness (0.1 mAP50 + 0.9 mAP50-95, the demo's objective) from Ultralytics' results.csv."""
    from hpo.search.objective import yolov5_fitness

    values, rows = [], []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            row = {k.strip(): v for k, v in row.items()}
            m50, m = float(row["metrics/mAP50(B)"]), float(row["metrics/mAP50-95(B)"])
            values.append(yolov5_fitness(m50, m))
            rows.append({"map50": m50, "map50-95": m})
    return values, rows


def read_study(url: str, name: str) -> dict[str, Any]:
    """Trials of a finished study, in order, with the epochs each trained."""
    import optuna

    from hpo.storage import open_storage

    storage = open_storage(url)
    try:
        study = optuna.load_study(study_name=name, storage=storage)
        trials = []
        for t in study.get_trials(deepcopy=False):
            epochs = t.user_attrs.get("epochs")
            if epochs is None:
                epochs = t.last_step or 0
            trials.append({
                "number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
                "epochs": int(epochs), "train_seconds": t.user_attrs.get("train_seconds"),
                "start": t.datetime_start.timestamp() if t.datetime_start else None,
                "complete": t.datetime_complete.timestamp() if t.datetime_complete else None,
                "reason": t.user_attrs.get("fail_reason") or t.user_attrs.get("pruned_reason"),
                "values": [t.intermediate_values[s] for s in sorted(t.intermediate_values)],
            })
    finally:
        storage.engine.dispose()
    return {"trials": trials}


# --- plain training (subprocess entry) ---------------------------------------------------------

def _plain(args: argparse.Namespace) -> int:
    spec_dict = json.loads(Path(args.spec).read_text())
    import os

    import torch

    if "OMP_NUM_THREADS" in os.environ:
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))  # as `hpo worker` does on CPU
    from hpo.offline import import_ultralytics
    from hpo.spec import parse_spec
    from hpo.search.trial_runner import TrialRunner

    import_ultralytics()
    from ultralytics import YOLO

    spec = parse_spec(spec_dict)
    runner = TrialRunner(spec, runs_dir=Path(args.save_dir).parent, device="cpu")
    save_dir = Path(args.save_dir).resolve()
    train_args = runner.train_args(spec.base_params(), save_dir)
    model = YOLO(spec.model)
    start = time.perf_counter()  # model.train() alone, as hpo's `train_seconds` trial attribute
    model.train(**train_args)
    seconds = time.perf_counter() - start
    values, _ = objective_from_results_csv(save_dir / "results.csv")
    Path(args.out).write_text(json.dumps({"train_seconds": seconds, "values": values,
                                          "value": max(values) if values else None, "args": train_args},
                                         default=str))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.demo")
    sub = p.add_subparsers(dest="cmd", required=True)
    plain = sub.add_parser("plain", help="one plain Ultralytics training with an hpo trial's arguments")
    plain.add_argument("--spec", required=True)
    plain.add_argument("--save-dir", required=True)
    plain.add_argument("--out", required=True)
    args = p.parse_args(argv)
    return _plain(args)


if __name__ == "__main__":
    sys.exit(main())
