"""GPU trials-per-hour records: what the smoke script writes on a lent GPU, and how they reach results.md.

The device side (`bench/gpu_smoke.sh`) cannot run here; these check the pieces it calls with inputs in
the exact formats a lent H200 produced (an `nvidia-smi dmon -s um -o T` log, an `hpo launch --json`
summary), and that an imported section survives later benchmark runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from bench.__main__ import IMPORTED, ORDER, kept_results
from bench.gpu_record import dmon_window, section
from bench.report import store_section

REPO = Path(__file__).resolve().parents[1]

DMON = """#Time         gpu     sm    mem    enc    dec    jpg    ofa     fb   bar1   ccpm 
#HH:MM:SS     Idx      %      %      %      %      %      %     MB     MB     MB 
 06:29:19       0      0      0      0      0      0      0      0      1      0 
 06:29:21       0     40      9      0      0      0      0   4120      5      0 
 06:29:23       0     60     14      0      0      0      0  69632      5      0 
 06:29:25       0      -      -      -      -      -      -      -      -      - 
 06:29:27       0     20      3      0      0      0      0  10240      5      0 
 06:29:29       0     99     40      0      0      0      0  99999      5      0 
"""


def _epoch(clock: str) -> float:
    return time.mktime(time.strptime(f"2026-11-26 {clock}", "%Y-%m-%d %H:%M:%S"))


def test_dmon_window_takes_the_launch_s_samples_only(tmp_path: Path) -> None:
    dmon = tmp_path / "dmon.log"
    dmon.write_text(DMON)
    got = dmon_window(dmon, _epoch("06:29:21") + 0.4, _epoch("06:29:27") + 0.5)
    # 06:29:21 counts (the launch started within that second), 06:29:29 is after it, '-' rows are skipped
    assert got == {"gpu_busy_pct": 40.0, "samples": 3, "peak_memory_gib": 68.0}
    assert dmon_window(tmp_path / "absent.log", 0, 1) == {}


def test_arm_appends_a_record_and_a_line(tmp_path: Path) -> None:
    (tmp_path / "dmon.log").write_text(DMON)
    summary = {"trials": {"finished": 4, "complete": 4},
               "gpu": {"workers_per_gpu": {"0": 4}, "mps": {"mode": "auto", "used": True, "started": True}}}
    (tmp_path / "pack_auto.json").write_text(json.dumps(summary))
    for arm, extra in (("auto", ["--summary", str(tmp_path / "pack_auto.json")]), ("wpg1", ["--rc", "1"])):
        proc = subprocess.run(
            [sys.executable, "-m", "bench.gpu_record", "arm", "--out", str(tmp_path), "--arm", arm, "--label", arm,
             "--shape", "yolov5m6.yaml, 1280 px", "--card", "NVIDIA H200", "--start", str(_epoch("06:29:21")),
             "--end", str(_epoch("06:29:21") + 60), "--dmon", str(tmp_path / "dmon.log"), *extra],
            cwd=REPO, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
    records = [json.loads(x) for x in (tmp_path / "packing.jsonl").read_text().splitlines()]
    assert [r["arm"] for r in records] == ["auto", "wpg1"]
    auto = records[0]
    assert auto["trials"] == 4 and auto["wall_s"] == 60.0 and auto["trials_per_hour"] == 240.0
    assert auto["workers_per_gpu"] == {"0": 4} and auto["mps"] == "started" and auto["peak_memory_gib"] == 97.7
    assert records[1]["trials"] is None and records[1]["rc"] == 1  # no summary: the launch failed
    lines = (tmp_path / "packing.txt").read_text().splitlines()
    assert lines[0].startswith("NVIDIA H200 | auto: 4 trials in 60 s = 240 trials/h; workers per GPU {'0': 4}")
    assert lines[1] == "NVIDIA H200 | wpg1: launch exited 1 without finished trials"


def _record(arm: str, wall: float, shape: str = "s6") -> dict:
    return {"card": "NVIDIA H200", "shape": shape, "arm": arm, "label": arm, "rc": 0, "trials": 4, "wall_s": wall,
            "trials_per_hour": 4 / wall * 3600, "workers_per_gpu": {"0": 2}, "mps": "off",
            "started": "2026-11-26 06:19:33", "gpu_busy_pct": 11.0, "peak_memory_gib": 5.8}


def test_section_compares_each_arm_with_one_training_at_a_time() -> None:
    sec = section([_record("wpg1", 80), _record("auto", 40), _record("auto", 50, shape="m6")], notes=["n"])
    assert sec["name"] == "gpu" and sec["notes"] == ["n"]
    first, second = sec["tables"]
    assert first["title"] == "NVIDIA H200: s6"
    assert [row[4] for row in first["rows"]] == ["1.00x", "2.00x"]
    assert second["rows"][0][4] == "–"  # no one-at-a-time arm for that shape: no ratio


def test_imported_section_lands_in_results_and_survives_later_runs(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    other = {"name": "overhead", "title": "1. Orchestration overhead (no training)", "started": "x", "seconds": 1.0}
    results.write_text(json.dumps({
        "run_id": "r", "command": "python -m bench", "quick": False, "finished": "x", "seconds": 60.0,
        "load_start": None, "load_end": None,
        "machine": {"cpu": "c", "cores": 2, "usable_cores": 2, "memory_gib": 1, "gpu": "none", "os": "o",
                    "python": "3.11"},
        "versions": {}, "settings": {}, "sections": {"overhead": other}}))
    store_section(section([_record("wpg1", 80), _record("auto", 40)]), results)
    stored = json.loads(results.read_text())
    assert list(stored["sections"]) == ["overhead", "gpu"]
    text = results.with_suffix(".md").read_text()
    assert "## 13. GPU trials per hour (lent GPU machine)" in text and "| auto | 4 | 40 | 360 | 2.00x |" in text
    # a full `make bench` replaces what it runs and keeps the imported section; a subset keeps everything
    assert list(kept_results(results, list(ORDER), quick=False)["sections"]) == list(IMPORTED)
    assert list(kept_results(results, ["scaling"], quick=False)["sections"]) == ["overhead", "gpu"]
    assert kept_results(results, ["scaling"], quick=True) == {}
