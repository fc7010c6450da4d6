"""``hpo noise``: the base hyps trained once per training seed, for real, and the spread they give.

The end-to-end test kills a run mid-training (SIGKILL, as a cluster kills a job) and checks that the
next run keeps the finished seed and retrains only the rest.
"""

from __future__ import annotations

import json
import signal
import statistics
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from conftest import hpo_cmd, wait_for
from hpo.search.noise import NoiseReport, SeedRun, seed_noise
from hpo.spec import parse_spec

WEIGHTS = Path(__file__).resolve().parents[2] / "weights" / "yolov5n-p6-pasture.pt"


def test_seed_noise_is_the_std_of_the_best_value_and_of_the_best_so_far_per_epoch() -> None:
    curves = [[0.1, 0.5, 0.4], [0.2, 0.3, 0.6], [0.0, 0.4, 0.45]]
    std, per_epoch = seed_noise(curves, "maximize")
    assert std == pytest.approx(statistics.stdev([0.5, 0.6, 0.45]))
    assert per_epoch == pytest.approx([statistics.stdev([0.1, 0.2, 0.0]), statistics.stdev([0.5, 0.3, 0.4]),
                                       statistics.stdev([0.5, 0.6, 0.45])])
    std, per_epoch = seed_noise(curves, "minimize")
    assert std == pytest.approx(statistics.stdev([0.1, 0.2, 0.0]))
    assert per_epoch[-1] == pytest.approx(std)
    assert seed_noise([[0.3, 0.4]], "maximize")[1] == []  # one seed: no spread


def test_noise_block_leaves_out_a_zero_margin_and_refuses_a_zero_std() -> None:
    runs = [SeedRun(seed=s, values=[0.0, v], value=v) for s, v in enumerate((0.5, 0.6))]
    report = NoiseReport(study="s", metric="fitness", direction="maximize", params={}, device="cpu", runs=runs,
                         mean=0.55, std=statistics.stdev([0.5, 0.6]), per_epoch=[0.0, statistics.stdev([0.5, 0.6])])
    block = report.noise_block()
    assert block is not None and "per_epoch" not in block and block["std"] == pytest.approx(0.07071, rel=1e-3)
    assert "training seeds 0, 1" in block["source"]
    report.std = 0.0
    assert report.noise_block() is None


@pytest.mark.timeout(600)
def test_noise_trains_each_seed_and_a_killed_run_keeps_the_finished_seeds(tmp_path: Path, toy_data: Path) -> None:
    spec = {
        "name": "noisy",
        "model": "yolov5n-p6.yaml",
        "weights": str(WEIGHTS),  # from scratch every seed scores 0 here; from the demo's start they differ
        "data": str(toy_data),
        "train": {"epochs": 3, "imgsz": 96, "batch": 8, "nbs": 8, "optimizer": "SGD", "warmup_epochs": 0,
                  "close_mosaic": 0, "seed": 0, "workers": 0},
        "objective": {"metric": "map50", "direction": "maximize"},
        "search_space": {"lr0": {"type": "float", "low": 1e-4, "high": 0.1, "log": True}},
        "base": {"lr0": 0.01, "momentum": 0.9},
        "trials": 2,
    }
    study_file = tmp_path / "noisy.yaml"
    study_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    runs = tmp_path / "runs"
    seed_dir = runs / "noisy" / "noise"

    # Killed while seed 1 trains: seed 0's curve is written whole, seed 1 has none.
    log = tmp_path / "killed.log"
    with log.open("w") as out:
        proc = subprocess.Popen(hpo_cmd("noise", "--study", str(study_file), "--seeds", "3", "--runs-dir", str(runs),
                                        "--device", "cpu"), stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: (seed_dir / "seed_1" / "hyp.yaml").is_file() or proc.poll() is not None, 300,
                 "seed 1's training to start")
        time.sleep(1.0)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, log.read_text()[-2000:]
    assert json.loads((seed_dir / "seed_0" / "curve.json").read_text())["value"] is not None
    assert not (seed_dir / "seed_1" / "curve.json").exists()

    done = subprocess.run(hpo_cmd("noise", "--study", str(study_file), "--seeds", "3", "--runs-dir", str(runs),
                                  "--device", "cpu", "--json"), capture_output=True, text=True, timeout=500)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert [r["seed"] for r in report["runs"]] == [0, 1, 2]
    assert [r["reused"] for r in report["runs"]] == [True, False, False]  # only the killed and the new seeds trained
    assert all(r["error"] is None and len(r["values"]) == 3 for r in report["runs"])
    assert report["params"] == {"lr0": 0.01}
    values = [r["value"] for r in report["runs"]]
    assert all(r["value"] == max(r["values"]) for r in report["runs"])  # a trial's value: its best epoch
    assert report["std"] == pytest.approx(statistics.stdev(values))
    assert report["std"] > 0  # fine-tuned from the pretrained start, the seeds move the objective
    assert report["noise"]["std"] == pytest.approx(report["std"], rel=1e-3)
    parsed = parse_spec({**spec, "noise": report["noise"]})  # the block drops straight into the study file
    assert parsed.noise is not None and parsed.noise.std > 0
    assert parsed.noise.per_epoch is None or len(parsed.noise.per_epoch) == 3
    hyp = yaml.safe_load((seed_dir / "seed_2" / "hyp.yaml").read_text())
    assert hyp["seed"] == 2 and hyp["lr0"] == 0.01 and hyp["momentum"] == 0.9


def test_noise_bad_input_is_one_line(tmp_path: Path) -> None:
    missing = subprocess.run(hpo_cmd("noise", "--study", str(tmp_path / "nope.yaml")), capture_output=True,
                             text=True, timeout=120)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1 and "nope" in missing.stderr
    one = subprocess.run(hpo_cmd("noise", "--study", "demo", "--seeds", "1"), capture_output=True, text=True,
                         timeout=120)
    assert one.returncode == 2 and "--seeds" in one.stderr and "Traceback" not in one.stderr
