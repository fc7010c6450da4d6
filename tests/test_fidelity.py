"""bench/fidelity.py: the children it trains, its statistics and replayed searches, and a `--quick` run.

The statistics run on made-up curves whose answer is known (a short schedule that ranks perfectly, first
epochs that rank backwards); the smoke run trains for real (2 children, schedules of 1 and 2 epochs).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bench import fidelity

REPO = Path(__file__).resolve().parents[1]


def _spec() -> dict:
    return yaml.safe_load((REPO / "studies" / "demo.yaml").read_text())


def test_children_are_distinct_ga_children_of_the_base_within_the_space() -> None:
    spec = _spec()
    children = fidelity.children_of_base(spec, 12)
    base = {k: spec["base"][k] for k in spec["search_space"]}
    keys = {json.dumps(c, sort_keys=True) for c in children}
    assert len(keys) == 12 and json.dumps(base, sort_keys=True) not in keys
    for child in children:
        assert set(child) == set(spec["search_space"])
        for name, p in spec["search_space"].items():
            assert p["low"] <= child[name] <= p["high"]
        # bounded mutation moves each gene with probability 0.5: a child keeps some of the base's genes
        assert any(child[n] == pytest.approx(base[n], rel=1e-4) for n in base)
    assert fidelity.children_of_base(spec, 12) == children  # the GA's seed makes them reproducible


def _runs(n_children: int = 8) -> list[dict]:
    """Base (seeds 0-2) and children whose 2-epoch schedule ranks them as the 6-epoch training does, while
    the 6-epoch training's first 2 epochs rank them backwards (a value is a training's best epoch)."""
    runs = []
    for seed, wobble in ((0, 0.0), (1, 0.01), (2, -0.01)):
        runs.append({"hyp": "base", "epochs": 6, "seed": seed, "values": [0.49, 0.49, 0.1, 0.1, 0.1, 0.50 + wobble]})
        runs.append({"hyp": "base", "epochs": 2, "seed": seed, "values": [0.1, 0.30 + wobble]})
    for i in range(n_children):
        quality = (i + 1) / 100  # child i+1 better than child i
        runs.append({"hyp": f"child{i}", "epochs": 6, "seed": 0,
                     "values": [0.45 - quality, 0.45 - quality, 0.2, 0.2, 0.2, 0.5 + quality]})
        runs.append({"hyp": f"child{i}", "epochs": 2, "seed": 0, "values": [0.1, 0.3 + quality]})
    return runs


def test_analysis_tells_a_ranking_short_schedule_from_misleading_first_epochs() -> None:
    a = fidelity.analyse(_runs(), [2, 6], trials=4, replays=50)
    assert a["n_hyps"] == 9 and a["hyps"][0] == "base" and a["long"] == 6
    short = next(r for r in a["rows"] if r["epochs"] == 2)
    assert short["rho_short_schedule"] == pytest.approx(1.0)
    assert short["rho_long_at_epoch"] == pytest.approx(-1.0)
    assert a["noise"]["6"] == pytest.approx(0.01)
    promote = {r["k"]: r for r in a["replay"] if r["mode"] == "promote"}
    prune = {r["k"]: r for r in a["replay"] if r["mode"] == "prune"}
    assert set(promote) == {1, 2, 3}  # k < trials
    # promoting the top 1 of a perfectly ranking short schedule always keeps the best; costs 4*2 + 6 of 24
    assert promote[1]["gap_median"] == 0 and promote[1]["within_noise"] == 1.0
    assert promote[1]["saved"] == pytest.approx(1 - (4 * 2 + 6) / 24)
    # stopping all but the top 1 after 2 epochs keeps the worst (the base): behind, and cheaper (4*2 + 1*4)
    assert prune[1]["gap_median"] <= -0.03 and prune[1]["within_noise"] == 0
    assert prune[1]["saved"] == pytest.approx(1 - (4 * 2 + 4) / 24)


def test_analysis_keeps_only_hyps_trained_on_every_schedule() -> None:
    runs = _runs(4)
    runs = [r for r in runs if not (r["hyp"] == "child3" and r["epochs"] == 2)]
    runs.append({"hyp": "child9", "epochs": 6, "seed": 0, "error": "exit 1"})
    a = fidelity.analyse(runs, [2, 6], trials=3, replays=10)
    assert "child3" not in a["hyps"] and a["n_hyps"] == 4
    assert a["failed"] == ["child9@6/s0: exit 1"]


@pytest.mark.timeout(600)
def test_quick_fidelity_section_trains_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "results.md"
    proc = subprocess.run([sys.executable, "-m", "bench", "--quick", "--only", "fidelity", "--out", str(out),
                           "--workdir", str(tmp_path / "work")], cwd=REPO, capture_output=True, text=True, timeout=580)
    assert proc.returncode == 0, proc.stderr[-3000:]
    section = json.loads(out.with_suffix(".json").read_text())["sections"]["fidelity"]
    assert section["error"] is None
    a = section["raw"]["analysis"]
    assert a["n_hyps"] == 3 and not a["failed"] and a["replay"]
    # 3 hyps x 2 schedules with seed 0, the base also with seed 1 per schedule; every epoch recorded
    runs = section["raw"]["runs"]
    assert len(runs) == 8 and all(len(r["values"]) == r["epochs"] for r in runs)
    text = out.read_text()
    assert "## 12. Fidelity near the base" in text and "| promote | 1 | 1 |" in text
