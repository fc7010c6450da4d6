"""Constraints per sampler (TPE, NSGA-II, GP, the GA), feasibility-first GA parents, Pareto ranks,
costs measured and infeasible models pruned before they train, and a multi-objective study end to end
on the learning-curve stand-in (front, status, report, export)."""

from __future__ import annotations

import copy
import subprocess

import numpy as np
import optuna
import pytest
import yaml
from optuna.study import StudyDirection
from optuna.trial import TrialState

from hpo import attrs
from hpo.search.cost import total_violation
from hpo.search.samplers import create_sampler
from hpo.search.samplers.ga import pareto_ranks, selection_fitness
from hpo.spec import parse_spec
from hpo.study import create_or_join, pareto_front

from conftest import DEMO, SEED_SEARCH, hpo_cmd

optuna.logging.set_verbosity(optuna.logging.WARNING)
BOUND = {"ga": 0.7}  # per sampler, default 0.5: the GA's small steps need a base near the boundary


def _spec(sampler: str, *, multi: bool = False, constrained: bool = True):
    d = copy.deepcopy(DEMO)
    d.update(copy.deepcopy({k: SEED_SEARCH[k] for k in ("search_space", "base")}))  # the GA's bounds assume 3 genes
    d["sampler"] = sampler
    d["pruner"] = "none"
    if multi:
        d.pop("objective")
        d["objectives"] = [{"metric": "fitness", "direction": "maximize"},
                           {"metric": "params", "direction": "minimize"}]
    if constrained:
        d["constraints"] = {"map75": {"max": 0.35}}
    return parse_spec(d)


def _run(sampler: str, constrained: bool, n: int, multi: bool = False) -> list[optuna.trial.FrozenTrial]:
    """A synthetic study: value (0..1) grows with log lr0, the constraint caps it at the sampler's bound
    (0.5: lr0 <= 1e-3; the GA's 0.7: lr0 <= 6e-3, just below the base's 0.01)."""
    bound = BOUND.get(sampler, 0.5)
    spec = _spec(sampler, multi=multi, constrained=constrained)
    study = optuna.create_study(directions=spec.directions,
                                sampler=create_sampler(sampler, spec, seed=3))
    study.enqueue_trial(spec.base_params())

    def objective(trial: optuna.Trial):
        lr0 = trial.suggest_float("lr0", 1e-5, 1e-1, log=True)
        trial.suggest_float("lrf", 0.01, 1.0)
        trial.suggest_float("momentum", 0.6, 0.98)
        value = (np.log10(lr0) + 5) / 4  # 0..1
        if constrained:
            trial.set_constraint("map75", (value - bound) / bound)  # hpo's relative violation
        return [value, 1.0 + 0.1 * value] if multi else value

    study.optimize(objective, n_trials=n)
    return study.trials


