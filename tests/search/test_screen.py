"""The screen pruner: every trial first trains a short full schedule, the best share trains in full.

Real `hpo launch` with real Ultralytics fine-tuning from the committed weights on the toy set (from
scratch every trial scores 0 and the screen could not rank anything), and the promotion rule alone.
"""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from hpo import attrs
from hpo.errors import HpoError
from hpo.search.pruners import ScreenPruner, create_pruner
from hpo.spec import parse_spec
from hpo.storage import open_storage
from hpo.study import create_or_join, load_settings

from conftest import hpo_cmd

WEIGHTS = Path(__file__).resolve().parents[2] / "weights" / "yolov5n-p6-pasture.pt"


def _spec(toy_data: Path, **extra) -> dict:
    spec = {
        "name": "scr",
        "model": "yolov5n-p6.yaml",
        "weights": str(WEIGHTS),
        "data": str(toy_data),
        "train": {"epochs": 2, "imgsz": 96, "batch": 8, "nbs": 8, "optimizer": "SGD", "cos_lr": True,
                  "close_mosaic": 0, "seed": 0, "workers": 0},
        "objective": {"metric": "map50", "direction": "maximize"},
        "search_space": {"lr0": {"type": "float", "low": 1e-4, "high": 0.1, "log": True}},
        "base": {"lr0": 0.01, "momentum": 0.9, "warmup_epochs": 0},
        "sampler": "random",
        "pruner": "screen",
        "screen": {"epochs": 1, "keep": 0.34},
        "trials": 5,
    }
    spec.update(extra)
    return spec


def _screened(study: optuna.Study, number: int, value: float) -> optuna.trial.FrozenTrial:
    trial = study.ask()
    assert trial.number == number
    trial.set_user_attr(attrs.SCREEN, {"epochs": 1, "value": value})
    return trial


def test_promotion_ranks_the_screen_value_among_every_screened_trial() -> None:
    study = optuna.create_study(direction="maximize")
    pruner = ScreenPruner(epochs=3, keep=0.25)
    for number, value in enumerate([0.50, 0.70, 0.40]):
        _screened(study, number, value)
    # a fourth trial: 4 screened, the top ceil(0.25 * 4) = 1 goes on
    assert pruner.promotes(study, 3, 0.71)[0] and not pruner.promotes(study, 3, 0.69)[0]
    assert pruner.promotes(study, 3, 0.70)[0]  # a tie with the best is not behind it
    promoted, why = pruner.promotes(study, 3, 0.45)
    assert not promoted and "ranks 3 of 4" in why and "top 1 (25%)" in why
    # with 8 screened the top 2 go on; minimised objectives rank the other way
    for number, value in zip(range(3, 7), [0.1, 0.2, 0.3, 0.6]):
        _screened(study, number, value)
    assert pruner.promotes(study, 7, 0.65)[0] and not pruner.promotes(study, 7, 0.55)[0]
    low = optuna.create_study(direction="minimize")
    for number, value in enumerate([0.5, 0.7, 0.4]):
        _screened(low, number, value)
    assert ScreenPruner(3, 0.25).promotes(low, 3, 0.3)[0] and not ScreenPruner(3, 0.25).promotes(low, 3, 0.45)[0]
    assert not pruner.prune(study, study.trials[0])  # the full training is never pruned


def test_screen_must_be_shorter_than_the_training(toy_data: Path, tmp_path: Path) -> None:
    with pytest.raises(HpoError, match="screen.epochs: 2 is not fewer than the 2 training epochs"):
        parse_spec(_spec(toy_data, screen={"epochs": 2}))
    spec = parse_spec(_spec(toy_data, pruner="none", screen={"epochs": 2}))  # unused: fine
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}")
    with pytest.raises(HpoError, match="--pruner"):
        create_or_join(storage, spec, pruner="screen")
    settings = create_or_join(storage, parse_spec(_spec(toy_data, name="ok")), pruner="screen")
    assert settings.epochs_per_trial == 3 and isinstance(create_pruner("screen", settings.spec), ScreenPruner)
    assert load_settings(storage, "ok").epochs_per_trial == 3


@pytest.mark.timeout(600)
def test_launch_screens_every_trial_and_trains_only_the_best_share_in_full(toy_data: Path, tmp_path: Path) -> None:
    study_file = tmp_path / "scr.yaml"
    study_file.write_text(yaml.safe_dump(_spec(toy_data)))
    db = f"sqlite:///{tmp_path / 'scr.db'}"
    runs = tmp_path / "runs"
    proc = subprocess.run(hpo_cmd("launch", "--study", str(study_file), "--storage", db, "--workers", "1",
                                  "--seed", "1", "--device", "cpu", "--artifacts", "off", "--runs-dir", str(runs),
                                  "--keep", "0", "--json"),
                          capture_output=True, text=True, cwd=tmp_path, timeout=580)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["done"]
    trials = optuna.load_study(study_name="scr", storage=db).trials
    assert len(trials) == 5 and all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    seen: list[float] = []
    for t in trials:  # one worker: each trial was screened after every lower-numbered one
        screen = t.user_attrs[attrs.SCREEN]
        assert screen["epochs"] == 1 and len(screen["values"]) == 1 and screen["value"] == t.intermediate_values[0]
        assert (runs / "scr" / f"trial_{t.number:04d}" / "screen" / "results.csv").is_file()
        assert not (runs / "scr" / f"trial_{t.number:04d}" / "screen" / "weights").exists()
        seen.append(screen["value"])
        rank = 1 + sum(v > screen["value"] for v in seen[:-1])
        expected = t.number == 0 or rank <= math.ceil(0.34 * len(seen))
        assert screen["promoted"] is expected, (t.number, seen, screen)
        if expected:
            assert t.state == TrialState.COMPLETE and t.user_attrs[attrs.EPOCHS] == 1 + 2
            assert sorted(t.intermediate_values) == [0, 1, 2]
        else:
            assert t.state == TrialState.PRUNED and t.user_attrs[attrs.EPOCHS] == 1
            assert t.user_attrs["pruned_reason"].startswith("screened out: screen value")
            assert list(t.intermediate_values) == [0]
    assert trials[0].user_attrs.get(attrs.BASE_TRIAL)
    assert any(t.state == TrialState.PRUNED for t in trials)  # the screen saved something
