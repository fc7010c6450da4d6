"""Trial files in an Optuna artifact store, so the dashboard lists and serves them.

Optuna attaches an artifact to a trial only while the trial runs (finished trials are read-only), so
the trial runner uploads a trial's ``hyp.yaml`` and ``results.csv`` in the ``finally`` block that records
its metrics, before the worker tells the study. Final models (``hpo retrain``) have no trial of their
own: their weights, hyps and metrics are attached to the study.

Where the store lives, first match wins: ``--artifacts DIR``; ``$HPO_ARTIFACTS``; ``artifacts/`` next
to an SQLite database (``storage/artifacts`` for the default ``storage/hpo.db``); ``storage/artifacts``
under the working directory for server databases (point every machine at one shared folder).
``HPO_ARTIFACTS=off`` turns uploads off. Commands resolve the folder once (:func:`resolve_dir`) and
hand it on explicitly: to the trial runner and the retrainer, and as ``--artifacts`` to the workers
``hpo launch`` starts.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Union

import optuna
from optuna.artifacts import FileSystemArtifactStore, get_all_artifact_meta, upload_artifact
from sqlalchemy.engine import make_url

from hpo import attrs

log = logging.getLogger("hpo.artifacts")

ENV_VAR = "HPO_ARTIFACTS"
OFF = frozenset({"off", "none", "no", "0", "false"})
DEFAULT_DIR = Path("storage") / "artifacts"
TRIAL_FILES = ("hyp.yaml", "results.csv")

# Text types the dashboard can preview in the browser instead of offering a download.
_MIMETYPES = {".yaml": "text/plain", ".yml": "text/plain", ".csv": "text/csv", ".json": "application/json",
              ".pt": "application/octet-stream"}

Target = Union[optuna.Trial, optuna.Study]


def resolve_dir(explicit: str | Path | None = None, storage_url: str | None = None) -> Path | None:
    """The artifact folder for a storage (None when uploads are off); see the module docstring."""
    raw = str(explicit) if explicit is not None else os.environ.get(ENV_VAR)
    if raw:
        return None if raw.strip().lower() in OFF else Path(raw).expanduser().resolve()
    if storage_url:
        try:
            url = make_url(storage_url)
        except Exception:  # noqa: BLE001 - a bad URL is reported by open_storage, not here
            url = None
        if url is not None and url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            return (Path(url.database).expanduser().resolve().parent / "artifacts")
    return DEFAULT_DIR.resolve()


def open_store(path: Path) -> FileSystemArtifactStore:
    path.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(base_path=path)


def upload(store: FileSystemArtifactStore, target: Target, path: Path, *, name: str | None = None) -> str:
    """Upload one file under ``name`` (default: its own name); returns the artifact id."""
    mimetype = _MIMETYPES.get(path.suffix.lower())
    if name is None or name == path.name:
        return upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=target, mimetype=mimetype)
    # Optuna names an artifact after the file: a link in a scratch folder gives it another name.
    with tempfile.TemporaryDirectory(prefix="hpo-artifact-") as tmp:
        alias = Path(tmp) / name
        try:
            alias.symlink_to(path.resolve())
        except OSError:
            import shutil

            shutil.copyfile(path, alias)
        return upload_artifact(artifact_store=store, file_path=str(alias), study_or_trial=target, mimetype=mimetype)


def upload_trial_files(trial: optuna.Trial, save_dir: Path, artifact_dir: Path | None) -> list[str]:
    """Attach a running trial's hyp.yaml and results.csv; a failed upload never fails the trial."""
    ids: list[str] = []
    if artifact_dir is None:
        return ids
    try:
        store = open_store(artifact_dir)
        for name in TRIAL_FILES:
            path = Path(save_dir) / name
            if path.is_file():
                ids.append(upload(store, trial, path))
    except Exception as exc:  # noqa: BLE001 - a full disk must not cost the training
        log.warning("trial %d: artifact upload failed: %s", trial.number, exc)
        trial.set_user_attr(attrs.ARTIFACT_ERROR, f"{type(exc).__name__}: {exc}"[:300])
    return ids


def artifact_names(target: Any, storage: optuna.storages.BaseStorage | None = None) -> list[str]:
    """File names of the artifacts attached to a study, trial or frozen trial."""
    return sorted(m.filename for m in get_all_artifact_meta(target, storage=storage))
