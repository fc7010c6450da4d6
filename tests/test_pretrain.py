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

    # Deterministic: the same recipe retrained from nothing gives the same tensors (not the same file:
    # Ultralytics writes the date into it). This is what lets the committed checkpoint be re-made.
    from bench.pretrain import tensor_digest

    redo = subprocess.run(cmd + ["--force"], cwd=REPO, capture_output=True, text=True, timeout=280)
    assert redo.returncode == 0, redo.stderr[-3000:]
    redone = json.loads(redo.stdout)
    assert redone["cached"] is False and redone["key"] == record["key"]
    assert tensor_digest(Path(redone["weights"])) == tensor_digest(weights)


def test_committed_checkpoint_is_the_current_recipes(tmp_path: Path) -> None:
    """weights/yolov5n-p6-pasture.pt (what `make demo` fine-tunes) is what its record says, and the
    record's key is the key the recipe computes today: same recipe, library versions and twin bytes.

    Retraining it in full takes minutes: `python -m bench.pretrain --force --verify` (make bench)
    compares the tensors of a fresh training with the committed ones.
    """
    from bench.pretrain import COMMITTED, COMMITTED_RECORD, RECIPE, build_data, recipe_key, tensor_digest, twin_digest

    record = json.loads(COMMITTED_RECORD.read_text())
    assert COMMITTED.stat().st_size < 10e6, "the committed checkpoint must stay small"
    assert tensor_digest(COMMITTED) == record["tensor_sha256"]
    assert record["recipe"] == RECIPE and record["threads"] == 1 and record["device"] == "cpu"
    build_data(RECIPE, tmp_path)  # regenerates the pasture twin, a few seconds
    twin = twin_digest(tmp_path / "raw")
    assert twin == record["twin_sha256"], "the generator changed the pasture twin: re-make the checkpoint"
    assert recipe_key(RECIPE, 1, "cpu", twin) == record["key"], \
        "recipe or library versions changed: run `python -m bench.pretrain --publish` and commit weights/"
    # The demo fine-tunes from it.
    import yaml

    demo = yaml.safe_load((REPO / "studies" / "demo.yaml").read_text())
    assert demo["weights"] == "${HPO_DEMO_WEIGHTS:-" + str(COMMITTED.relative_to(REPO)) + "}"
