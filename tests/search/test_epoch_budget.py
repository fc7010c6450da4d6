"""A study-wide budget of epochs (the GPU-hour proxy): real `hpo launch` worker processes racing for it.

Pruned trials train fewer epochs, so the same epoch budget buys more trials; the study ends less than
one trial's epochs past the budget however many workers race, and a join can raise it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from hpo import attrs
from hpo.errors import HpoError
from hpo.spec import parse_spec
from hpo.storage import open_storage
from hpo.study import create_or_join, epoch_use, load_settings

from conftest import hpo_cmd, tiny_spec_dict

EPOCHS = 5


def _spec(toy_data: Path, **extra) -> dict:
    spec = tiny_spec_dict(toy_data, name="ep", epochs=EPOCHS, trials=200, sampler="random", pruner="hyperband")
    spec.update(extra)
    return spec


def _trained(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
            and not t.user_attrs.get(attrs.UNTRAINED)]


@pytest.mark.timeout(300)
def test_two_workers_stop_at_the_epoch_budget_and_a_join_raises_it(toy_data: Path, tmp_path: Path) -> None:
    study_file = tmp_path / "ep.yaml"
    study_file.write_text(yaml.safe_dump(_spec(toy_data, epoch_budget=40)))
    db = f"sqlite:///{tmp_path / 'ep.db'}"
    launch = ["launch", "--study", str(study_file), "--storage", db, "--workers", "2", "--trainer", "curve",
              "--curve-epoch-seconds", "0.05", "--artifacts", "off", "--device", "cpu", "--json"]
    proc = subprocess.run(hpo_cmd(*launch), capture_output=True, text=True, cwd=tmp_path, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    study = optuna.load_study(study_name="ep", storage=db)
    trained = _trained(study)
    epochs = sum(t.user_attrs[attrs.EPOCHS] for t in trained)
    assert summary["done"] and summary["epoch_budget"] == 40 and summary["epochs_trained"] == epochs
    assert 40 <= epochs <= 40 + EPOCHS - 1  # never a whole trial past the budget, with 2 workers racing
    assert not [t for t in study.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    pruned = [t for t in trained if t.state == TrialState.PRUNED]
    assert pruned and all(t.user_attrs[attrs.EPOCHS] < EPOCHS for t in pruned)
    assert len(trained) > 40 // EPOCHS  # the epochs pruning saved bought more trials
    assert len({t.user_attrs[attrs.WORKER] for t in trained}) == 2

    # Joining with a larger epoch budget says so and trains on to it.
    proc = subprocess.run(hpo_cmd(*launch[:-1], "--epoch-budget", "60"), capture_output=True, text=True,
                          cwd=tmp_path, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "epoch budget 40 -> 60" in proc.stderr and "epochs trained" in proc.stderr
    used = epoch_use(optuna.load_study(study_name="ep", storage=db), EPOCHS)
    assert 60 <= used.trained <= 60 + EPOCHS - 1 and used.reserved == 0

    status = subprocess.run(hpo_cmd("status", "--storage", db, "--json"), capture_output=True, text=True,
                            timeout=120)
    assert status.returncode == 0, status.stderr
    [shown] = json.loads(status.stdout)
    assert (shown["epochs_trained"], shown["epoch_budget"], shown["done"]) == (used.trained, 60, True)


def test_the_trial_budget_still_caps_a_study_with_an_epoch_budget(toy_data: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'cap.db'}"
    study_file = tmp_path / "ep.yaml"
    study_file.write_text(yaml.safe_dump(_spec(toy_data, epoch_budget=1000, trials=4, pruner="none")))
    proc = subprocess.run(hpo_cmd("launch", "--study", str(study_file), "--storage", db, "--trainer", "curve",
                                  "--artifacts", "off", "--device", "cpu", "--json"),
                          capture_output=True, text=True, cwd=tmp_path, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert summary["done"] and summary["trials"]["finished"] == 4 and summary["epochs_trained"] == 4 * EPOCHS


def test_epoch_budget_is_stored_and_joins_keep_it(toy_data: Path, tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}")
    spec = parse_spec(_spec(toy_data))
    assert create_or_join(storage, spec).epoch_budget is None
    assert create_or_join(storage, spec, epoch_budget=30).changes == ("epoch budget None -> 30",)
    assert create_or_join(storage, spec).epoch_budget == 30  # not given: the stored one
    assert load_settings(storage, "ep").epoch_budget == 30
    with pytest.raises(HpoError, match="epoch_budget: Input should be greater than 0"):
        parse_spec(_spec(toy_data, epoch_budget=0))
