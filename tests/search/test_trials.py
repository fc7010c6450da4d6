"""Real tiny Ultralytics trainings as Optuna trials: per-epoch reports, pruning, failures."""

from __future__ import annotations

from pathlib import Path

import optuna
import yaml
from optuna.trial import TrialState

from hpo.attrs import BASE_TRIAL, FAIL_REASON as ATTR_FAIL_REASON
from hpo.spec import parse_spec
from hpo.storage import open_storage
from hpo.study import create_or_join, load_settings
from hpo.search.trial_runner import TrialRunner
from hpo.search.worker import Worker

from conftest import tiny_spec_dict


def test_trial_reports_every_epoch_and_is_pruned(toy_data: Path, tmp_path: Path) -> None:
    spec = parse_spec(tiny_spec_dict(toy_data, epochs=3))
    runner = TrialRunner(spec, runs_dir=tmp_path / "runs", device="cpu")
    # Trial 0 completes; trial 1 is pruned after its second epoch by a real Optuna pruner.
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    study.enqueue_trial(spec.base_params())
    study.optimize(runner, n_trials=1)
    done = study.trials[0]
    assert done.state == TrialState.COMPLETE
    assert sorted(done.intermediate_values) == [1, 2, 3]  # step = epoch, final best.pt eval not reported
    assert done.value == max(done.intermediate_values.values())
    for key in ("precision", "recall", "map50", "map75", "map50-95", "fitness", "epochs", "train_seconds",
                "weight_bytes", "final_metrics"):
        assert key in done.user_attrs, key
    assert done.user_attrs["epochs"] == 3
    trial_dir = Path(done.user_attrs["hpo:dir"])
    assert trial_dir == (tmp_path / "runs" / spec.name / "trial_0000").resolve()
    assert (trial_dir / "weights" / "best.pt").is_file() and (trial_dir / "results.csv").is_file()
    assert yaml.safe_load((trial_dir / "hyp.yaml").read_text()) == spec.training_args(done.params)  # full config

    study.pruner = optuna.pruners.ThresholdPruner(lower=0.99, n_warmup_steps=2)
    study.optimize(runner, n_trials=1)
    pruned = study.trials[1]
    assert pruned.state == TrialState.PRUNED
    assert sorted(pruned.intermediate_values) == [1, 2]  # stopped right after epoch 2
    assert pruned.user_attrs["epochs"] == 2

    # The base hyps are the yardstick of every gain: the same pruner reads their epochs but never stops them.
    study.enqueue_trial(spec.base_params(), user_attrs={BASE_TRIAL: True})
    study.optimize(runner, n_trials=1)
    base = study.trials[2]
    assert base.state == TrialState.COMPLETE and sorted(base.intermediate_values) == [1, 2, 3]
    assert base.value == done.value  # deterministic: the same hyps, seed and data as trial 0

    # A pruner that would stop a trial only at its last epoch is not asked there: the epochs are paid.
    study.pruner = optuna.pruners.ThresholdPruner(lower=0.99, n_warmup_steps=3)
    study.optimize(runner, n_trials=1)
    assert study.trials[3].state == TrialState.COMPLETE and sorted(study.trials[3].intermediate_values) == [1, 2, 3]


def test_failing_trials_are_recorded_and_the_worker_goes_on(toy_data: Path, tmp_path: Path) -> None:
    """A crash (bad model file) and a NaN loss are FAIL with a reason; the budget is still met."""
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}")
    raw = tiny_spec_dict(toy_data, name="fails", epochs=1, trials=1)
    raw["search_space"]["box"] = {"type": "float", "low": 1.0, "high": 1e38, "log": True}
    raw["base"]["box"] = 7.5
    spec = parse_spec(raw)
    settings = create_or_join(storage, spec, sampler="random", pruner="none")
    study = optuna.load_study(study_name="fails", storage=storage)
    study.enqueue_trial({"lr0": 0.01, "lrf": 0.1, "momentum": 0.9, "box": 1e38})  # loss overflows
    runner = TrialRunner(spec, runs_dir=tmp_path / "runs", device="cpu")
    calls = {"n": 0}

    def objective(trial: optuna.Trial) -> float:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")  # what torch raises
        return runner(trial)

    Worker(study, settings, objective, runs_dir=tmp_path / "runs").run()
    trials = study.trials
    states = [t.state for t in trials]
    assert states[0] == TrialState.FAIL
    assert trials[0].user_attrs[ATTR_FAIL_REASON].startswith("out of memory: CUDA out of memory")
    nan = [t for t in trials if t.params.get("box") == 1e38]
    assert nan and nan[0].state == TrialState.FAIL
    assert nan[0].user_attrs[ATTR_FAIL_REASON] == "NaNLossError: loss is NaN/Inf at epoch 1"
    assert states.count(TrialState.COMPLETE) + states.count(TrialState.PRUNED) == 1  # the budget
    assert load_settings(storage, "fails").budget == 1
