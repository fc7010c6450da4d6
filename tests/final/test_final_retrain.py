"""`hpo retrain`: the top trials trained again on the full set, the winner picked there."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import yaml

from hpo.artifacts import artifact_names
from hpo.attrs import STUDY_FINAL as ATTR_FINAL
from hpo.final.record import WEIGHT_LIMIT_BYTES, FinalModel
from hpo.final.record import summary_lines
from hpo.final.retrain import RetrainPlan, Retrainer, spearman, top_trials
from hpo.spec import parse_spec
from hpo.study import StudySettings

from conftest import tiny_spec_dict
from final_support import NAME, RETRAIN_EPOCHS, FinishedStudy, Retrained


def test_retrain_top2_records_full_set_results(fin: FinishedStudy, done: Retrained) -> None:
    record = done.record
    print(f"launch {fin.launch_seconds:.1f} s, retrain of 2 models {done.seconds:.1f} s")
    assert record["top_k"] == 2 and record["epochs"] == RETRAIN_EPOCHS  # --epochs beats the spec's retrain.epochs
    assert record["data"] == str(fin.full_data) and record["overrides"]["cos_lr"] is False
    study = fin.study()
    expected = [t.number for t in top_trials(study, 2)]
    models = record["models"]
    assert [m["trial"] for m in models] == expected and [m["mini_rank"] for m in models] == [1, 2]
    for m in models:
        assert m["error"] is None and m["epochs"] == RETRAIN_EPOCHS
        assert set(m["metrics"]) >= {"precision", "recall", "map50", "map75", "map50-95", "fitness"}
        assert m["full_value"] == m["metrics"]["fitness"]
        assert m["mini_value"] == study.trials[m["trial"]].value
        assert 0 < m["weight_bytes"] <= WEIGHT_LIMIT_BYTES and m["under_limit"] and m["fp16_stripped"]
        assert m["wall_seconds"] >= m["train_seconds"] > 0
        assert m["params"] == study.trials[m["trial"]].params
    assert sorted(m["full_rank"] for m in models) == [1, 2]
    winner = next(m for m in models if m["full_rank"] == 1)
    assert record["winner"] == winner["trial"] and record["mini_winner"] == expected[0]
    assert record["spearman"] is None  # K < 3
    assert "retraining the top 2 trial(s)" in done.stderr

    # Stored with the study: status, export and the dashboard read it from there.
    assert study.user_attrs[ATTR_FINAL] == json.loads(json.dumps(record))
    status = json.loads(fin.hpo("status", "--study", NAME, "--storage", fin.url, "--json").stdout)
    assert status["final"]["winner"] == record["winner"]

    # Files: per model the run, its hyps and metrics; the winner's weights and full config on top.
    final = fin.runs / NAME / "final"
    for m in models:
        d = final / f"trial_{m['trial']:04d}"
        config = yaml.safe_load((d / "hyp.yaml").read_text())  # the run's full config, retrain settings included
        assert {k: config[k] for k in m["params"]} == m["params"]
        assert config["data"] == str(fin.full_data) and config["epochs"] == RETRAIN_EPOCHS
        assert json.loads((d / "metrics.json").read_text())["fingerprint"] == m["fingerprint"]
        assert len((d / "results.csv").read_text().strip().splitlines()) == 1 + RETRAIN_EPOCHS  # header + one line per epoch
        assert Path(m["weights"]) == d / "weights" / "best.pt"
    assert (final / "best.pt").read_bytes() == Path(winner["weights"]).read_bytes()
    assert json.loads((final / "metrics.json").read_text())["winner"] == record["winner"]
    config = yaml.safe_load((final / "hyp.yaml").read_text())
    assert config["data"] == str(fin.full_data) and config["epochs"] == RETRAIN_EPOCHS and config["cos_lr"] is False

    # The weights are what was trained: the full data, its epochs, the winner's hyps, fp16.
    import torch
    from ultralytics.utils.patches import torch_load

    ckpt = torch_load(final / "best.pt", map_location="cpu")
    assert ckpt["optimizer"] is None and next(ckpt["model"].parameters()).dtype == torch.float16
    assert ckpt["train_args"]["data"] == str(fin.full_data) and ckpt["train_args"]["epochs"] == RETRAIN_EPOCHS
    assert ckpt["train_args"]["lr0"] == winner["params"]["lr0"]

    # Weights, hyps and metrics of each final model are study artifacts the dashboard serves.
    names = artifact_names(study)
    for m in models:
        tag = f"final_trial_{m['trial']:04d}_{m['fingerprint'][:8]}"
        assert {f"{tag}_best.pt", f"{tag}_hyp.yaml", f"{tag}_metrics.json", f"{tag}_results.csv"} <= set(names)
    assert "final_summary.json" in names


def test_retrain_again_reuses_models_and_reports_spearman(fin: FinishedStudy, done: Retrained) -> None:
    """K=3 reuses the two models already trained with the same settings and trains one more."""
    proc = fin.hpo("retrain", "--study", NAME, "--storage", fin.url, "--top-k", "3", "--epochs", str(RETRAIN_EPOCHS),
                   "--device", "cpu")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert proc.stderr.count("reusing the model trained with the same settings") == 2
    record = fin.study().user_attrs[ATTR_FINAL]
    # K >= 3: says how well mini predicted full, with the coefficient computed from distinct values
    assert record["spearman"] is not None, record
    assert f"Spearman rank correlation mini vs full over 3 models: {record['spearman']:+.3f}" in proc.stdout
    assert "final models" in proc.stdout and "winner on the full set: trial" in proc.stdout
    record = fin.study().user_attrs[ATTR_FINAL]
    assert [m["reused"] for m in record["models"]] == [True, True, False]
    assert len(record["models"]) == 3
    # the model files of the first run are untouched
    first = done.record["models"][0]
    assert record["models"][0]["weights"] == first["weights"] and Path(first["weights"]).is_file()


def test_the_shared_study_scores_apart(fin: FinishedStudy, done: Retrained) -> None:
    """Ranking code must see distinct values, not only ties at 0 (from-scratch noise)."""
    values = [t.value for t in fin.study().trials if t.value is not None]
    assert len(values) == 3 and len(set(values)) >= 2 and max(values) > 0, values
    full = [m["full_value"] for m in done.record["models"]]
    assert len(set(full)) == len(full) and max(full) > 0, full


def test_retrain_user_errors_are_one_line(fin: FinishedStudy) -> None:
    proc = fin.hpo("retrain", "--study", NAME, "--storage", fin.url, "--data", str(fin.root / "nope.yaml"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "nope.yaml" in proc.stderr and "not found" in proc.stderr
    proc = fin.hpo("retrain", "--study", "missing", "--storage", fin.url)
    assert proc.returncode == 2 and "no study named 'missing'" in proc.stderr


def test_spearman() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486833)  # average ranks for ties
    assert spearman([0, 0, 0], [1, 2, 3]) is None  # no spread: undefined, not 0 or NaN


def _model(trial: int, mini: float, full: float | None, rank: int, error: str | None = None) -> FinalModel:
    return FinalModel(trial=trial, params={"lr0": 0.01 * (trial + 1)}, mini_value=mini, mini_rank=rank,
                      fingerprint=f"{trial:016d}", dir=f"/x/trial_{trial:04d}", full_value=full,
                      metrics={"map75": full}, weight_bytes=8_500_000, under_limit=True, error=error)


def test_winner_is_picked_on_the_full_set(toy_data: Path) -> None:
    spec = parse_spec(tiny_spec_dict(toy_data))
    settings = StudySettings(spec, "ga", "none", 3)
    study = optuna.create_study(direction="maximize")
    plan = RetrainPlan.from_spec(spec, top_k=4)
    retrainer = Retrainer(study, settings, plan, runs_dir=Path("/x"), device="cpu")
    models = [_model(7, 0.9, 0.70, 1), _model(3, 0.8, 0.75, 2), _model(5, 0.7, 0.60, 3),
              _model(1, 0.6, None, 4, error="NaNLossError: loss is NaN/Inf at epoch 1")]
    import datetime

    record = retrainer._summarise(models, datetime.datetime.now(datetime.timezone.utc))
    assert record["winner"] == 3 and record["mini_winner"] == 7 and record["mini_winner_full_rank"] == 2
    assert [m["full_rank"] for m in record["models"]] == [2, 1, 3, None]
    assert record["spearman"] == pytest.approx(0.5)  # over the 3 models that trained
    lines = summary_lines(record)
    assert lines[0].startswith("winner on the full set: trial 3 (fitness 0.75000")
    assert "the mini-set winner (trial 7) ranks 2 on the full set" in lines
    assert any("Spearman rank correlation mini vs full over 3 models: +0.500" in line for line in lines)


def test_top_trials_best_first_one_per_hyp_set() -> None:
    study = optuna.create_study(direction="minimize")
    for value, lr in ((0.3, 0.1), (0.1, 0.2), (0.1, 0.2), (0.2, 0.3), (0.1, 0.4)):
        study.enqueue_trial({"lr0": lr})
        study.optimize(lambda t, v=value: (t.suggest_float("lr0", 0, 1), v)[1], n_trials=1)
    study.enqueue_trial({"lr0": 0.5})
    study.optimize(lambda t: (t.suggest_float("lr0", 0, 1), float("nan"))[1], n_trials=1)  # FAIL
    assert [t.number for t in top_trials(study, 3)] == [1, 4, 3]  # ties: earlier first; 2 repeats 1
    assert len(top_trials(study, 10)) == 4


def test_retrain_plan_defaults(toy_data: Path) -> None:
    raw = tiny_spec_dict(toy_data)
    spec = parse_spec(raw)
    plan = RetrainPlan.from_spec(spec)
    assert (plan.top_k, plan.epochs, plan.data) == (1, spec.epochs, spec.resolved_data())
    raw["retrain"] = {"data": str(toy_data), "epochs": 9, "top_k": 2, "train": {"cos_lr": False, "obj": 1.0}}
    from hpo.errors import HpoError

    with pytest.raises(HpoError, match="retrain.train.obj"):
        RetrainPlan.from_spec(parse_spec(raw))
