"""The YOLOv5 GA sampler against the algorithm's definition (YOLOv5 train.py --evolve, v6/v7)."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from hpo.search.samplers import YoloV5GASampler, create_sampler
from hpo.spec import parse_spec

SPACE = {
    "lr0": FloatDistribution(1e-5, 1e-1, log=True),
    "lrf": FloatDistribution(0.01, 1.0),
    "momentum": FloatDistribution(0.6, 0.98),
}
GAINS = {"lr0": 1.0, "lrf": 1.0, "momentum": 0.3}
BASE = {"lr0": 0.01, "lrf": 0.1, "momentum": 0.937}


def objective(trial: optuna.Trial) -> float:
    lr0 = trial.suggest_float("lr0", 1e-5, 1e-1, log=True)
    lrf = trial.suggest_float("lrf", 0.01, 1.0)
    momentum = trial.suggest_float("momentum", 0.6, 0.98)
    return -((np.log10(lr0) + 2) ** 2) - (lrf - 0.3) ** 2 - (momentum - 0.9) ** 2


def test_mutation_factors_follow_yolov5_definition() -> None:
    sampler = YoloV5GASampler(SPACE, GAINS, BASE, seed=0)
    factors = np.array([sampler.mutation_factors() for _ in range(20000)])
    assert factors.min() >= 0.3 and factors.max() <= 3.0
    assert np.all(np.any(factors != 1, axis=1)), "a draw with no change must be redrawn"
    # A gene stays put when its mask draw fails: P = 1 - mp = 0.2, a bit less after redraws.
    unchanged = (factors == 1).mean(axis=0)
    assert np.all((unchanged > 0.15) & (unchanged < 0.21)), unchanged
    # log-factor spread scales with the gain: momentum (gain 0.3) moves about 0.3x as far.
    spread = np.std(factors, axis=0)
    assert spread[2] / spread[0] == pytest.approx(0.3, rel=0.1)
    # E[|v-1|] = g * mp * E|randn| * E[rand] * s = 1 * 0.8 * 0.798 * 0.5 * 0.2 (clip barely matters).
    moved = np.abs(factors[:, 0] - 1).mean()
    assert moved == pytest.approx(0.8 * 0.7979 * 0.5 * 0.2, rel=0.08)


def test_gain_zero_never_moves_and_zero_stays_zero() -> None:
    space = {"a": FloatDistribution(0.0, 1.0), "b": FloatDistribution(0.0, 1.0), "c": FloatDistribution(0.0, 1.0)}
    sampler = YoloV5GASampler(space, {"a": 0.0, "b": 1.0, "c": 1.0}, seed=1)
    parent = {"a": 0.5, "b": 0.0, "c": 0.5}
    for _ in range(500):
        child = sampler.mutate(parent)
        assert child["a"] == 0.5  # gain 0
        assert child["b"] == 0.0  # multiplicative: 0 stays 0


def test_children_are_clipped_and_rounded() -> None:
    sampler = YoloV5GASampler(SPACE, GAINS, BASE, seed=2)
    parent = {"lr0": 0.09, "lrf": 0.99, "momentum": 0.97}
    for _ in range(2000):
        child = sampler.mutate(parent)
        for name, value in child.items():
            dist = SPACE[name]
            assert dist.low <= value <= dist.high
            assert value == round(value, 5)


def test_parent_selection_weights_top_five() -> None:
    sampler = YoloV5GASampler(SPACE, GAINS, BASE, seed=3)
    params = [{"lr0": 0.001 * (i + 1), "lrf": 0.1, "momentum": 0.9} for i in range(8)]
    fitness = [0.1, 0.9, 0.5, 0.7, 0.3, 0.8, 0.2, 0.6]
    counts: dict[float, int] = {}
    n = 20000
    for _ in range(n):
        chosen = sampler.select_parent(params, fitness)["lr0"]
        counts[chosen] = counts.get(chosen, 0) + 1
    top5 = [0.9, 0.8, 0.7, 0.6, 0.5]
    weights = np.array(top5) - min(top5) + 1e-6
    expected = weights / weights.sum()
    by_fitness = {f: counts.get(params[i]["lr0"], 0) / n for i, f in enumerate(fitness)}
    for f, p in zip(top5, expected):
        assert by_fitness[f] == pytest.approx(p, abs=0.015)
    assert by_fitness[0.5] < 0.001  # the worst of the top 5 has weight ~1e-6
    assert by_fitness[0.1] == by_fitness[0.2] == by_fitness[0.3] == 0  # outside the top 5


def test_first_trial_is_base_then_no_duplicates() -> None:
    sampler = YoloV5GASampler(SPACE, GAINS, BASE, seed=4)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(objective, n_trials=60)
    assert study.trials[0].params == BASE
    keys = {tuple(sorted(t.params.items())) for t in study.trials}
    assert len(keys) == len(study.trials)
    assert study.best_value > study.trials[0].value  # evolution improves on the base


def test_parent_is_from_population_and_child_is_multiplicative() -> None:
    sampler = YoloV5GASampler(SPACE, GAINS, BASE, seed=5)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(objective, n_trials=10)
    population = [t.params for t in study.trials]
    trial = study.ask()
    for name in SPACE:
        trial.suggest_float(name, SPACE[name].low, SPACE[name].high, log=SPACE[name].log)
    assert sampler.last_parent in population
    for name in SPACE:
        ratio = trial.params[name] / sampler.last_parent[name]
        assert 0.3 - 1e-3 <= ratio <= 3.0 + 1e-3 or trial.params[name] in (SPACE[name].low, SPACE[name].high)


def test_seeded_and_reproducible_per_worker() -> None:
    def run(seed: int) -> list[dict]:
        study = optuna.create_study(direction="maximize", sampler=YoloV5GASampler(SPACE, GAINS, BASE, seed=seed))
        study.optimize(objective, n_trials=15)
        return [t.params for t in study.trials]

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_minimize_uses_negated_fitness() -> None:
    sampler = YoloV5GASampler(SPACE, GAINS, BASE, seed=6)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    study.optimize(lambda t: -objective(t), n_trials=40)
    assert study.best_value < study.trials[0].value


def test_categorical_and_int_genes() -> None:
    space = {"optimizer": CategoricalDistribution(["SGD", "Adam", "AdamW"]),
             "close_mosaic": IntDistribution(0, 20), "lr0": FloatDistribution(1e-4, 1e-1, step=1e-4)}
    sampler = YoloV5GASampler(space, {"optimizer": 1.0, "close_mosaic": 1.0, "lr0": 1.0},
                              {"optimizer": "SGD", "close_mosaic": 10, "lr0": 0.01}, seed=9)
    parent = {"optimizer": "SGD", "close_mosaic": 10, "lr0": 0.01}
    children = [sampler.mutate(parent) for _ in range(5000)]
    switched = np.mean([c["optimizer"] != "SGD" for c in children])
    # switch probability mp * s * gain = 0.16, a bit more because draws with no change are redrawn
    assert 0.14 < switched < 0.2
    assert all(isinstance(c["close_mosaic"], int) and 0 <= c["close_mosaic"] <= 20 for c in children)
    assert all(abs(c["lr0"] / 1e-4 - round(c["lr0"] / 1e-4)) < 1e-6 for c in children)


def test_shared_population_across_samplers() -> None:
    """Two workers (two samplers, one storage) breed from one population and never duplicate."""
    storage = optuna.storages.InMemoryStorage()
    optuna.create_study(study_name="s", storage=storage, direction="maximize")
    studies = [optuna.load_study(study_name="s", storage=storage,
                                 sampler=YoloV5GASampler(SPACE, GAINS, BASE, seed=s)) for s in (1, 2)]
    for _ in range(15):
        for study in studies:
            study.optimize(objective, n_trials=1)
    trials = studies[0].trials
    assert len(trials) == 30
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 30


def _suggest_all(trial: optuna.Trial) -> dict:
    return {n: trial.suggest_float(n, d.low, d.high, log=d.log) for n, d in SPACE.items()}


def test_claimed_base_is_taken_before_its_params_are_stored() -> None:
    """Worker A has claimed the queued base trial but not suggested yet; worker B must not breed the base."""
    storage = optuna.storages.InMemoryStorage()
    optuna.create_study(study_name="s", storage=storage, direction="maximize").enqueue_trial(BASE)
    a, b = (optuna.load_study(study_name="s", storage=storage,
                              sampler=YoloV5GASampler(SPACE, GAINS, BASE, seed=s)) for s in (1, 2))
    claimed = a.ask()  # RUNNING, params not stored yet
    assert claimed.params == {} and a.trials[0].system_attrs["fixed_params"] == BASE
    other = b.ask()
    assert _suggest_all(other) != BASE
    assert _suggest_all(claimed) == BASE


def test_concurrent_asks_never_breed_the_same_child() -> None:
    """Two workers with the same seed ask before either stores params: the proposal on the trial counts."""
    storage = optuna.storages.InMemoryStorage()
    optuna.create_study(study_name="s", storage=storage, direction="maximize")
    optuna.load_study(study_name="s", storage=storage,
                      sampler=YoloV5GASampler(SPACE, GAINS, BASE, seed=0)).optimize(objective, n_trials=6)
    a, b = (optuna.load_study(study_name="s", storage=storage,
                              sampler=YoloV5GASampler(SPACE, GAINS, BASE, seed=3)) for _ in range(2))
    first, second = a.ask(), b.ask()
    # Both sample (identical random states: the same first child) before either stores a param.
    assert first.relative_params and second.relative_params
    assert _suggest_all(first) != _suggest_all(second)


@pytest.mark.parametrize("name", ["ga", "tpe", "cmaes", "nsga2", "gp", "random"])
def test_every_sampler_builds_and_samples(name: str) -> None:
    spec = parse_spec({"name": "s", "model": "yolov5n-p6.yaml", "data": "d.yaml",
                       "train": {"optimizer": "SGD", "epochs": 2},
                       "search_space": {"lr0": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True},
                                        "momentum": {"type": "float", "low": 0.6, "high": 0.98}},
                       "base": {"lr0": 0.01, "momentum": 0.937}})
    sampler = create_sampler(name, spec, seed=1)
    assert isinstance(sampler, optuna.samplers.BaseSampler)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.enqueue_trial(spec.base_params())
    study.optimize(lambda t: -(np.log10(t.suggest_float("lr0", 1e-5, 1e-1, log=True)) + 2) ** 2
                   - (t.suggest_float("momentum", 0.6, 0.98) - 0.9) ** 2, n_trials=8)
    assert study.trials[0].params == spec.base_params()
    assert len(study.trials) == 8


def test_population_spans_hyperband_brackets() -> None:
    """Hyperband shows samplers one bracket at a time; the GA must still see (and avoid) every point."""
    sampler = YoloV5GASampler(SPACE, GAINS, BASE, seed=11)
    study = optuna.create_study(direction="maximize", sampler=sampler,
                                pruner=optuna.pruners.HyperbandPruner(min_resource=1, max_resource=9))

    def curve(trial: optuna.Trial) -> float:
        final = objective(trial)
        for step in range(1, 10):
            trial.report(final * step / 9, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return final

    study.optimize(curve, n_trials=40)
    keys = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(keys) == len(set(keys))
    assert keys.count(tuple(sorted(BASE.items()))) == 1


def test_bounded_mutation_steps_a_share_of_the_range() -> None:
    """Ultralytics 8.4's step: P(move) = 0.5, randn * sigma * gain in units of the (log) range, clipped."""
    sampler = YoloV5GASampler(SPACE, GAINS, BASE, seed=3, mutation="bounded")
    steps = np.array([sampler.bounded_steps() for _ in range(20000)])
    assert np.all(np.any(steps != 0, axis=1)), "a draw with no change must be redrawn"
    still = (steps == 0).mean(axis=0)
    assert np.all((still > 0.38) & (still < 0.5)), still  # 1 - 0.5, a bit less after redraws
    moved = steps[steps[:, 0] != 0, 0]
    assert np.std(moved) == pytest.approx(0.2, rel=0.05)  # sigma * gain 1, in units of the range
    assert np.std(steps[steps[:, 2] != 0, 2]) == pytest.approx(0.2 * 0.3, rel=0.05)  # momentum's gain 0.3

    # In parameter space: lr0 (log scale, 4 decades) moves by factors, lrf by a share of 0.99, and a
    # gene at 0 leaves it, which YOLOv5's multiplicative step never does.
    space = {**SPACE, "weight_decay": FloatDistribution(0.0, 0.001)}
    sampler = YoloV5GASampler(space, {**GAINS, "weight_decay": 1.0}, seed=4, mutation="bounded")
    parent = {**BASE, "weight_decay": 0.0}
    children = [sampler.mutate(parent) for _ in range(3000)]
    assert any(c["weight_decay"] > 0 for c in children)
    lr_decades = np.array([np.log10(c["lr0"] / parent["lr0"]) for c in children if c["lr0"] != parent["lr0"]])
    assert np.median(np.abs(lr_decades)) == pytest.approx(0.6745 * 0.2 * 4, rel=0.15)  # |N(0, 0.8 decades)|
    for c in children:
        for name, value in c.items():
            assert space[name].low <= value <= space[name].high and value == round(value, 5)


