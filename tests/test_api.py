"""The library API under the CLI: hpo.launch / hpo.load / hpo.export, called as a notebook would."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import hpo
import hpo.api
from hpo.errors import HpoError
from hpo.search.worker import WorkerOptions

from conftest import tiny_spec_dict


def test_launch_load_export(tmp_path: Path, toy_data: Path) -> None:
    spec_file = tmp_path / "api.yaml"
    spec_file.write_text(yaml.safe_dump(tiny_spec_dict(toy_data, name="api", epochs=3, trials=4, sampler="tpe")))
    url = f"sqlite:///{tmp_path / 'api.db'}"
    options = WorkerOptions(runs_dir=tmp_path / "runs", trainer="curve", artifacts=None)
    summary = hpo.launch(spec_file, storage=url, workers=2, device="cpu", options=options)
    assert summary["worker_errors"] == 0 and summary["trials"]["finished"] == 4
    loaded = hpo.load("api", storage=url)
    assert loaded.settings.sampler == "tpe" and loaded.settings.budget == 4
    assert loaded.summary()["best"]["number"] == loaded.study.best_trial.number
    assert hpo.study_names(url) == ["api"]
    text, what = hpo.export("api", tmp_path / "hyp.yaml", storage=url)
    config = yaml.safe_load((tmp_path / "hyp.yaml").read_text())
    assert config["model"] == "yolov5n-p6.yaml" and config["data"] == str(toy_data)
    assert config["lr0"] == loaded.study.best_params["lr0"] and f"trial {loaded.study.best_trial.number}" in what
    assert yaml.safe_load(text) == config


def test_api_errors_are_hpo_errors(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'none.db'}"
    with pytest.raises(HpoError, match="no storage at .*none.db"):
        hpo.load("nope", storage=url)  # read-only: a missing storage is not created
    assert not (tmp_path / "none.db").exists()
    hpo.api.open_storage(url, create=True)
    with pytest.raises(HpoError, match="no study named 'nope'"):
        hpo.load("nope", storage=url)
    with pytest.raises(HpoError, match="no study file"):
        hpo.launch("nope", storage=url, studies_dir=tmp_path)