@pytest.mark.parametrize("sampler", ["tpe", "nsga2", "gp", "ga"])
def test_sampler_honours_constraints(sampler: str) -> None:
    """The same search, with and without the constraint: with it, the later trials stay feasible far more
    often, and the best trial is feasible."""
    n = 16 if sampler == "gp" else 40
    bound = BOUND.get(sampler, 0.5)

    def feasible_share(trials) -> float:
        late = trials[n // 2:]
        return sum((np.log10(t.params["lr0"]) + 5) / 4 <= bound for t in late) / len(late)

    free, held = _run(sampler, False, n), _run(sampler, True, n)
    assert feasible_share(held) > feasible_share(free) + 0.2, (feasible_share(held), feasible_share(free))
    assert all(t.constraints for t in held if t.state == TrialState.COMPLETE)
    best = max((t for t in held if total_violation(t) <= 0), key=lambda t: t.value)
    assert best.value <= bound + 1e-9


@pytest.mark.parametrize("sampler", ["tpe", "nsga2", "ga", "random"])
def test_multi_objective_front_is_feasible(sampler: str) -> None:
    trials = _run(sampler, True, 24, multi=True)
    study_front = [t for t in trials if t.state == TrialState.COMPLETE and total_violation(t) <= 0]
    assert study_front, "no feasible trial"


def _frozen(number: int, values: list[float], violation: float | None = None) -> optuna.trial.FrozenTrial:
    system = {} if violation is None else {"constraints:c": violation}
    return optuna.trial.create_trial(values=values, params={"x": float(number)},
                                     distributions={"x": optuna.distributions.FloatDistribution(0, 100)},
                                     system_attrs=system)


def test_ga_parents_feasible_first_then_least_violation() -> None:
    # The old private constraints key is not used: hpo sets them with Trial.set_constraint("name", v),
    # which Optuna stores as "constraints:name"; build such trials by hand.
    trials = [_frozen(0, [0.9], 0.5), _frozen(1, [0.2], -0.1), _frozen(2, [0.3], 0.0), _frozen(3, [0.99], 2.0)]
    assert [total_violation(t) for t in trials] == [0.5, 0.0, 0.0, 2.0]
    parents, fitness = selection_fitness(trials, [StudyDirection.MAXIMIZE])
    assert [t.params["x"] for t in parents] == [1.0, 2.0] and fitness == [0.2, 0.3]
    infeasible = [trials[0], trials[3]]
    parents, fitness = selection_fitness(infeasible, [StudyDirection.MAXIMIZE])
    assert fitness == [-0.5, -2.0]  # the least violating is the fittest


def test_ga_multi_objective_ranks() -> None:
    # maximise accuracy, minimise latency
    values = [[0.5, 10.0], [0.6, 20.0], [0.4, 30.0], [0.55, 5.0]]
    trials = [_frozen(i, v) for i, v in enumerate(values)]
    signed = np.array(values) * np.array([1.0, -1.0])
    assert list(pareto_ranks(signed)) == [1, 0, 2, 0]
    _, fitness = selection_fitness(trials, [StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE])
    assert np.argsort(fitness)[::-1][:2].tolist() == [1, 3]  # the front first, the better primary leading
    assert fitness[0] < min(fitness[1], fitness[3]) and fitness[2] < fitness[0]


def _deploy_dict(toy_data, **extra) -> dict:
    d = {
        "name": "mo", "data": str(toy_data),
        "train": {"epochs": 2, "batch": 8, "optimizer": "SGD", "seed": 0},
        "objectives": [{"metric": "fitness", "direction": "maximize"},
                       {"metric": "latency_ms", "direction": "minimize"}],
        "constraints": {"params": {"max": 5_000_000}, "weights_mb": {"max": 100}},
        "latency": {"runs": 3, "warmup": 1},
        "search_space": {"model": {"type": "categorical", "choices": ["yolov5n-p6.yaml", "yolov5s6.yaml"]},
                         "imgsz": {"type": "categorical", "choices": [64, 128]},
                         "lr0": DEMO["search_space"]["lr0"], "momentum": DEMO["search_space"]["momentum"]},
        "base": {"model": "yolov5n-p6.yaml", "imgsz": 64, "lr0": 0.01, "momentum": 0.937},
        "sampler": "random", "trials": 6,
    }
    d.update(extra)
    return d


def test_multi_objective_study_on_the_curve_stand_in(tmp_path, toy_data) -> None:
    """Worker + cost meter + curve trainer: lists told, the big model pruned untrained as infeasible,
    a non-empty front; status, report and export say so."""
    from hpo.search.worker import Worker
    from hpo.storage import open_storage
    from hpo.testing.curves import LearningCurveTrainer

    spec = parse_spec(_deploy_dict(toy_data))
    url = f"sqlite:///{tmp_path / 'mo.db'}"
    storage = open_storage(url)
    settings = create_or_join(storage, spec)
    study = optuna.load_study(study_name="mo", storage=storage, sampler=create_sampler("random", spec, 0))
    assert study.metric_names == ["fitness", "latency_ms"]
    runner = LearningCurveTrainer(spec, runs_dir=tmp_path / "runs")
    Worker(study, settings, runner, runs_dir=tmp_path / "runs").run()
    trials = study.get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert complete and all(len(t.values) == 2 for t in complete)
    for t in complete:
        assert t.params["model"] == "yolov5n-p6.yaml" and t.user_attrs[attrs.FEASIBLE] is True
        assert t.user_attrs["params"] < 5_000_000 and t.values[1] == t.user_attrs["latency_ms"] > 0
        assert t.user_attrs[attrs.COST]["runs"] == 3 and t.user_attrs[attrs.COST]["warmup"] == 1
    for t in pruned:  # yolov5s6 (15 M parameters) never trains
        assert t.params["model"] == "yolov5s6.yaml" and t.user_attrs[attrs.FEASIBLE] is False
        assert "infeasible before training: params" in t.user_attrs[attrs.PRUNED_REASON]
        assert attrs.EPOCHS not in t.user_attrs
    assert pruned, "the random sampler never proposed the big model"
    front = pareto_front(study)
    assert front and {t.number for t in front} <= {t.number for t in complete}

    status = subprocess.run(hpo_cmd("status", "--study", "mo", "--storage", url), capture_output=True, text=True,
                            timeout=120)
    assert status.returncode == 0, status.stderr
    assert "Pareto front" in status.stdout and "INFEASIBLE" in status.stdout
    report = subprocess.run(hpo_cmd("report", "--study", "mo", "--storage", url, "-o", str(tmp_path / "rep"), "--json"),
                            capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr
    assert (tmp_path / "rep" / "pareto_front.png").stat().st_size > 1000
    export = subprocess.run(hpo_cmd("export", "--study", "mo", "--storage", url, "--trial", str(front[0].number),
                                    "-o", "-"), capture_output=True, text=True, timeout=120)
    assert export.returncode == 0, export.stderr
    assert "objectives fitness (maximize)" in export.stdout and "chosen from the Pareto front" in export.stdout
    config = yaml.safe_load(export.stdout)
    assert config["model"] == "yolov5n-p6.yaml" and config["imgsz"] in (64, 128)


def test_cli_refuses_a_pruner_for_multi_objective(tmp_path, toy_data) -> None:
    from hpo.errors import HpoError
    from hpo.storage import open_storage

    spec = parse_spec(_deploy_dict(toy_data))
    with pytest.raises(HpoError, match="cannot prune a multi-objective study"):
        create_or_join(open_storage(f"sqlite:///{tmp_path / 'x.db'}"), spec, pruner="hyperband")
    with pytest.raises(HpoError, match="'cmaes' cannot optimise several objectives"):
        create_or_join(open_storage(f"sqlite:///{tmp_path / 'x.db'}"), spec, sampler="cmaes")


def test_retrain_picks_by_metric_and_the_front(toy_data) -> None:
    from hpo.errors import HpoError
    from hpo.final.retrain import RetrainPlan, top_trials

    spec = parse_spec(_deploy_dict(toy_data))
    study = optuna.create_study(directions=spec.directions)
    dist = {"lr0": optuna.distributions.FloatDistribution(1e-5, 1e-1, log=True)}
    for i, (fit, lat) in enumerate([(0.5, 10.0), (0.6, 20.0), (0.4, 30.0), (0.55, 5.0)]):
        study.add_trial(optuna.trial.create_trial(values=[fit, lat], params={"lr0": 1e-3 * (i + 1)},
                                                  distributions=dist, user_attrs={"latency_ms": lat, "map75": fit}))
    assert [t.number for t in top_trials(study, 2, spec=spec)] == [1, 3]  # by the primary objective
    assert [t.number for t in top_trials(study, 2, "latency_ms", spec)] == [3, 0]  # minimised: an objective's direction
    assert [t.number for t in top_trials(study, 1, "map75", spec)] == [1]
    assert [t.number for t in pareto_front(study)] == [1, 3]
    with pytest.raises(HpoError, match="either --front or --top-k"):
        RetrainPlan.from_spec(spec, front=True, top_k=2)
    with pytest.raises(HpoError, match="unknown metric 'fps'"):
        RetrainPlan.from_spec(spec, by="fps")


def test_weights_per_model(toy_data, tmp_path) -> None:
    pt = tmp_path / "n.pt"
    spec = parse_spec(_deploy_dict(toy_data, weights={"yolov5n-p6.yaml": str(pt)}))
    assert spec.training_args({"model": "yolov5n-p6.yaml"})["pretrained"] == str(pt.resolve())
    assert "pretrained" not in spec.training_args({"model": "yolov5s6.yaml"})
