"""Trials refused before training for a cost constraint do not count against the budget, and a sampler
that keeps proposing infeasible models cannot make the workers ask forever.

Real ``hpo worker`` processes on tiny real studies: Ultralytics trainings of 1 epoch at imgsz 64 on
the toy set; yolov5s6 (15 M parameters) breaks ``params <= 5e6`` and is refused untrained.
"""

from __future__ import annotations

import json
import os
import subprocess

import optuna
from optuna.trial import TrialState

from hpo import attrs
from hpo.search.launch import _progress_text
from hpo.spec import parse_spec
from hpo.storage import open_storage
from hpo.study import StudyProgress, create_or_join, progress

from conftest import DEMO, hpo_cmd, tiny_spec_dict

BIG = "yolov5s6.yaml"


def _spec(toy_data, *, name: str, trials: int, params_max: float) -> dict:
    spec = tiny_spec_dict(toy_data, name=name, epochs=1, trials=trials, sampler="random", pruner="none")
    spec.pop("model")
    spec["constraints"] = {"params": {"max": params_max}}
    spec["search_space"] = {"model": {"type": "categorical", "choices": ["yolov5n-p6.yaml", BIG]},
                            "lr0": DEMO["search_space"]["lr0"]}
    spec["base"] = {"model": "yolov5n-p6.yaml", "lr0": 0.01}
    return spec


def _create(tmp_path, spec: dict) -> tuple[str, optuna.Study]:
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    storage = open_storage(url)
    create_or_join(storage, parse_spec(spec))
    return url, optuna.load_study(study_name=spec["name"], storage=storage)


def _worker(url: str, name: str, tmp_path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(hpo_cmd("worker", "--study", name, "--storage", url, "--runs-dir", str(tmp_path / "runs"),
                                  "--artifacts", "off", "--seed", "3", "--worker-index", "0", *extra),
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)


def _status(url: str, name: str) -> dict:
    out = subprocess.run(hpo_cmd("status", "--study", name, "--storage", url, "--json"), capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_refused_trials_do_not_count_against_the_budget(tmp_path, toy_data) -> None:
    """Budget 2, the big model proposed twice before anything else: the worker still trains 2 trials."""
    spec = _spec(toy_data, name="budget", trials=2, params_max=5_000_000)
    url, study = _create(tmp_path, spec)
    for lr0 in (0.02, 0.03):  # after the base trial: two infeasible proposals in a row
        study.enqueue_trial({"model": BIG, "lr0": lr0})
    run = _worker(url, "budget", tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]

    trials = study.get_trials()
    trained = [t for t in trials if t.state == TrialState.COMPLETE]
    refused = [t for t in trials if t.user_attrs.get(attrs.UNTRAINED)]
    assert len(trained) == 2, [(t.number, t.state.name, t.params) for t in trials]
    assert all(t.params["model"] == "yolov5n-p6.yaml" and t.user_attrs[attrs.EPOCHS] == 1 for t in trained)
    assert len(refused) >= 2 and {1, 2} <= {t.number for t in refused}
    for t in refused:
        assert t.state == TrialState.PRUNED and t.params["model"] == BIG
        assert t.user_attrs[attrs.FEASIBLE] is False and attrs.EPOCHS not in t.user_attrs
        assert t.user_attrs[attrs.PRUNED_REASON].startswith("infeasible before training: params")

    # One definition everywhere: the stop condition, status, launch's progress line.
    state = progress(study)
    assert (state.finished, state.complete, state.pruned, state.infeasible) == (2, 2, 0, len(refused))
    summary = _status(url, "budget")
    assert summary["trials"]["finished"] == 2 and summary["trials"]["infeasible"] == len(refused)
    assert summary["trials"]["pruned"] == 0 and summary["budget"] == 2 and not summary["stopped_workers"]
    assert _progress_text(state, 2).startswith("2/2 finished: 2 complete, 0 pruned")
    assert f"{len(refused)} refused as infeasible (not counted)" in _progress_text(state, 2)
    text = subprocess.run(hpo_cmd("status", "--storage", url), capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "200"})
    row = next(line for line in text.stdout.splitlines() if "budget" in line and "2/2" in line)
    assert text.returncode == 0 and "infeasible" in text.stdout
    assert [c.strip() for c in row.split("│")[4:8]] == ["2/2", "2", "0", str(len(refused))], row  # finished, complete, pruned, infeasible

    # Counting below a trial number (the workers' race for the last slot) leaves refusals out too.
    below = progress(study, number_below=3)
    assert (below.complete, below.infeasible, below.finished) == (1, 2, 1)


def test_worker_stops_when_every_proposal_is_infeasible(tmp_path, toy_data) -> None:
    """No model fits params <= 1000: the worker refuses --max-infeasible x budget proposals, then stops
    with a reason recorded on the study; nothing trains, nothing loops forever."""
    spec = _spec(toy_data, name="nofit", trials=2, params_max=1000)
    url, study = _create(tmp_path, spec)
    run = _worker(url, "nofit", tmp_path, "--max-infeasible", "2")
    assert run.returncode == 2, run.stderr[-3000:]
    last = run.stderr.strip().splitlines()[-1]
    assert "4 trials were refused before training as infeasible" in last and "relax the constraints" in last

    trials = study.get_trials()
    assert len(trials) == 4 and all(t.state == TrialState.PRUNED and t.user_attrs.get(attrs.UNTRAINED)
                                    for t in trials)
    assert not (tmp_path / "runs" / "nofit").exists() or not any((tmp_path / "runs" / "nofit").rglob("*.pt"))
    summary = _status(url, "nofit")
    assert summary["trials"]["finished"] == 0 and summary["trials"]["infeasible"] == 4
    assert any("refused before training as infeasible" in line for line in summary["stopped_workers"])

    # A second worker on the same study stops at once: the cap is study-wide.
    again = _worker(url, "nofit", tmp_path, "--max-infeasible", "2")
    assert again.returncode == 2 and len(study.get_trials()) == 4


def test_progress_counts_refusals_apart_on_plain_optuna_storage() -> None:
    """The in-memory path (no counting query) gives the same definition."""
    study = optuna.create_study()
    study.add_trial(optuna.trial.create_trial(state=TrialState.PRUNED, user_attrs={attrs.UNTRAINED: True}))
    study.add_trial(optuna.trial.create_trial(state=TrialState.PRUNED))
    study.add_trial(optuna.trial.create_trial(value=1.0))
    assert progress(study) == StudyProgress(complete=1, pruned=1, failed=0, running=0, waiting=0, infeasible=1)
    assert progress(study).finished == 2


def test_worker_options_pass_the_cap_to_launched_workers() -> None:
    from hpo.search.worker import WorkerOptions

    args = WorkerOptions(max_infeasible=7).to_args()
    assert args[args.index("--max-infeasible") + 1] == "7"
