"""The ``hpo`` command line itself: version, hints for yolo-style arguments, no hidden options suggested."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import hpo
from hpo.cli.app import main
from hpo.spec import parse_spec
from hpo.search.trial_runner import TrialRunner

from conftest import tiny_spec_dict


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith(f"hpo {hpo.__version__} (optuna ")


def test_yolo_style_arguments_get_a_hint(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["launch", "study=demo"]) == 2
    assert "hpo: hint: use --study demo " in capsys.readouterr().err
    assert main(["launch", "--study", "demo", "sampler=tpe", "workers_per_gpu=2"]) == 2
    err = capsys.readouterr().err
    assert "use --sampler tpe " in err and "use --workers-per-gpu 2 " in err


def test_hidden_options_are_not_suggested(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["launch", "--study", "demo", "--traine", "curve"]) == 2
    err = capsys.readouterr().err
    assert "No such option: --traine" in err and "--trainer" not in err


class _NoTraining:
    """Stands in for the Ultralytics model: the runner's own files are what is tested."""

    def add_callback(self, event: str, fn: object) -> None:
        pass

    def train(self, **args: object) -> None:
        pass


def test_trial_hyp_yaml_is_the_full_config_export_writes(toy_data: Path, tmp_path: Path) -> None:
    spec = parse_spec(tiny_spec_dict(toy_data))
    runner = TrialRunner(spec, runs_dir=tmp_path / "runs", device="cpu")
    runner.build_model = lambda checkpoint=None, model=None: _NoTraining()  # type: ignore[method-assign]
    params = {"lr0": 0.02, "lrf": 0.05, "momentum": 0.9}
    runner.train(params, tmp_path / "runs" / "t")
    text = (tmp_path / "runs" / "t" / "hyp.yaml").read_text()
    config = yaml.safe_load(text)
    assert config == spec.training_args(params)  # what `hpo export` writes for these hyps
    assert config["model"] == "yolov5n-p6.yaml" and config["data"] == str(toy_data) and config["epochs"] == 2
    assert "# use: yolo train cfg=<this file>" in text
    from hpo.offline import import_ultralytics

    import_ultralytics()
    from ultralytics.cfg import get_cfg

    assert get_cfg(cfg=str(tmp_path / "runs" / "t" / "hyp.yaml")).lr0 == 0.02
