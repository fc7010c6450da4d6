"""Joining a study says what it changes, and refuses a budget below what is already finished."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml

from hpo.cli.app import main
from hpo.errors import HpoError
from hpo.spec import parse_spec
from hpo.storage import open_storage
from hpo.study import create_or_join, load_settings

from conftest import tiny_spec_dict


def _finish(url: str, name: str, n: int) -> None:
    study = optuna.load_study(study_name=name, storage=url)
    for _ in range(n):
        trial = study.ask()
        study.tell(trial, 0.5)


def test_join_keeps_stored_settings_and_names_every_change(toy_data: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'j.db'}"
    storage = open_storage(url)
    spec = parse_spec(tiny_spec_dict(toy_data, name="j", sampler="ga", trials=5))
    created = create_or_join(storage, spec, sampler="random")
    assert created.changes == ()
    assert optuna.load_study(study_name="j", storage=url).metric_names == ["fitness"]  # not "Objective 0"

    joined = create_or_join(storage, spec)  # no --sampler: the stored one, not the file's
    assert (joined.sampler, joined.changes) == ("random", ())
    joined = create_or_join(storage, spec, sampler="tpe", budget=7)
    assert joined.changes == ("sampler random -> tpe", "budget 5 -> 7")
    assert load_settings(storage, "j").sampler == "tpe"


def test_budget_below_finished_is_refused_unless_allowed(toy_data: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'b.db'}"
    storage = open_storage(url)
    spec = parse_spec(tiny_spec_dict(toy_data, name="b", trials=5))
    create_or_join(storage, spec)
    _finish(url, "b", 4)
    with pytest.raises(HpoError, match=r"^--trials: budget 3 is below the 4 trials study 'b' has already finished"):
        create_or_join(storage, spec, budget=3)
    assert load_settings(storage, "b").budget == 5  # nothing changed
    assert create_or_join(storage, spec, budget=4).changes == ("budget 5 -> 4",)
    assert create_or_join(storage, spec, budget=2, allow_budget_cut=True).changes == ("budget 4 -> 2",)


def test_launch_warns_about_changes_and_refuses_a_cut(toy_data: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "w.yaml"
    spec.write_text(yaml.safe_dump(tiny_spec_dict(toy_data, name="w", sampler="ga", trials=3)))
    base = ["launch", "--study", str(spec), "--storage", str(tmp_path / "w.db"), "--trainer", "curve",
            "--artifacts", "off", "--device", "cpu"]
    assert main([*base, "--create-only"]) == 0
    capsys.readouterr()
    assert main([*base, "--create-only", "--sampler", "tpe"]) == 0
    assert "warning: study w: sampler ga -> tpe" in capsys.readouterr().err
    _finish(f"sqlite:///{tmp_path / 'w.db'}", "w", 2)
    assert main([*base, "--create-only", "--trials", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hpo: error: --trials: budget 1 is below the 2 trials") and "--allow-budget-cut" in err
    assert err.count("\n") == 1
