"""`hpo launch` end to end: real worker processes, real trainings, one SQLite study."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import optuna
import yaml
from optuna.trial import TrialState

from hpo.spec import parse_spec
from hpo.storage import open_storage
from hpo.study import create_or_join
from hpo.attrs import SURPLUS as ATTR_SURPLUS
from hpo.search.worker import Worker

from conftest import hpo_cmd, tiny_spec_dict


def test_two_workers_finish_exactly_the_budget_then_export(tiny_study_file, tmp_path: Path) -> None:
    study_file = tiny_study_file(name="duo", trials=5, epochs=2, sampler="ga", pruner="none")
    db = f"sqlite:///{tmp_path / 'hpo.db'}"
    proc = subprocess.run(hpo_cmd("launch", "--study", str(study_file), "--storage", db, "--workers", "2",
                                  "--device", "cpu", "--json"),
                          capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    summary = json.loads(proc.stdout)
    assert summary["trials"]["finished"] == 5 and summary["trials"]["running"] == 0

    study = optuna.load_study(study_name="duo", storage=db)
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 5
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    params = [tuple(sorted(t.params.items())) for t in study.trials if t.params]
    assert len(params) == len(set(params)), "the GA proposed a point twice"
    assert study.trials[0].params == {"lr0": 0.01, "lrf": 0.1, "momentum": 0.937}  # base first
    workers = {t.user_attrs["hpo:worker"] for t in study.trials}
    assert len(workers) == 2, workers
    assert (tmp_path / "runs" / "duo" / "logs" / "worker_0.log").is_file()
    # keep policy: only the best 3 complete trials keep weights
    kept = [p for p in (tmp_path / "runs" / "duo").glob("trial_*/weights")]
    assert len(kept) <= 3

    # The study's stored attributes make every later command work without the YAML.
    study_file.unlink()
    out = tmp_path / "best.yaml"
    proc = subprocess.run(hpo_cmd("export", "--study", "duo", "--storage", db, "-o", str(out)),
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert text.startswith("# hpo export: study duo, trial ")
    config = yaml.safe_load(text)
    best = study.best_trial
    for key, value in best.params.items():
        assert config[key] == value
    assert config["model"] == "yolov5n-p6.yaml" and config["optimizer"] == "SGD" and config["epochs"] == 2

    from hpo.offline import import_ultralytics

    import_ultralytics()
    from ultralytics.cfg import get_cfg

    cfg = get_cfg(cfg=str(out))  # what `yolo train cfg=best.yaml` does first: rejects unknown keys/types
    assert cfg.lr0 == best.params["lr0"] and cfg.data == config["data"]

    proc = subprocess.run(hpo_cmd("status", "--study", "duo", "--storage", db, "--json"),
                          capture_output=True, text=True, cwd=tmp_path)
    status = json.loads(proc.stdout)
    assert status["best"]["number"] == best.number and len(status["trial_table"]) == len(study.trials)

    # Optuna's own CLI reads the study.
    optuna_cli = Path(subprocess.sys.executable).parent / "optuna"
    proc = subprocess.run([str(optuna_cli), "best-trial", "--study-name", "duo", "--storage", db, "-f", "json"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["number"] == best.number

    # Launching again on a finished study does nothing and says so.
    proc = subprocess.run(hpo_cmd("launch", "--study", "duo", "--storage", db), capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 2 and "no study file" in proc.stderr  # the YAML is gone: launch needs it


def test_join_with_different_spec_is_an_error(toy_data: Path, tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}")
    spec = parse_spec(tiny_spec_dict(toy_data, name="j"))
    create_or_join(storage, spec)
    changed = parse_spec({**tiny_spec_dict(toy_data, name="j"), "trials": 9,
                          "train": {**tiny_spec_dict(toy_data)["train"], "epochs": 5}})
    try:
        create_or_join(storage, changed)
    except Exception as exc:
        assert "exists with a different spec (train.epochs: stored 2, given 5)" in str(exc)
    else:
        raise AssertionError("joining with a different spec must fail")
    assert create_or_join(storage, changed, allow_spec_change=True).spec.epochs == 5


def test_worker_racing_for_the_last_slot_trains_nothing(toy_data: Path, tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}")
    spec = parse_spec(tiny_spec_dict(toy_data, name="race", trials=2))
    settings = create_or_join(storage, spec, sampler="random")
    study = optuna.load_study(study_name="race", storage=storage)
    study.ask(), study.ask()  # two other workers hold the whole budget

    def must_not_run(trial: optuna.Trial) -> float:
        raise AssertionError("a surplus trial must not train")

    worker = Worker(study, settings, must_not_run)
    worker._run_one(summary=type("S", (), {"trials": {}})())
    surplus = study.trials[-1]
    assert surplus.state == TrialState.FAIL and surplus.user_attrs[ATTR_SURPLUS] is True


def test_keep_policy_keeps_the_top_complete_trials_only(toy_data: Path, tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}")
    spec = parse_spec(tiny_spec_dict(toy_data, name="keep", trials=6))
    settings = create_or_join(storage, spec, sampler="random")
    study = optuna.load_study(study_name="keep", storage=storage)
    values = iter([0.3, None, 0.9, 0.1, 0.5, 0.7])  # None: pruned

    def fake_training(trial: optuna.Trial) -> float:  # writes weights as a training would
        trial.suggest_float("lr0", 1e-5, 1e-1, log=True)
        (tmp_path / "runs" / "keep" / f"trial_{trial.number:04d}" / "weights").mkdir(parents=True)
        value = next(values)
        if value is None:
            raise optuna.TrialPruned()
        return value

    Worker(study, settings, fake_training, runs_dir=tmp_path / "runs", keep=2).run()
    kept = sorted(p.parent.name for p in (tmp_path / "runs" / "keep").glob("trial_*/weights"))
    best_two = sorted(t.number for t in study.trials if t.value in (0.9, 0.7))
    assert kept == [f"trial_{n:04d}" for n in best_two]
