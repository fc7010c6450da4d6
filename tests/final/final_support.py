"""One tiny finished (and retrained) study shared by tests/test_final_*.py.

Built once per session however many modules ask (a module-level cache, as in conftest_data.py):
`hpo launch` with one CPU worker runs 3 real trials of 6 epochs at 128 px (long enough for the trials
to score apart: ranking code must not only ever see ties), then `hpo retrain --top-k 2`
trains the best two again on a "full" set (train + val images) validated on the val images.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml

from conftest import hpo_cmd, tiny_spec_dict

NAME = "fin"
SEARCH_EPOCHS = 6
RETRAIN_EPOCHS = 4  # given as --epochs; the spec says 5 (the flag wins)
_CACHE: dict[str, Any] = {}


@dataclass(frozen=True)
class FinishedStudy:
    root: Path
    url: str
    spec_file: Path
    full_data: Path
    launch_seconds: float

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"  # the default: next to the SQLite database

    def study(self) -> optuna.Study:
        return optuna.load_study(study_name=NAME, storage=self.url)

    def hpo(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """Run the CLI in the study's folder, with the artifact folder left to its default."""
        env = {k: v for k, v in os.environ.items() if k not in ("HPO_ARTIFACTS", "HPO_STORAGE")}
        return subprocess.run(hpo_cmd(*args), capture_output=True, text=True, cwd=self.root, env=env,
                              timeout=timeout)


@dataclass(frozen=True)
class Retrained:
    study: FinishedStudy
    record: dict[str, Any]
    stderr: str
    seconds: float


def full_yaml(data: Path, out: Path) -> Path:
    """A full-set data yaml as `hpo data prepare` writes one: train on everything, validate on val."""
    root = yaml.safe_load(data.read_text())["path"]
    out.write_text(yaml.safe_dump({"path": root, "train": ["images/train", "images/val"], "val": "images/val",
                                   "names": ["pig", "cow"]}))
    return out


def finished_study(tmp_path_factory: pytest.TempPathFactory, toy_data: Path) -> FinishedStudy:
    if "study" in _CACHE:
        return _CACHE["study"]
    import time

    root = tmp_path_factory.mktemp("final")
    full = full_yaml(toy_data, root / "full.yaml")
    raw = tiny_spec_dict(toy_data, name=NAME, epochs=SEARCH_EPOCHS, trials=3, sampler="ga", pruner="none")
    raw["train"]["imgsz"] = 128
    raw["base"] = {**raw["base"], "lr0": 0.06}  # learns within a few epochs from scratch at this size
    raw["retrain"] = {"data": str(full), "epochs": 5, "train": {"cos_lr": False}}
    spec_file = root / f"{NAME}.yaml"
    spec_file.write_text(yaml.safe_dump(raw, sort_keys=False))
    study = FinishedStudy(root, f"sqlite:///{root / 'hpo.db'}", spec_file, full, 0.0)
    start = time.perf_counter()
    proc = study.hpo("launch", "--study", str(spec_file), "--storage", study.url, "--workers", "1",
                     "--device", "cpu", "--json")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    study = FinishedStudy(root, study.url, spec_file, full, time.perf_counter() - start)
    _CACHE["study"] = study
    return study


def retrained(study: FinishedStudy) -> Retrained:
    """`hpo retrain --top-k 2 --epochs RETRAIN_EPOCHS`."""
    if "retrained" in _CACHE:
        return _CACHE["retrained"]
    import time

    start = time.perf_counter()
    proc = study.hpo("retrain", "--study", NAME, "--storage", study.url, "--top-k", "2", "--epochs", str(RETRAIN_EPOCHS),
                     "--device", "cpu", "--json")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    result = Retrained(study, json.loads(proc.stdout), proc.stderr, time.perf_counter() - start)
    _CACHE["retrained"] = result
    return result
