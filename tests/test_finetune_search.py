"""Benchmark 4 on the fine-tuning problem (bench/finetune_search.py) still runs: `--quick` sizes.

A smoke test, not a measurement: one seed, `random` with the `base` pruner (the demo's search; 5 trials:
pruning arms get 1.5x) and Ultralytics' own tuner (3 trials), 2 epochs each, on the quick pretraining
recipe; it checks the results, the table, the analysis and the plot.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(900)
def test_quick_finetune_search_runs_both_kinds_of_arm_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "fs"
    proc = subprocess.run([sys.executable, "-m", "bench.finetune_search", "--quick", "--workdir", str(tmp_path),
                           "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=880)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.with_suffix(".json").read_text())
    assert results["complete"] and {r["arm"] for r in results["runs"]} == {"random-base", "ultralytics"}
    for run in results["runs"]:
        assert not run.get("error"), run
        assert len(run["trials"]) == (5 if run["arm"] == "random-base" else 3)
        assert run["epochs"] == sum(t["epochs"] for t in run["trials"])
        assert run["curve"][-1][0] == run["epochs"] and run["best"] is not None
    # Trial 0 of both is the base hyps with the same training seed: the same value on both sides.
    base = {r["arm"]: r["trials"][0]["value"] for r in results["runs"]}
    assert base["random-base"] == pytest.approx(base["ultralytics"], abs=1e-6)
    assert all(len(t["values"]) == t["epochs"] for r in results["runs"] for t in r["trials"])
    text = out.with_suffix(".md").read_text()
    assert "| random-base | 1 |" in text and "**Reaching `model.tune()`'s final median best" in text
    assert out.with_suffix(".png").stat().st_size > 10_000

    # The same run as a `make bench` section (what --into-results writes into bench/results.json).
    from bench.context import Section
    from bench.finetune_search import fill_section

    sec = Section(name="finetune_search", title="t")
    fill_section(sec, results, figure_dir=tmp_path)
    titles = [t["title"] for t in sec.tables]
    assert titles[0].startswith("Best-so-far objective at cumulative epochs")
    assert titles[1].startswith("Reaching `model.tune()`'s final median best") and "6 epochs per run" in titles[1]
    assert any(t.startswith("Does epoch k rank hyps?") for t in titles)
    assert (tmp_path / "finetune_search.png").is_file() and sec.raw["runs"] and "trials" not in sec.raw["runs"][0]

    # A follow-up run of some arms merges with an earlier run kept in bench/results.json (curves, no
    # trials): pruning figures from the curves equal those from the trials.
    from bench.finetune_search import analyse, first_trials, merge

    kept = {r["arm"]: r for r in sec.raw["runs"]}
    for run in results["runs"]:
        for n in (1, 3, len(run["trials"])):
            assert first_trials(kept[run["arm"]], n, 2) == first_trials(run, n, 2)
    follow_up = {**results, "arms": ["random-base"], "runs": [r for r in results["runs"] if r["arm"] == "random-base"]}
    merged = merge(follow_up, {"sections": {"finetune_search": sec.to_dict()}})  # as in bench/results.json
    assert merged["arms"] == ["random-base", "ultralytics"] and merged["merged"][0]["arms"] == ["ultralytics"]
    assert analyse(merged)["arms"] == analyse(results)["arms"]
    with pytest.raises(ValueError, match="another problem .*trials"):
        merge(follow_up, {**sec.raw, "spec": {**sec.raw["spec"], "trials": 99}})
    # Another measured noise matters only to arms whose pruner's margin it is (base, incumbent).
    renoised = {**sec.raw, "spec": {**sec.raw["spec"], "noise": {"std": 0.5, "per_epoch": [0.6, 0.5]}}}
    assert merge(follow_up, renoised)["arms"] == ["random-base", "ultralytics"]
    tuner_only = {**results, "arms": ["ultralytics"], "runs": [r for r in results["runs"] if r["arm"] == "ultralytics"]}
    with pytest.raises(ValueError, match="another problem .*noise"):
        merge(tuner_only, renoised)

    # The same run added to benchmark 11's stored section (`python -m bench.prune_replay confirm`), twice:
    # the second replaces the first.
    from bench.prune_replay import confirm

    stored = tmp_path / "results.json"
    stored.write_text(json.dumps({
        "run_id": "r", "command": "python -m bench", "quick": False, "finished": "x", "seconds": 60.0,
        "machine": {"cpu": "c", "cores": 2, "usable_cores": 2, "memory_gib": 1, "gpu": "none", "os": "o",
                    "python": "3.11"}, "versions": {},
        "sections": {"prune_replay": {"name": "prune_replay", "title": "11. Pruning replayed", "started": "x",
                                      "seconds": 1.0, "setup": ["Replay: ..."], "notes": ["replay note"],
                                      "tables": [{"title": "Pruners replayed", "columns": ["a"], "rows": [["1"]]}],
                                      "raw": {}}}}))
    for label in ("", "", "per-epoch"):
        confirm(out.with_suffix(".json"), notes=["a real note"], results_path=stored, label=label)
    section = json.loads(stored.read_text())["sections"]["prune_replay"]
    titles = [t["title"] for t in section["tables"]]
    assert titles[0] == "Pruners replayed" and titles[1].startswith("Real studies: Best-so-far objective")
    assert sum(t.startswith("Real studies: Best-so-far") for t in titles) == 1
    assert sum(t.startswith("Real studies (per-epoch): Best-so-far") for t in titles) == 1
    assert section["notes"] == ["replay note", "Real studies: a real note", "Real studies (per-epoch): a real note"]
    assert set(section["raw"]["confirm"]) == {"", "per-epoch"}
    assert "trials" not in section["raw"]["confirm"][""]["runs"][0]
    assert "Real studies: Best-so-far objective" in stored.with_suffix(".md").read_text()


def test_pruning_arms_get_more_trials_or_the_unpruned_arms_epochs() -> None:
    from bench.finetune_search import pruned_budget_text, trials_for

    spec = {"trials": 12, "train": {"epochs": 15}}
    assert trials_for("ga-none", spec) == trials_for("ga-none", spec, equal_epochs=True) == (12, None)
    assert trials_for("ultralytics", spec, equal_epochs=True) == (12, None)
    assert trials_for("ga-hyperband", spec) == (18, None)
    assert trials_for("ga-hyperband", spec, equal_epochs=True) == (48, 180)  # hpo's epoch budget decides
    assert "1.5x the trials" in pruned_budget_text({"spec": spec})
    assert "180 epochs" in pruned_budget_text({"spec": spec, "equal_epochs": True})
