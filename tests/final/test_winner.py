"""One winner among a multi-objective (and constrained) study: ``--by METRIC`` for export and retrain,
default the primary objective among feasible trials, said in the output and the export header; a
metric the study did not measure is a one-line error (exit 2).

The studies are real Optuna SQLite studies created by hpo; their trials are added with known values
(what a finished search leaves behind), so which trial must win is known exactly.
"""

from __future__ import annotations

import copy
import subprocess

import optuna
import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution

from hpo import attrs
from hpo.errors import HpoError
from hpo.final.record import FinalModel, WinnerRule
from hpo.final.retrain import RetrainPlan
from hpo.spec import parse_spec
from hpo.storage import open_storage
from hpo.study import create_or_join

from conftest import DEMO, hpo_cmd

# number: (fitness, latency_ms, map75, weights_mb); the constraints: latency_ms <= 30, weights_mb <= 100
TRIALS = {
    0: (0.50, 10.0, 0.45, 8.0),
    1: (0.70, 40.0, 0.90, 8.0),   # the most accurate, but too slow: infeasible
    2: (0.60, 20.0, 0.30, 8.0),   # the most accurate feasible trial: the default winner
    3: (0.40, 5.0, 0.35, 8.0),    # the fastest feasible trial
    4: (0.55, 3.0, 0.20, 150.0),  # faster still, but too big: infeasible
}


def _spec_dict(toy_data, name: str = "mo") -> dict:
    return {
        "name": name, "data": str(toy_data),
        "train": {"epochs": 1, "batch": 8, "optimizer": "SGD", "seed": 0},
        "objectives": [{"metric": "fitness", "direction": "maximize"},
                       {"metric": "latency_ms", "direction": "minimize"}],
        "constraints": {"latency_ms": {"max": 30}, "weights_mb": {"max": 100}},
        "search_space": {"model": {"type": "categorical", "choices": ["yolov5n-p6.yaml", "yolov5s6.yaml"]},
                         "lr0": DEMO["search_space"]["lr0"]},
        "sampler": "random", "trials": 5,  # no base hyps: the trials below are numbered 0..4
    }


def _violations(latency: float, mb: float) -> dict[str, float]:
    return {"constraints:latency_ms": (latency - 30) / 30, "constraints:weights_mb": (mb - 100) / 100}


@pytest.fixture
def mo_study(tmp_path, toy_data):
    url = f"sqlite:///{tmp_path / 'mo.db'}"
    storage = open_storage(url)
    spec = parse_spec(_spec_dict(toy_data))
    create_or_join(storage, spec)
    study = optuna.load_study(study_name="mo", storage=storage)
    dists = {"model": CategoricalDistribution(["yolov5n-p6.yaml", "yolov5s6.yaml"]),
             "lr0": FloatDistribution(1e-5, 1e-1, log=True)}
    for number, (fit, lat, m75, mb) in TRIALS.items():
        feasible = lat <= 30 and mb <= 100
        study.add_trial(optuna.trial.create_trial(
            values=[fit, lat], params={"model": "yolov5n-p6.yaml", "lr0": 0.001 * (number + 1)}, distributions=dists,
            user_attrs={"fitness": fit, "map75": m75, "latency_ms": lat, "weights_mb": mb, "params": 4_000_000,
                        "gflops": 0.3, attrs.FEASIBLE: feasible, attrs.EPOCHS: 1},
            system_attrs=_violations(lat, mb)))
    return url, study, spec


