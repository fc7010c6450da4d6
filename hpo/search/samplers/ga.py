"""YOLOv5's ``--evolve`` genetic algorithm as an Optuna sampler.

YOLOv5 keeps its population in a local ``evolve.csv``: one GPU, one population, and distributed runs
overwrite each other. Here the population is every finished trial of the Optuna study, read from the
shared storage at each proposal, so all workers on all machines breed from one population.

The algorithm, as in YOLOv5 (``train.py``, v6/v7):

1. Population = all COMPLETE trials. Take the top ``n = min(5, count)`` by fitness, weights
   ``w = fitness - min(fitness) + 1e-6``, and pick ONE parent by weighted random choice. With no
   finished trial yet the parent is the base hyps (and the base itself is proposed if no trial has
   it yet: "generation 1 trains the unmutated base").
2. Mutate every numeric gene multiplicatively:
   ``v = clip(g * (rand < mp) * randn * rand_shared * s + 1, 0.3, 3.0)`` with ``mp = 0.8``,
   ``s = 0.2``, one uniform and one normal draw per gene for the mask and the step, one uniform draw
   shared by all genes; redraw until some ``v != 1``. The child is ``parent * v`` (so a 0 stays 0 and a
   gene with gain 0 never moves), clipped to [low, high] and rounded to 5 decimals.
3. Fitness is the trial's objective value (negated for minimisation). The study's objective decides
   what it is; YOLOv5's was ``0.1 mAP50 + 0.9 mAP50-95`` (our ``fitness`` metric).

What we add, and why:

- A proposal that the study already has (any trial, running or queued included), that another
  worker claimed first (an atomic claim record in the storage, see ``_claim``) or that equals its
  parent is redrawn: duplicate trainings waste GPU-hours. A running trial counts from the moment it
  is claimed: its queued ``fixed_params`` and the GA's proposal (stored on the trial as the system
  attribute ``ga:proposal`` when it is made) are taken points before the worker stores any param. After ``max_redraws`` tries (a tiny,
  exhausted space) the sampler falls back to uniform random proposals.
- Integer genes mutate like floats and are rounded to their step; float genes with a step snap to it.
- Categorical genes (YOLOv5 has none) switch to a uniformly chosen other choice with probability
  ``min(1, mp * s * gain)`` (0.16 at gain 1): about as often as a numeric gene moves by more than
  its typical step, and never when the gain is 0. A switch counts as a change for the redraw rule.
- Pruned trials are not parents (their values are partial) but still count as taken points.
- The population is always the whole study, also under Hyperband (which otherwise shows samplers
  only the trials of one bracket).
- The random state is seeded (never from the clock): the same seed gives the same proposals for the
  same population; workers get different seeds.
- Constraints (``Trial.set_constraint``, see :mod:`hpo.search.cost`): feasibility first. While any
  complete trial is feasible, only feasible trials are parents; otherwise the parents are the least
  violating trials (fitness = minus the summed violation).
- Several objectives: the fitness of a parent is its non-dominated rank (front 0 best), ties within a
  front broken by the primary (first) objective: ``fitness = -rank + 0.5 * primary`` with the primary
  scaled to [0, 1] over the population, so a front never overtakes a better one.
- ``mutation="bounded"`` (the study file's ``ga: {mutation: bounded}``): the step Ultralytics 8.4's tuner
  takes instead of YOLOv5's. Each numeric gene is placed in [0, 1] over its range (over its logarithm
  for a log-scale gene), moves with probability ``mutation_prob`` (default 0.5 here) by ``randn * sigma
  * gain`` in that unit interval, and is clipped back into it. YOLOv5's multiplicative step moves a
  gene by a share of its own value (6 % at gain 1 on average), so a gene near 0 can hardly
  move, one at 0 never does, and a wide range (lr0 over three decades) takes dozens of generations to
  cross; the bounded step moves every gene by a share of its range. The parent selection is the same.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from hpo import attrs, optuna_compat

MUTATION_PROB = 0.8
BOUNDED_MUTATION_PROB = 0.5  # Ultralytics 8.4's Tuner: each gene moves with probability 0.5
SIGMA = 0.2
MUTATIONS = ("yolov5", "bounded")
FACTOR_MIN, FACTOR_MAX = 0.3, 3.0
TOP_N = 5
DECIMALS = 5


class YoloV5GASampler(BaseSampler):
    """YOLOv5's evolve GA over a fixed search space, breeding from the study's shared population.

    Args:
        search_space: Optuna distributions of the genes (every trial samples all of them).
        gains: mutation gain per gene (YOLOv5's table); missing genes get 1.
        base: the unmutated first individual; missing genes start at the middle of their range.
        seed: seed of the sampler's random state.
        top_n: how many of the best individuals may become the parent.
        max_redraws: redraws allowed to find a new point before falling back to random sampling.
        mutation: ``"yolov5"`` (multiplicative, the contest's) or ``"bounded"`` (a step that is a share
            of the gene's range, Ultralytics 8.4's); see the module docstring.
        mutation_prob: chance that a gene moves in one mutation (default 0.8 for yolov5, 0.5 for bounded).
        sigma: the step's scale: of the factor (yolov5) or of the range (bounded).
    """

    def __init__(
        self,
        search_space: dict[str, BaseDistribution],
        gains: dict[str, float] | None = None,
        base: dict[str, Any] | None = None,
        *,
        seed: int | None = None,
        top_n: int = TOP_N,
        mutation: str = "yolov5",
        mutation_prob: float | None = None,
        sigma: float = SIGMA,
        max_redraws: int = 1000,
    ) -> None:
        if not search_space:
            raise ValueError("the GA needs a non-empty search space")
        if mutation not in MUTATIONS:
            raise ValueError(f"unknown GA mutation {mutation!r} (choose from {', '.join(MUTATIONS)})")
        self._mutation = mutation
        if mutation_prob is None:
            mutation_prob = MUTATION_PROB if mutation == "yolov5" else BOUNDED_MUTATION_PROB
        self._space = dict(search_space)
        self._names = list(self._space)
        self._gains = {n: float((gains or {}).get(n, 1.0)) for n in self._names}
        # The genes that mutate numerically and those that switch choices, fixed with the space.
        self._numeric = [n for n in self._names if not isinstance(self._space[n], CategoricalDistribution)]
        self._categorical = [n for n in self._names if n not in self._numeric]
        self._numeric_gains = np.array([self._gains[n] for n in self._numeric], dtype=float)
        self._base = {n: (base or {}).get(n, _middle(d)) for n, d in self._space.items()}
        self._top_n = top_n
        self._mp = mutation_prob
        self._sigma = sigma
        self._max_redraws = max_redraws
        self._rng = np.random.RandomState(seed)
        self._fallback = RandomSampler(seed=None if seed is None else seed + 1)
        self.last_parent: dict[str, Any] | None = None  # for tests and trial attributes

    # --- BaseSampler interface ---------------------------------------------------------------

    def reseed_rng(self) -> None:
        self._rng.seed()
        self._fallback.reseed_rng()

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return dict(self._space)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space or trial.system_attrs.get(attrs.FIXED_PARAMS):
            return {}  # a queued trial (the base, a retry) trains its own params
        # One population for the whole study: Hyperband hands samplers a per-bracket view of the
        # study (``_BracketStudy``), which would split the population and let brackets repeat points.
        whole_study = optuna_compat.whole_study(study)
        trials = whole_study.get_trials(deepcopy=False)
        taken = {self._key(p) for p in _known_points(trials, exclude=trial.number)}
        population = [t for t in trials if t.state == TrialState.COMPLETE and t.values is not None
                      and all(n in t.params for n in self._names)]
        if not population:
            parent = dict(self._base)
            if self._key(parent) not in taken and _claim(whole_study, trial, parent, self._key(parent)):
                self.last_parent = None
                return parent
        else:
            population, fitness = selection_fitness(population, study.directions)
            parent = self.select_parent([t.params for t in population], fitness)
        self.last_parent = parent
        for _ in range(self._max_redraws):
            child = self.mutate(parent)
            key = self._key(child)
            if key not in taken and key != self._key(parent):
                if _claim(whole_study, trial, child, key):
                    return child
                taken.add(key)  # another worker claimed it between our read and our claim
        return {}  # exhausted: sample_independent (random) proposes every gene

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)

    # --- the algorithm -----------------------------------------------------------------------

    def select_parent(self, params: Sequence[dict[str, Any]], fitness: Sequence[float]) -> dict[str, Any]:
        """YOLOv5 'single' selection: one of the top n, weighted by fitness above the worst of them."""
        order = np.argsort(-np.asarray(fitness, dtype=float), kind="stable")[: min(self._top_n, len(fitness))]
        top = np.asarray(fitness, dtype=float)[order]
        weights = top - top.min() + 1e-6
        chosen = order[self._rng.choice(len(order), p=weights / weights.sum())]
        return {n: params[chosen][n] for n in self._names}

    def mutation_factors(self) -> np.ndarray:
        """One draw of YOLOv5's factor vector over the numeric genes (redrawn until one moves)."""
        g, ng = self._numeric_gains, len(self._numeric)
        v = np.ones(ng)
        if not ng or not np.any(g > 0):
            return v
        while np.all(v == 1):
            v = (g * (self._rng.random_sample(ng) < self._mp) * self._rng.standard_normal(ng)
                 * self._rng.random_sample() * self._sigma + 1).clip(FACTOR_MIN, FACTOR_MAX)
        return v

    def bounded_steps(self) -> np.ndarray:
        """One draw of the bounded steps over the numeric genes, in units of each gene's range
        (redrawn until one moves): ``mask * randn * sigma * gain`` with ``P(mask) = mutation_prob``."""
        g, ng = self._numeric_gains, len(self._numeric)
        steps = np.zeros(ng)
        if not ng or not np.any(g > 0):
            return steps
        while not np.any(steps != 0):
            steps = (self._rng.random_sample(ng) < self._mp) * self._rng.standard_normal(ng) * self._sigma * g
        return steps

    def mutate(self, parent: dict[str, Any]) -> dict[str, Any]:
        """A child of ``parent``: numeric mutation (multiplicative or bounded), categorical switches."""
        numeric, categorical = self._numeric, self._categorical
        bounded = self._mutation == "bounded"
        while True:
            child: dict[str, Any] = {}
            if bounded:
                steps = self.bounded_steps() if numeric else np.zeros(0)
                moved = bool(np.any(steps != 0))
                for name, step in zip(numeric, steps):
                    dist = self._space[name]
                    unit = min(max(_to_unit(float(parent[name]), dist) + float(step), 0.0), 1.0)
                    child[name] = _constrain(_from_unit(unit, dist), dist)
            else:
                factors = self.mutation_factors() if numeric else np.ones(0)
                moved = bool(np.any(factors != 1))
                for name, v in zip(numeric, factors):
                    child[name] = _constrain(float(parent[name]) * float(v), self._space[name])
            switched = False
            for name in categorical:
                dist = self._space[name]
                assert isinstance(dist, CategoricalDistribution)
                p_switch = min(1.0, self._mp * self._sigma * self._gains[name])
                if self._rng.random_sample() < p_switch:
                    others = [c for c in dist.choices if c != parent[name]]
                    child[name] = others[self._rng.randint(len(others))]
                    switched = True
                else:
                    child[name] = parent[name]
            if switched or moved or not any(self._gains[n] > 0 for n in self._names):
                return child

    def _key(self, params: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(_key_value(params.get(n)) for n in self._names)


def _violation(trial: FrozenTrial) -> float:
    return float(sum(max(0.0, v) for v in trial.constraints.values()))


def selection_fitness(population: Sequence[FrozenTrial],
                      directions: Sequence[StudyDirection]) -> tuple[list[FrozenTrial], list[float]]:
    """The trials that may be parents and their fitness (higher is better): feasible trials first
    (else the least violating, by violation), several objectives by non-dominated rank."""
    feasible = [t for t in population if _violation(t) <= 0]
    if not feasible:
        return list(population), [-_violation(t) for t in population]
    signs = np.array([1.0 if d == StudyDirection.MAXIMIZE else -1.0 for d in directions])
    values = np.array([[float(v) for v in t.values] for t in feasible]) * signs  # larger is better
    if len(directions) == 1:
        return feasible, list(values[:, 0])
    ranks = pareto_ranks(values)
    primary = values[:, 0]
    span = float(primary.max() - primary.min()) or 1.0
    return feasible, list(-ranks + 0.5 * (primary - primary.min()) / span)


def pareto_ranks(values: np.ndarray) -> np.ndarray:
    """Non-dominated rank of each row (every column maximised): 0 for the front, 1 for the next, ..."""
    n = len(values)
    ranks = np.full(n, -1)
    remaining = set(range(n))
    rank = 0
    while remaining:
        front = [i for i in remaining
                 if not any(np.all(values[j] >= values[i]) and np.any(values[j] > values[i])
                            for j in remaining if j != i)]
        for i in front:
            ranks[i] = rank
            remaining.discard(i)
        rank += 1
    return ranks


def _key_value(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, DECIMALS + 3)
    return value


def _claim(study: Study, trial: FrozenTrial, proposal: dict[str, Any], key: tuple[Any, ...]) -> bool:
    """Claim the point for this trial, atomically: False if another worker holds it already.

    Reading the trials and then recording a proposal leaves a window in which a worker asking at
    the same moment reads the same trials and breeds the same child. hpo's storage inserts one claim
    record per point (a study system attribute keyed by the point's hash, unique per study): of two
    workers claiming one point exactly one succeeds. The proposal is also recorded on the trial, so
    readers that come later see it as taken before the worker stores its params.
    """
    backend = optuna_compat.backend_of(study)
    if hasattr(backend, "claim_study_key"):
        digest = hashlib.sha1(json.dumps(list(key), default=str).encode()).hexdigest()
        if not backend.claim_study_key(optuna_compat.study_id(study), attrs.GA_CLAIM_PREFIX + digest,
                                       trial.number):
            return False
    optuna_compat.storage_of(study).set_trial_system_attr(optuna_compat.trial_id(trial), attrs.GA_PROPOSAL, proposal)
    return True


def _known_points(trials: Sequence[FrozenTrial], exclude: int) -> list[dict[str, Any]]:
    """Every point the study has or will train: stored params, queued params and GA proposals.

    A claimed trial holds its queued ``fixed_params`` (or the GA's proposal) before the worker stores
    its params, so all three sources count, whatever the trial's state.
    """
    points = []
    for t in trials:
        if t.number == exclude:
            continue
        for source in (t.system_attrs.get(attrs.FIXED_PARAMS), t.system_attrs.get(attrs.GA_PROPOSAL), t.params):
            if source:
                points.append(source)
    return points


def _middle(dist: BaseDistribution) -> Any:
    if isinstance(dist, CategoricalDistribution):
        return dist.choices[0]
    return _constrain(_from_unit(0.5, dist), dist)


def _to_unit(value: float, dist: BaseDistribution) -> float:
    """Where ``value`` lies in the range of ``dist``, as a share of it (of its logarithm on a log scale)."""
    assert isinstance(dist, (FloatDistribution, IntDistribution))
    if dist.high == dist.low:
        return 0.0
    if dist.log:
        return (math.log(max(value, dist.low)) - math.log(dist.low)) / (math.log(dist.high) - math.log(dist.low))
    return (value - dist.low) / (dist.high - dist.low)


def _from_unit(unit: float, dist: BaseDistribution) -> float:
    assert isinstance(dist, (FloatDistribution, IntDistribution))
    if dist.log:
        return math.exp(math.log(dist.low) + unit * (math.log(dist.high) - math.log(dist.low)))
    return dist.low + unit * (dist.high - dist.low)


def _constrain(value: float, dist: BaseDistribution) -> Any:
    """Clip to [low, high], round to 5 decimals (YOLOv5), then honour the distribution's grid."""
    assert isinstance(dist, (FloatDistribution, IntDistribution))
    value = min(max(value, dist.low), dist.high)
    if isinstance(dist, IntDistribution):
        steps = round((value - dist.low) / dist.step)
        return int(min(dist.low + steps * dist.step, dist.high))
    value = round(value, DECIMALS)
    if dist.step is not None:
        steps = round((value - dist.low) / dist.step)
        value = dist.low + steps * dist.step
    return float(min(max(value, dist.low), dist.high))

