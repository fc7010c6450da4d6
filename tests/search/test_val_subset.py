"""`val_fraction`: epochs before the last validate on a fixed subset, the last one (the trial's value) on all."""

from __future__ import annotations

import threading
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hpo import attrs
from hpo.errors import HpoError
from hpo.search.trial_runner import TrialRecord, TrialRunner
from hpo.search.val_subset import subset_batches
from hpo.spec import parse_spec
from hpo.search.worker import Worker
from hpo.storage import open_storage
from hpo.study import create_or_join

from conftest import tiny_spec_dict


def test_subset_is_whole_batches_spread_over_the_loader() -> None:
    assert subset_batches(16, 4, 0.25) == [[0, 1, 2, 3]]
    assert subset_batches(100, 10, 0.3) == [list(range(0, 10)), list(range(40, 50)), list(range(90, 100))]
    assert subset_batches(95, 10, 0.2) == [list(range(0, 10)), list(range(90, 95))]  # the short last batch
    assert subset_batches(16, 4, 1.0) is None and subset_batches(8, 16, 0.1) is None  # all, or one batch anyway
    assert subset_batches(100, 10, 0.3) == subset_batches(100, 10, 0.3)  # fixed: same for every trial and epoch
    with pytest.raises(ValueError):
        subset_batches(10, 2, 0)


def test_val_fraction_is_validated_in_the_study_file(toy_data: Path) -> None:
    assert parse_spec(tiny_spec_dict(toy_data)).val_fraction == 1.0
    for bad in (0, 1.5, "x"):
        with pytest.raises(HpoError) as err:
            parse_spec({**tiny_spec_dict(toy_data), "val_fraction": bad})
        assert "val_fraction" in str(err.value)


def test_only_full_set_epochs_give_the_trial_its_value() -> None:
    record = TrialRecord(epochs=3, values=[0.9, 0.8, 0.5], on_subset=[True, True, False])
    assert record.value("maximize") == 0.5  # the subset's 0.9 steers pruning only
    with pytest.raises(RuntimeError, match="full set"):
        TrialRecord(epochs=2, values=[0.9, 0.8], on_subset=[True, True]).value("maximize")
    assert TrialRecord(epochs=2, values=[0.9, 0.8]).value("maximize") == 0.9  # no subset: unchanged


def test_intermediate_epochs_validate_on_the_subset_and_the_last_on_every_image(toy_data: Path,
                                                                                tmp_path: Path) -> None:
    """Real tiny trainings: 16 validation images, batch 2 (Ultralytics validates in batches of 4)."""
    base = tiny_spec_dict(toy_data, epochs=3)
    base["train"] = {**base["train"], "batch": 2, "nbs": 2}
    values = {}
    for fraction in (0.25, 1.0):
        spec = parse_spec({**base, "val_fraction": fraction})
        runner = TrialRunner(spec, runs_dir=tmp_path / f"runs{fraction}", device="cpu")
        study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
        study.enqueue_trial(spec.base_params())
        study.optimize(runner, n_trials=1)
        trial = study.trials[0]
        assert trial.state == TrialState.COMPLETE, trial.user_attrs
        values[fraction] = trial
    subset, full = values[0.25], values[1.0]
    assert subset.user_attrs[attrs.VAL_IMAGES] == [4, 4, 16]  # what the validator really saw, per epoch
    assert subset.user_attrs[attrs.VAL_SUBSET] == [True, True, False]
    assert sorted(subset.intermediate_values) == [1, 2, 3]  # every epoch still reported to the pruner
    assert subset.value == subset.intermediate_values[3]  # the trial's value: the full-set epoch
    assert subset.user_attrs["fitness"] == pytest.approx(subset.value)
    assert attrs.VAL_SUBSET not in full.user_attrs  # val_fraction 1: as before
    # Deterministic CPU training: the same weights at epoch 3, so the full-set figures agree exactly.
    assert subset.intermediate_values[3] == pytest.approx(full.intermediate_values[3], abs=1e-9)
    trial_dir = Path(subset.user_attrs[attrs.DIR])
    assert (trial_dir / "weights" / "best.pt").is_file()
    assert subset.user_attrs[attrs.FINAL_METRICS]  # Ultralytics' final validation of best.pt ran (on the full set)


class _StopAfterFirstEpoch(optuna.pruners.BasePruner):
    """Test helper, not a pruner: asks the worker to stop (as SIGTERM does) once epoch 1 is reported."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        if trial.last_step == 1:
            self.stop.set()
        return False


def test_a_resumed_trial_keeps_which_epochs_saw_the_subset(toy_data: Path, tmp_path: Path) -> None:
    """Stopped after epoch 1 (handed back), resumed from last.pt: epochs 2-3 train in another run, and the
    value is still the full-set epoch 3, with best.pt reset to it although epoch 1 ran elsewhere."""
    base = tiny_spec_dict(toy_data, name="vfresume", epochs=3, trials=1, sampler="random")
    base["train"] = {**base["train"], "batch": 2, "nbs": 2}
    # No base trial: the base hyps are never pruned, so this test's pruner hook would never be asked.
    spec = parse_spec({**base, "base": {}, "val_fraction": 0.25})
    storage = open_storage(f"sqlite:///{tmp_path / 'r.db'}")
    settings = create_or_join(storage, spec)
    first_stop = threading.Event()
    study = optuna.load_study(study_name="vfresume", storage=storage, pruner=_StopAfterFirstEpoch(first_stop))
    runner = TrialRunner(spec, runs_dir=tmp_path / "runs", device="cpu", stop_event=first_stop)
    Worker(study, settings, runner, stop_event=first_stop).run()
    assert study.trials[0].state == TrialState.FAIL and study.trials[0].user_attrs[attrs.VAL_SUBSET] == [True]

    study = optuna.load_study(study_name="vfresume", storage=storage, pruner=optuna.pruners.NopPruner())
    again = threading.Event()
    Worker(study, settings, TrialRunner(spec, runs_dir=tmp_path / "runs", device="cpu", stop_event=again),
           stop_event=again).run()
    retry = study.trials[-1]
    assert retry.state == TrialState.COMPLETE and retry.user_attrs[attrs.RESUMED]["epoch"] == 1
    assert retry.user_attrs[attrs.VAL_SUBSET] == [True, True, False]
    assert retry.user_attrs[attrs.VAL_IMAGES] == [4, 4, 16]
    assert retry.value == retry.intermediate_values[3]