def _export(url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(hpo_cmd("export", "--study", "mo", "--storage", url, "-o", "-", *args),
                          capture_output=True, text=True, timeout=120)


def test_export_default_is_the_primary_objective_among_feasible_trials(mo_study) -> None:
    url, study, spec = mo_study
    proc = _export(url)
    assert proc.returncode == 0, proc.stderr
    header = [line for line in proc.stdout.splitlines() if line.startswith("#")]
    assert any("trial 2 of" in line for line in header), header  # not trial 1: more accurate, but infeasible
    assert any("chosen by best fitness (maximize, the primary objective) among feasible trials" in line
               for line in header), header
    assert yaml.safe_load(proc.stdout)["lr0"] == pytest.approx(0.003)


@pytest.mark.parametrize(("by", "winner"), [("latency_ms", 3), ("map75", 0), ("fitness", 2)])
def test_export_by_a_metric(mo_study, by: str, winner: int) -> None:
    url, study, spec = mo_study
    proc = _export(url, "--by", by)
    assert proc.returncode == 0, proc.stderr
    assert f"hpo export: study mo, trial {winner} of" in proc.stdout
    direction = "minimize" if by == "latency_ms" else "maximize"
    assert f"chosen by best {by} ({direction}" in proc.stdout
    assert WinnerRule.of(spec, by).pick_trial(study, spec).number == winner  # the one rule, as retrain uses it


def test_export_by_errors_are_one_line(mo_study, tmp_path, toy_data) -> None:
    url, study, spec = mo_study
    for args, message in ((["--by", "fps"], "unknown metric 'fps'"),
                          (["--by", "latency_ms", "--trial", "1"], "--by chooses the winner"),
                          (["--by", "map75", "--final"], "--by chooses the winner")):
        proc = _export(url, *args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (args, proc.stderr)
    # --trial N still picks by hand, infeasible or not, and says so.
    proc = _export(url, "--trial", "1")
    assert proc.returncode == 0 and "trial 1 of" in proc.stdout and "chosen by hand (--trial 1)" in proc.stdout

    # A study that measured no cost: --by gflops names what it did measure.
    plain = copy.deepcopy(DEMO)
    plain.update({"name": "plain", "data": str(toy_data)})
    plain.pop("retrain", None)
    create_or_join(open_storage(url), parse_spec(plain))
    proc = subprocess.run(hpo_cmd("export", "--study", "plain", "--storage", url, "-o", "-", "--by", "gflops"),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "'gflops' was not measured by this study (choose from fitness, map75" in proc.stderr
    assert "latency_ms" not in proc.stderr
    proc = subprocess.run(hpo_cmd("retrain", "--study", "plain", "--storage", url, "--by", "latency_ms",
                                  "--runs-dir", str(tmp_path / "runs")), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "'latency_ms' was not measured by this study" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_no_feasible_trial_is_an_error_that_points_to_trial(tmp_path, toy_data) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    storage = open_storage(url)
    spec = parse_spec(_spec_dict(toy_data, name="mo"))
    create_or_join(storage, spec)
    study = optuna.load_study(study_name="mo", storage=storage)
    study.add_trial(optuna.trial.create_trial(values=[0.9, 50.0], user_attrs={attrs.FEASIBLE: False},
                                              system_attrs=_violations(50.0, 8.0)))
    with pytest.raises(HpoError, match="none of its 1 complete trials is feasible; pick one with --trial N"):
        WinnerRule.of(spec).pick_trial(study, spec)


def test_retrain_plan_takes_by_with_front(toy_data) -> None:
    spec = parse_spec(_spec_dict(toy_data))
    plan = RetrainPlan.from_spec(spec, front=True, by="latency_ms")
    assert plan.front and plan.by == "latency_ms"
    with pytest.raises(HpoError, match="either --front or --top-k"):
        RetrainPlan.from_spec(spec, front=True, top_k=2)
    with pytest.raises(HpoError, match="unknown metric 'fps'"):
        RetrainPlan.from_spec(spec, by="fps")


def _model(trial: int, rank: int, fitness: float | None, latency: float, feasible: bool | None = True,
           error: str | None = None) -> FinalModel:
    return FinalModel(trial=trial, params={}, mini_value=0.5, mini_rank=rank, fingerprint="x", dir="d",
                      full_value=fitness, metrics={"fitness": fitness, "map75": fitness}, error=error,
                      costs={"latency_ms": latency, "weights_mb": 8.0}, feasible=feasible)


def test_retrained_winner_by_the_same_rule(toy_data) -> None:
    spec = parse_spec(_spec_dict(toy_data))
    models = [_model(1, 1, 0.80, 40.0, feasible=False), _model(2, 2, 0.60, 20.0), _model(3, 3, 0.40, 5.0),
              _model(4, 4, 0.90, 1.0, error="training produced no best.pt"), _model(5, 5, 0.60, 25.0)]
    assert WinnerRule.of(spec).pick_model(models).trial == 2  # tie with 5 on fitness: the better mini rank
    assert WinnerRule.of(spec, "latency_ms").pick_model(models).trial == 3
    assert WinnerRule.of(spec, "weights_mb").pick_model(models).trial == 2  # all tie: the better mini rank
    assert WinnerRule.of(spec).pick_model([models[0], models[3]]) is None  # infeasible or failed: no winner
    assert WinnerRule.of(spec, "latency_ms").to_json() == {
        "metric": "latency_ms", "direction": "minimize", "primary": False,
        "rule": "best latency_ms (minimize) among feasible trials"}
