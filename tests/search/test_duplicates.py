"""A sampler that re-proposes trained hyps gets the earlier result back: nothing is trained twice.

Real `hpo launch` with real Ultralytics trainings (1 epoch at 64 px on the toy set) on a space of one
categorical hyp with two choices, so 5 trials must repeat points.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from hpo import attrs

from conftest import hpo_cmd, tiny_spec_dict


@pytest.mark.timeout(420)
def test_re_proposed_hyps_reuse_the_trained_result(toy_data: Path, tmp_path: Path) -> None:
    spec = tiny_spec_dict(toy_data, name="dup", epochs=1, trials=5, sampler="random")
    spec["search_space"] = {"mosaic": {"type": "categorical", "choices": [0.0, 1.0]}}
    spec["base"] = {"mosaic": 1.0, "lr0": 0.01}
    study_file = tmp_path / "dup.yaml"
    study_file.write_text(yaml.safe_dump(spec))
    db = f"sqlite:///{tmp_path / 'dup.db'}"
    runs = tmp_path / "runs"
    proc = subprocess.run(hpo_cmd("launch", "--study", str(study_file), "--storage", db, "--workers", "1",
                                  "--seed", "0", "--device", "cpu", "--artifacts", "off", "--runs-dir", str(runs),
                                  "--keep", "1", "--json"),
                          capture_output=True, text=True, cwd=tmp_path, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["done"]
    trials = optuna.load_study(study_name="dup", storage=db).trials
    assert len(trials) == 5 and all(t.state == TrialState.COMPLETE for t in trials)
    trained = [t for t in trials if attrs.DUPLICATE_OF not in t.user_attrs]
    reused = [t for t in trials if attrs.DUPLICATE_OF in t.user_attrs]
    # one training per distinct point, the rest reused
    assert len(trained) == len({t.params["mosaic"] for t in trials}) and len(reused) == 5 - len(trained) >= 3
    assert all(t.user_attrs[attrs.EPOCHS] == 1 for t in trained)
    for t in reused:
        twin = trials[t.user_attrs[attrs.DUPLICATE_OF]]
        assert twin.number < t.number and attrs.DUPLICATE_OF not in twin.user_attrs
        assert twin.params == t.params and twin.value == t.value
        assert t.user_attrs["fitness"] == twin.user_attrs["fitness"]  # its metrics come along
        assert t.user_attrs[attrs.EPOCHS] == 0 and attrs.DIR not in t.user_attrs and not t.intermediate_values
        assert attrs.BASE_TRIAL not in t.user_attrs
    # only the trained trials have a folder, and --keep 1 keeps the best trained one's weights (a reused
    # trial with the same value takes no place in that ranking)
    assert sorted(p.name for p in (runs / "dup").glob("trial_*")) == [f"trial_{t.number:04d}" for t in trained]
    best = max(trained, key=lambda t: (t.value, -t.number))
    assert [p.parent.name for p in (runs / "dup").glob("trial_*/weights")] == [f"trial_{best.number:04d}"]
