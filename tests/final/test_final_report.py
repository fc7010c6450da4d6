"""`hpo report`: Optuna's plots as PNGs plus an index.html, for a real study and a pruned one."""

from __future__ import annotations

import json
import math
from pathlib import Path

import optuna
from optuna.trial import TrialState
from PIL import Image

from hpo.final.report import MIN_TRIALS_IMPORTANCES, ReportWriter, _history, _intermediate_values, _scatter
from hpo.spec import parse_spec
from hpo.storage import open_storage
from hpo.study import create_or_join, load_settings

from conftest import tiny_spec_dict
from final_support import NAME, RETRAIN_EPOCHS, FinishedStudy, Retrained

PLOTS = ["optimization_history.png", "param_importances.png", "intermediate_values.png", "parallel_coordinate.png",
         "slice.png", "timeline.png"]


def _check_png(path: Path) -> None:
    assert path.stat().st_size > 5000, path
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.size[0] > 300 and im.size[1] > 200
        assert sum(1 for n in im.convert("L").histogram() if n) > 10, f"{path.name} is blank"


def test_report_of_a_retrained_study(fin: FinishedStudy, done: Retrained, tmp_path: Path) -> None:
    out = tmp_path / "report"
    proc = fin.hpo("report", "--study", NAME, "--storage", fin.url, "-o", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    listing = json.loads(proc.stdout)
    print("report:", listing["index"], "skipped:", listing["skipped"])
    for name in [*PLOTS, "mini_vs_full.png"]:
        if name not in listing["skipped"]:
            _check_png(out / name)
    # every value of this tiny study is 0.0: importances are undefined; 3 trials are too few for parallel
    # coordinates; everything else is drawn
    assert set(listing["skipped"]) <= {"param_importances.png", "parallel_coordinate.png"}
    assert "only 3 complete trial(s)" in listing["skipped"]["parallel_coordinate.png"]
    assert (out / "mini_vs_full.png").is_file()
    html = (out / "index.html").read_text()
    best = fin.study().best_trial
    assert f"Best trial: #{best.number}" in html and f"Final models (hpo retrain: {RETRAIN_EPOCHS} epochs on" in html
    assert f"lr0: {best.params['lr0']}" in html
    assert "winner on the full set: trial" in html and "<img src='mini_vs_full.png'" in html
    assert html.count("<tr>") >= 1 + 3 + 1  # trial table: header + 3 trials (+ other tables)
    assert (out / "trials.csv").read_text().count("\n") == 1 + 3


def test_report_shows_pruned_trials(toy_data: Path, tmp_path: Path) -> None:
    """A study with complete and pruned trials and spread values: every plot is drawn."""
    url = f"sqlite:///{tmp_path / 'r.db'}"
    spec = parse_spec(tiny_spec_dict(toy_data, name="pruned", epochs=5, trials=8, pruner="median"))
    create_or_join(open_storage(url), spec, sampler="random", pruner="median")
    study = optuna.load_study(study_name="pruned", storage=url, sampler=optuna.samplers.RandomSampler(seed=1))
    dists = {n: p.distribution() for n, p in spec.search_space.items()}
    for i in range(8):
        trial = study.ask(dists)
        quality = 1 - abs(math.log10(trial.params["lr0"]) + 2) / 3  # best near lr0 = 0.01
        last = 5 if i % 3 == 0 else 2  # every third trial runs all 5 epochs, the others are pruned at 2
        for step in range(1, last + 1):
            trial.report(quality * step / 5, step)
        if last == 5:
            study.tell(trial, quality)
        else:
            trial.set_user_attr("pruned_reason", "pruned at epoch 2")
            study.tell(trial, state=TrialState.PRUNED)
    pruned = [t.number for t in study.trials if t.state == TrialState.PRUNED]
    assert len(pruned) == 5

    ax = _intermediate_values(study)
    dashed = {str(line.get_label()) for line in ax.get_lines() if line.get_linestyle() == "--"}
    assert dashed == {f"Trial{n} (pruned at 2)" for n in pruned}

    # The objective over trials and the per-hyp scatter show the pruned trials too, at their last value.
    points = {tuple(map(tuple, c.get_offsets())) for c in _history("fitness")(study).collections}
    last = {(t.number, t.intermediate_values[2]) for t in study.trials if t.state == TrialState.PRUNED}
    assert set(last) in [set(p) for p in points], points
    panels = _scatter("fitness")(study)
    assert len(panels.flat) == 3 and all(len(ax.collections) == 3 for ax in panels.flat)  # complete, pruned, best

    report = ReportWriter(study, load_settings(open_storage(url), "pruned"), tmp_path / "rep").write()
    assert set(report.skipped) == {"parallel_coordinate.png"}  # 3 complete trials: 3 lines say nothing
    assert "only 3 complete trial(s)" in report.skipped["parallel_coordinate.png"]
    assert set(report.caveats) == {"param_importances.png"}
    for name in PLOTS:
        if name != "parallel_coordinate.png":
            _check_png(tmp_path / "rep" / name)
    html = report.index.read_text()
    assert html.count("PRUNED") == 5 and "pruned at epoch 2" in html and "mini_vs_full" not in html
    assert "<b>Caveat</b>: from only 3 complete trial(s)" in html
    assert "Parallel coordinates</b>: not drawn (only 3 complete trial(s)" in html


def test_parallel_coordinates_and_importances_with_enough_trials(toy_data: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'many.db'}"
    spec = parse_spec(tiny_spec_dict(toy_data, name="many", trials=MIN_TRIALS_IMPORTANCES))
    create_or_join(open_storage(url), spec, sampler="random")
    study = optuna.load_study(study_name="many", storage=url, sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(MIN_TRIALS_IMPORTANCES):
        trial = study.ask(spec.distributions())
        study.tell(trial, 1 - abs(math.log10(trial.params["lr0"]) + 2) / 3)
    report = ReportWriter(study, load_settings(open_storage(url), "many"), tmp_path / "rep").write()
    assert report.skipped == {} and report.caveats == {}
    _check_png(tmp_path / "rep" / "parallel_coordinate.png")
    print("pruned report:", report.index)
