"""The reference-curve pruners (`base`, `incumbent`): decisions on real Optuna studies with curves
written the way workers write them (one report per epoch), no training."""

from __future__ import annotations

import optuna
import pytest

from hpo.attrs import BASE_TRIAL
from hpo.search.pruners import PRUNERS, ReferenceCurvePruner

# Shapes seen on the fine-tuning problem (bench/results.md): the base hyps' curve is shaken by the
# warm-up (a dip at epoch 2), a too-high lr0 collapses, a good trial climbs steadily.
BASE = [0.536, 0.458, 0.700, 0.567, 0.712]
COLLAPSED = [0.121, 0.040, 0.123, 0.522, 0.370]
GOOD = [0.674, 0.686, 0.698, 0.712, 0.722]


def _study(direction: str = "maximize") -> optuna.Study:
    return optuna.create_study(direction=direction, storage=optuna.storages.InMemoryStorage())


def _finished(study: optuna.Study, curve: list[float], *, base: bool = False) -> None:
    trial = study.ask()
    if base:
        trial.set_user_attr(BASE_TRIAL, True)
    for epoch, value in enumerate(curve, 1):
        trial.report(value, epoch)
    study.tell(trial, max(curve) if study.direction.name == "MAXIMIZE" else min(curve))


def _epochs_before_pruned(study: optuna.Study, pruner: optuna.pruners.BasePruner, curve: list[float]) -> int | None:
    """Report ``curve`` epoch by epoch; the epoch the pruner stops it at (None: it trains to the end)."""
    trial = study.ask()
    for epoch, value in enumerate(curve, 1):
        trial.report(value, epoch)
        if pruner.prune(study, study._storage.get_trial(trial._trial_id)):
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return epoch
    study.tell(trial, curve[-1])
    return None


def test_base_reference_prunes_what_breaks_the_model_and_spares_the_base_dip() -> None:
    study = _study()
    _finished(study, BASE, base=True)
    pruner = ReferenceCurvePruner("base", margin=0.042)
    assert _epochs_before_pruned(study, pruner, COLLAPSED) == 1
    assert _epochs_before_pruned(study, pruner, GOOD) is None
    # Best so far, not the epoch's value: a trial that dips like the base did at epoch 2 goes on.
    assert _epochs_before_pruned(study, pruner, [0.60, 0.30, 0.69, 0.70, 0.71]) is None
    # Behind by less than the margin (seed luck) is not behind.
    assert _epochs_before_pruned(study, pruner, [0.50, 0.50, 0.66, 0.67, 0.68]) is None
    assert _epochs_before_pruned(study, pruner, [0.50, 0.50, 0.60, 0.60, 0.60]) == 3


def test_incumbent_reference_follows_the_best_finished_trial() -> None:
    study = _study()
    _finished(study, BASE, base=True)
    pruner = ReferenceCurvePruner("incumbent", margin=0.02)
    assert _epochs_before_pruned(study, pruner, GOOD) is None  # 0.674 at epoch 1 beats base's 0.536
    # Now GOOD (0.722) is the incumbent: a base-like curve is out of reach from epoch 1 on.
    assert _epochs_before_pruned(study, pruner, BASE) == 1
    assert _epochs_before_pruned(study, pruner, [0.70, 0.70, 0.71, 0.73, 0.75]) is None


def test_no_reference_no_pruning_and_the_base_itself_is_never_pruned() -> None:
    study = _study()
    pruner = ReferenceCurvePruner("base")
    assert _epochs_before_pruned(study, pruner, COLLAPSED) is None  # no base trial in the study
    # A base still training counts up to the epoch it reached, and not beyond.
    base = study.ask()
    base.set_user_attr(BASE_TRIAL, True)
    base.report(0.536, 1)
    trial = study.ask()
    trial.report(0.9, 1)
    trial.report(0.1, 2)
    assert not pruner.prune(study, study._storage.get_trial(trial._trial_id))  # base has no epoch 2 yet
    late = study.ask()
    late.report(0.1, 1)
    assert pruner.prune(study, study._storage.get_trial(late._trial_id))
    base_again = study.ask()
    base_again.set_user_attr(BASE_TRIAL, True)
    base_again.report(0.0, 1)
    assert not pruner.prune(study, study._storage.get_trial(base_again._trial_id))


def test_minimised_objectives_and_min_epochs() -> None:
    study = _study("minimize")
    _finished(study, [0.5, 0.4, 0.3], base=True)
    pruner = ReferenceCurvePruner("base", margin=0.05, min_epochs=2)
    assert _epochs_before_pruned(study, pruner, [0.9, 0.9, 0.9]) == 2  # never before min_epochs
    assert _epochs_before_pruned(study, pruner, [0.45, 0.42, 0.33]) is None
    with pytest.raises(ValueError, match="reference"):
        ReferenceCurvePruner("median")


def test_registry_takes_margin_and_min_epochs_from_the_spec(tmp_path) -> None:
    from hpo.spec import parse_spec
    from conftest import SEED_SEARCH

    spec = parse_spec({"name": "t", "model": "yolov5n.yaml", "data": str(tmp_path / "d.yaml"), "train": {"epochs": 4, "optimizer": "SGD"}, "search_space": SEED_SEARCH["search_space"],
                       "prune_after": 2, "noise": {"std": 0.03}}, stored=True)
    for name in ("base", "incumbent"):
        pruner = PRUNERS[name](spec)
        assert (pruner.reference, pruner.margin, pruner.min_epochs) == (name, 0.03, 2)
    assert PRUNERS["base"](spec.model_copy(update={"noise": None})).margin == 0.0


def test_per_epoch_margin_spares_mid_training_swings_and_still_prunes_late(tmp_path) -> None:
    """`noise.per_epoch`: a wide margin while values swing between seeds, the final one's at the end."""
    study = _study()
    _finished(study, BASE, base=True)
    wide_then_narrow = ReferenceCurvePruner("base", margin=[0.2, 0.2, 0.1, 0.05, 0.02])
    final_only = ReferenceCurvePruner("base", margin=0.02)
    seed_luck = [0.40, 0.45, 0.62, 0.70, 0.71]  # 0.136 behind the base at epoch 1, level by epoch 4
    assert _epochs_before_pruned(study, final_only, seed_luck) == 1
    assert _epochs_before_pruned(study, wide_then_narrow, seed_luck) is None
    assert _epochs_before_pruned(study, wide_then_narrow, COLLAPSED) == 1  # broken: behind by more than 0.2
    assert _epochs_before_pruned(study, wide_then_narrow, [0.5, 0.5, 0.62, 0.63, 0.63]) == 4
    assert ReferenceCurvePruner("base", margin=[0.3, 0.1]).margin_at(5) == 0.1  # the last serves later epochs
    with pytest.raises(ValueError, match="margin"):
        ReferenceCurvePruner("base", margin=[0.1, -0.1])

    from hpo.spec import parse_spec
    from conftest import SEED_SEARCH

    data = {"name": "t", "model": "yolov5n.yaml", "data": str(tmp_path / "d.yaml"),
            "train": {"epochs": 3, "optimizer": "SGD"}, "search_space": SEED_SEARCH["search_space"],
            "noise": {"std": 0.01, "per_epoch": [0.04, 0.03, 0.01]}}
    spec = parse_spec(data, stored=True)
    assert PRUNERS["incumbent"](spec).margin == [0.04, 0.03, 0.01]
    with pytest.raises(Exception, match=r"noise.per_epoch: 2 values for 3 training epochs"):
        parse_spec({**data, "noise": {"std": 0.01, "per_epoch": [0.04, 0.03]}}, stored=True)
