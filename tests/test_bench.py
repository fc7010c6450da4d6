"""The benchmark suite still runs: `python -m bench --quick` on its cheapest benchmark (SQLite overhead).

A smoke test, not a measurement: it checks that the suite runs end to end and writes its report,
never what the figures are.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(120)
def test_quick_overhead_on_sqlite_writes_the_report(tmp_path: Path) -> None:
    out = tmp_path / "results.md"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "overhead", "--storages", "sqlite",
         "--out", str(out), "--workdir", str(tmp_path / "work")],
        cwd=REPO, capture_output=True, text=True, timeout=110)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.with_suffix(".json").read_text())
    assert results["quick"] is True and list(results["sections"]) == ["overhead"]
    section = results["sections"]["overhead"]
    assert section["error"] is None
    for workers in ("1", "2"):
        raw = section["raw"][f"sqlite/{workers}"]
        assert raw["ratio"]["n"] == 1 and raw["ratio"]["median"] > 0
        assert all(r["finished"] >= 20 and r["failed"] == 0 for arm in ("optuna", "hpo") for r in raw[arm])
    assert [t["target"].startswith("hpo ≤ 1.15×") for t in section["targets"]] == [True, True]
    text = out.read_text()
    assert "Quick mode" in text and "## 1. Orchestration overhead" in text and "| SQLite | 1 |" in text
    assert "## Machine and versions" in text and "optuna" in text.lower()
