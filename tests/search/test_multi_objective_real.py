"""One tiny real multi-objective study on CPU: real Ultralytics trainings (imgsz 64, 1 epoch) through
`hpo launch`, fitness against CPU latency with a weights_mb constraint; it ends with a non-empty
Pareto front and a front plot; `hpo retrain --front --by latency_ms` retrains the front and picks the
fastest feasible model, and `hpo export --final` says so."""

from __future__ import annotations

import json
import subprocess

import optuna
import yaml
from optuna.trial import TrialState

from hpo import attrs

from conftest import hpo_cmd, tiny_spec_dict


def test_tiny_real_multi_objective_study(tmp_path, toy_data) -> None:
    spec = tiny_spec_dict(toy_data, name="mo_real", epochs=1, trials=2, sampler="tpe", pruner="none")
    spec.pop("objective")
    spec["objectives"] = [{"metric": "fitness", "direction": "maximize"},
                          {"metric": "latency_ms", "direction": "minimize"}]
    spec["constraints"] = {"weights_mb": {"max": 100}}
    spec["latency"] = {"runs": 5, "warmup": 2}
    spec["train"].pop("imgsz")
    spec["search_space"] = {**spec["search_space"], "imgsz": {"type": "categorical", "choices": [64, 128]}}
    spec["base"] = {**spec["base"], "imgsz": 64}
    path = tmp_path / "mo_real.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    url = f"sqlite:///{tmp_path / 'mo.db'}"
    launch = subprocess.run(hpo_cmd("launch", "--study", str(path), "--storage", url, "--runs-dir",
                                    str(tmp_path / "runs"), "--artifacts", "off", "--json"),
                            capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert launch.returncode == 0, launch.stderr[-3000:]
    summary = json.loads(launch.stdout)
    assert summary["front"], summary

    study = optuna.load_study(study_name="mo_real", storage=url)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 2 and study.best_trials
    for t in complete:
        assert len(t.values) == 2 and t.values[1] == t.user_attrs["latency_ms"] > 0
        assert t.user_attrs[attrs.FEASIBLE] is True and 0 < t.user_attrs["weights_mb"] < 100
        assert t.user_attrs[attrs.COST]["weights_mb_source"].startswith("best.pt")
        assert t.user_attrs[attrs.COST]["device"] == "cpu" and t.user_attrs[attrs.COST]["runs"] == 5
    print({t.number: (t.params["imgsz"], t.values, t.user_attrs["weights_mb"], t.user_attrs["params"],
                      t.user_attrs["gflops"]) for t in complete})

    report = subprocess.run(hpo_cmd("report", "--study", "mo_real", "--storage", url, "-o", str(tmp_path / "rep")),
                            capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr
    assert (tmp_path / "rep" / "pareto_front.png").stat().st_size > 1000
    assert "Pareto front" in (tmp_path / "rep" / "index.html").read_text()

    retrain = subprocess.run(hpo_cmd("retrain", "--study", "mo_real", "--storage", url, "--front", "--by", "latency_ms",
                                     "--epochs", "1", "--runs-dir", str(tmp_path / "runs"), "--artifacts", "off",
                                     "--device", "cpu", "--json"),
                             capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert retrain.returncode == 0, retrain.stderr[-3000:]
    record = json.loads(retrain.stdout)
    assert "the winner: best latency_ms (minimize) among feasible trials on the full set" in " ".join(retrain.stderr.split())
    assert record["chosen_by"] == {"metric": "latency_ms", "direction": "minimize", "primary": False,
                                   "rule": "best latency_ms (minimize) among feasible trials"}
    ok = [m for m in record["models"] if m["full_value"] is not None and not m["error"]]
    assert ok and all(m["feasible"] is True and m["costs"]["latency_ms"] > 0 for m in ok)
    fastest = min(ok, key=lambda m: (m["costs"]["latency_ms"], m["mini_rank"]))
    assert record["winner"] == fastest["trial"]
    assert {m["trial"] for m in record["models"]} == {t.number for t in study.best_trials}
    final = subprocess.run(hpo_cmd("export", "--study", "mo_real", "--storage", url, "--final", "-o", "-"),
                           capture_output=True, text=True, timeout=120)
    assert final.returncode == 0, final.stderr
    assert f"final model: trial {fastest['trial']}" in final.stdout
    assert "chosen by best latency_ms (minimize) among feasible trials (hpo retrain)" in final.stdout
