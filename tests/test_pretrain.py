"""The pretraining recipe (bench/pretrain.py) still runs: `--quick` sizes, real Ultralytics training.

A smoke test, not a measurement: it checks that the recipe builds its pasture twin, trains, writes
loadable weights with its record, and that a second call is a cache hit; never a time or a mAP.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(300)
def test_quick_pretraining_recipe_trains_caches_and_loads(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "bench.pretrain", "--quick", "--threads", "1", "--root", str(tmp_path), "--json"]
    first = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=280)
    assert first.returncode == 0, first.stderr[-3000:]
    record = json.loads(first.stdout)
    assert record["cached"] is False and record["quick"] is True
    assert record["recipe"]["synth"]["style"] == "pasture" and record["recipe"]["model"] == "yolov5n-p6.yaml"
    assert [e["epoch"] for e in record["epochs"]] == list(range(1, record["recipe"]["train"]["epochs"] + 1))
    weights = Path(record["weights"])
    assert weights.is_file() and weights.parent == tmp_path / record["key"]
    assert json.loads((weights.parent / "pretrain.json").read_text())["weights_sha256"] == record["weights_sha256"]
    marker = json.loads((Path(record["data"]).parents[1] / "raw" / ".hpo-synth.json").read_text())
    assert marker["style"] == "pasture" and marker["seed"] == record["recipe"]["synth"]["seed"]

    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout)["cached"] is True and "cached" in again.stderr

    # The weights are what a study's `weights:` field loads: Ultralytics reads them as a checkpoint.
    from hpo.offline import import_ultralytics

    import_ultralytics()
    from ultralytics import YOLO

    model = YOLO(str(weights))
    assert model.names == {0: "pig", 1: "cow"} and "p6" in model.model.yaml.get("yaml_file", "")
