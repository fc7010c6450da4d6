"""The live display of `hpo launch` and the worker logs: epochs of running trials, an honest ETA."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import optuna
import pytest
from rich.console import Console

from hpo.search.launch import Launcher
from hpo.search.worker import WorkerOptions
from hpo.spec import parse_spec
from hpo.storage import open_storage
from hpo.study import create_or_join
from hpo.testing.curves import LearningCurveTrainer

from conftest import tiny_spec_dict


def _study(toy_data: Path, tmp_path: Path, trials: int) -> tuple[optuna.Study, object]:
    url = f"sqlite:///{tmp_path / 'live.db'}"
    spec = parse_spec(tiny_spec_dict(toy_data, name="live", epochs=10, trials=trials))
    settings = create_or_join(open_storage(url), spec, sampler="random")
    return optuna.load_study(study_name="live", storage=url), settings


def _text(launcher: Launcher) -> str:
    console = Console(record=True, width=200)
    console.print(launcher.render())
    return console.export_text()


def _finish(study: optuna.Study, n: int) -> None:
    for _ in range(n):
        study.tell(study.ask(), 0.5)


def test_running_trials_show_their_epoch(toy_data: Path, tmp_path: Path) -> None:
    study, settings = _study(toy_data, tmp_path, trials=5)
    running = study.ask()
    for epoch, value in ((1, 0.1), (2, 0.2), (3, 0.25)):
        running.report(value, epoch)
    study.ask()  # just started: no epoch yet
    launcher = Launcher(study=study, settings=settings, storage_url="", plans=[], options=WorkerOptions(),
                        console=Console(), show_progress=False)
    text = _text(launcher)
    assert f"trial {running.number}" in text and "epoch 3/10, fitness 0.25" in text
    assert "epoch 0/10 (starting)" in text


def test_eta_counts_only_trials_finished_by_this_launch(toy_data: Path, tmp_path: Path) -> None:
    study, settings = _study(toy_data, tmp_path, trials=20)
    _finish(study, 10)  # an earlier launch finished these
    launcher = Launcher(study=study, settings=settings, storage_url="", plans=[], options=WorkerOptions(),
                        console=Console(), show_progress=False)
    launcher.started = time.time() - 100
    assert "0:01:40 / -" in _text(launcher)  # nothing finished by this launch yet: no guess
    _finish(study, 2)  # two trials in 100 s: 8 remaining take 400 s
    text = _text(launcher)
    assert "0:01:40 / 0:06:4" in text, text


def test_worker_logs_a_line_per_epoch(toy_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    study, settings = _study(toy_data, tmp_path, trials=1)
    trainer = LearningCurveTrainer(settings.spec, runs_dir=tmp_path / "runs")
    with caplog.at_level(logging.INFO, logger="hpo"):
        study.optimize(trainer, n_trials=1)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("hpo")]
    assert [line.split(" fitness ")[0] for line in lines] == [f"trial 0 epoch {e}/10" for e in range(1, 11)]
    assert lines[-1] == f"trial 0 epoch 10/10 fitness {study.trials[0].intermediate_values[10]:.5f}"
