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


def _quick_bench(tmp_path: Path, only: str, *options: str, timeout: float) -> tuple[subprocess.CompletedProcess, Path]:
    """`python -m bench --quick --only ONLY` into tmp_path: the process and its results.md."""
    out = tmp_path / "results.md"
    proc = subprocess.run([sys.executable, "-m", "bench", "--quick", "--only", only, *options, "--out", str(out),
                           "--workdir", str(tmp_path / "work")], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)
    return proc, out


@pytest.mark.timeout(120)
def test_quick_overhead_on_sqlite_writes_the_report(tmp_path: Path) -> None:
    proc, out = _quick_bench(tmp_path, "overhead", "--storages", "sqlite", timeout=110)
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


@pytest.mark.timeout(660)
def test_quick_hypervolume_runs_three_samplers_on_the_deploy_problem(tmp_path: Path) -> None:
    """Real `hpo worker` studies of studies/deploy.yaml (tiny twin, 2 trials of 1 epoch per sampler)."""
    proc, out = _quick_bench(tmp_path, "hypervolume", timeout=600)  # ~90 s on quiet cores
    assert proc.returncode == 0, proc.stderr[-3000:]
    section = json.loads(out.with_suffix(".json").read_text())["sections"]["hypervolume"]
    assert section["error"] is None
    runs = section["raw"]["runs"]
    assert sorted(r["sampler"] for r in runs) == ["nsga2", "random", "tpe"]
    for r in runs:
        assert not r.get("error") and len(r["hv"]) == 2 and all(0.0 <= v <= 1.1 for v in r["hv"])
        assert r["hv"] == sorted(r["hv"])  # a front only grows
        assert sum(t["state"] == "COMPLETE" for t in r["trials"]) == 2
    assert section["raw"]["reference"] == [1.0, 1.1] and section["raw"]["slowest_ms"] > 0
    text = out.read_text()
    assert "## 10. Hypervolume against trials" in text and "| nsga2 | 1 |" in text and "Reference point" in text


def test_hypervolume_2d_is_the_dominated_area() -> None:
    """The benchmark's own 2-D hypervolume against hand-computed areas and a grid count."""
    import random

    from bench.hypervolume import hypervolume_2d

    assert hypervolume_2d([], (1.0, 1.0)) == 0.0
    assert hypervolume_2d([(0.5, 0.5)], (1.0, 1.0)) == pytest.approx(0.25)
    assert hypervolume_2d([(0.0, 1.0), (1.0, 0.0)], (2.0, 2.0)) == pytest.approx(3.0)
    assert hypervolume_2d([(0.2, 0.2), (0.3, 0.3), (1.5, 0.0)], (1.0, 1.0)) == pytest.approx(0.64)  # dominated, outside
    rng = random.Random(0)
    points = [(rng.random(), rng.random()) for _ in range(12)]
    n = 400
    inside = sum(any(p[0] <= (i + 0.5) / n and p[1] <= (j + 0.5) / n for p in points) for i in range(n) for j in range(n))
    assert hypervolume_2d(points, (1.0, 1.0)) == pytest.approx(inside / n**2, abs=0.01)


def test_replay_runs_real_pruners_on_recorded_curves() -> None:
    """Benchmark 11's replay: Optuna/hpo pruners deciding on recorded curves, epochs counted as a worker would."""
    import optuna

    from bench.prune_replay import replay, simulate, summarise
    from hpo.search.pruners import ReferenceCurvePruner

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    curves = [[0.5, 0.6, 0.7], [0.1, 0.1, 0.1], [0.6, 0.7, 0.8], [0.55, 0.65, 0.75]]
    base_pruner = ReferenceCurvePruner("base", margin=0.01, min_epochs=1)
    got = replay(curves, [0, 1, 2, 3], base_pruner, base=0)
    # the bad trial stops after epoch 1; the others train all 3 epochs; a finished trial counts its best epoch
    assert got == {"epochs": 10, "trials": 4, "finished": 3, "best": 0.8}
    no_pruning = replay(curves, [0, 1, 2, 3], optuna.pruners.NopPruner(), base=0)
    assert no_pruning["epochs"] == 12 and no_pruning["best"] == 0.8
    # with an epoch budget, trials run until it is spent: the 9 epochs of 3 unpruned trials buy all 4 here
    budget = replay(curves, [0, 1, 2, 3], ReferenceCurvePruner("base", margin=0.01, min_epochs=1), base=0,
                    epoch_budget=9)
    assert budget["trials"] == 4 and budget["epochs"] == 10
    results = simulate(curves, 0, 0.01, trials=3, orders=4,
                       configs={"base": lambda epochs, noise: ReferenceCurvePruner("base", margin=noise)})
    rows = {r["pruner"]: r for r in summarise(results, 0.01)}
    assert rows["none"]["epochs_saved"] == 0 and rows["base"]["epochs_saved"] >= 0
    assert 0 <= rows["base"]["within_noise_same_trials"] <= 1


@pytest.mark.timeout(300)
def test_quick_prune_replay_trains_and_replays(tmp_path: Path) -> None:
    proc, out = _quick_bench(tmp_path, "prune_replay", timeout=280)
    assert proc.returncode == 0, proc.stderr[-3000:]
    section = json.loads(out.with_suffix(".json").read_text())["sections"]["prune_replay"]
    assert section["error"] is None
    assert len(section["raw"]["curves"]) == 3 and all(len(c) == 2 for c in section["raw"]["curves"])
    pruners = [r["pruner"] for r in section["raw"]["rows"]]
    assert pruners[0] == "none" and "hyperband r=1 η=3" in pruners and "incumbent curve from 1" in pruners
    assert "## 11. Pruning replayed on 15-epoch fine-tuning curves" in out.read_text()
