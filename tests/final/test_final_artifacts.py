"""Every trial leaves its hyp.yaml and results.csv in the Optuna artifact store, uploaded while it runs."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.artifacts import download_artifact, get_all_artifact_meta

from hpo import artifacts
from hpo.artifacts import resolve_dir, upload_trial_files
from hpo.attrs import ARTIFACT_ERROR as ATTR_UPLOAD_ERROR

from final_support import SEARCH_EPOCHS, FinishedStudy


def test_every_trial_uploaded_its_files(fin: FinishedStudy, tmp_path: Path) -> None:
    study = fin.study()
    storage = study._storage
    store = artifacts.open_store(fin.artifacts)  # the default: artifacts/ next to the SQLite file
    assert len(study.trials) == 3
    for trial in study.trials:
        metas = {m.filename: m for m in get_all_artifact_meta(trial, storage=storage)}
        assert set(metas) == {"hyp.yaml", "results.csv"}, trial.number
        assert metas["results.csv"].mimetype == "text/csv"
        run_dir = Path(trial.user_attrs["hpo:dir"])
        for name, meta in metas.items():
            got = tmp_path / f"{trial.number}_{name}"
            download_artifact(artifact_store=store, artifact_id=meta.artifact_id, file_path=str(got))
            assert got.read_bytes() == (run_dir / name).read_bytes()
        assert len((run_dir / "results.csv").read_text().strip().splitlines()) == 1 + SEARCH_EPOCHS  # header + one line per epoch
        assert ATTR_UPLOAD_ERROR not in trial.user_attrs


def test_artifact_folder_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(artifacts.ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "storage" / "hpo.db"
    assert resolve_dir(None, f"sqlite:///{db}") == tmp_path / "storage" / "artifacts"
    assert resolve_dir(None, "postgresql+psycopg://u:p@db:5432/hpo") == tmp_path / "storage" / "artifacts"
    assert resolve_dir("shared/art", f"sqlite:///{db}") == tmp_path / "shared" / "art"
    assert resolve_dir("off", f"sqlite:///{db}") is None
    monkeypatch.setenv(artifacts.ENV_VAR, "/mnt/nfs/artifacts")
    assert resolve_dir(None, f"sqlite:///{db}") == Path("/mnt/nfs/artifacts")
    assert resolve_dir("here", None) == tmp_path / "here"  # the flag beats the environment


def test_uploads_only_to_a_given_store_and_never_fail_a_trial(tmp_path: Path) -> None:
    (tmp_path / "hyp.yaml").write_text("lr0: 0.01\n")
    study = optuna.create_study()
    trial = study.ask()
    assert upload_trial_files(trial, tmp_path, None) == []  # uploads off: nothing written
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    assert upload_trial_files(trial, tmp_path, blocker) == []  # the store cannot be created: noted, not raised
    assert "FileExistsError" in study.trials[0].user_attrs[ATTR_UPLOAD_ERROR]
    assert len(upload_trial_files(trial, tmp_path, tmp_path / "store")) == 1  # results.csv absent: only hyp.yaml
    study.tell(trial, 1.0)
    assert [m.filename for m in get_all_artifact_meta(study.trials[0], storage=study._storage)] == ["hyp.yaml"]