def test_bounded_mutation_from_the_study_file_and_reproducible() -> None:
    spec = parse_spec({"name": "s", "model": "yolov5n.yaml", "data": "d.yaml", "train": {"optimizer": "SGD"}, "search_space": {
        "lr0": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True},
        "momentum": {"type": "float", "low": 0.6, "high": 0.98}}, "ga": {"mutation": "bounded", "top_n": 9}})
    first, second = (create_sampler("ga", spec, seed=7) for _ in range(2))
    assert first._mutation == "bounded" and first._top_n == 9 and first._mp == 0.5
    parent = {"lr0": 0.01, "momentum": 0.9}
    assert [first.mutate(parent) for _ in range(20)] == [second.mutate(parent) for _ in range(20)]
    # It optimises: a bounded GA study climbs the toy objective from the base hyps.
    study = optuna.create_study(direction="maximize", sampler=YoloV5GASampler(SPACE, GAINS, BASE, seed=0,
                                                                             mutation="bounded"))
    study.optimize(objective, n_trials=40)
    assert study.best_value > study.trials[0].value


@pytest.mark.parametrize("trials,population", [(6, 4), (10, 4), (12, 4), (18, 6), (24, 8), (200, 8)])
def test_nsga2_population_leaves_a_small_budget_generations(trials: int, population: int) -> None:
    """Benchmark 10: with population 8, a 10-trial study never left NSGA-II's random first generation."""
    spec = parse_spec({"name": "s", "model": "yolov5n-p6.yaml", "data": "d.yaml", "trials": trials,
                       "train": {"optimizer": "SGD", "epochs": 2},
                       "search_space": {"lr0": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True}}})
    assert create_sampler("nsga2", spec, seed=0)._population_size == population
