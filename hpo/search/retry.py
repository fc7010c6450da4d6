"""Failed-by-circumstance trials go back to the study, resuming from their last epoch.

A trial whose worker died (stale heartbeat) or was told to stop (SIGTERM, preemption) did nothing
wrong: its hyps are re-queued as a WAITING trial, up to ``max_retry`` times per original trial, and
the next free worker trains them. Optuna's own retry callback starts such trials from scratch; we go
further: when the dead trial's ``last.pt`` is readable, the retry resumes it (Ultralytics resume) and
inherits the intermediate values and per-epoch metrics already reported, so a kill costs at most the
epoch in progress. Trials that failed on their own (crash, OOM, NaN) are not retried.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo import attrs, optuna_compat

DEFAULT_MAX_RETRY = 3


def completed_epochs(checkpoint: Path) -> int | None:
    """Epochs a readable, resumable Ultralytics ``last.pt`` holds; None if it cannot be resumed."""
    if not checkpoint.is_file():
        return None
    try:
        import torch

        ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    except Exception:  # noqa: BLE001 - truncated or foreign file: start afresh
        return None
    epoch = ckpt.get("epoch", -1) if isinstance(ckpt, dict) else -1
    if epoch is None or epoch < 0 or ckpt.get("optimizer") is None:
        return None  # finished (optimizer stripped) or not a training checkpoint
    return int(epoch) + 1


def resume_point(trial: optuna.Trial) -> tuple[Path, int] | None:
    """The checkpoint a retried trial continues from and the epochs it holds, if readable here.

    Records on the trial where it resumed from (or why it could not), for ``status`` and the
    dashboard.
    """
    path = trial.user_attrs.get(attrs.RESUME_FROM)
    if not path:
        return None
    epochs = completed_epochs(Path(path))
    origin = trial.user_attrs.get(attrs.RETRY_OF)
    if epochs is None:
        trial.set_user_attr(attrs.RESUMED, {"from_trial": origin, "epoch": 0,
                                           "note": f"{path} not resumable here; restarted"})
        return None
    trial.set_user_attr(attrs.RESUMED, {"from_trial": origin, "epoch": epochs, "checkpoint": path})
    return Path(path), epochs


def last_checkpoint(trial_dir: str | Path) -> Path:
    return Path(trial_dir) / "weights" / "last.pt"


class RequeueTrial:
    """Heartbeat-stale-trial callback (and the worker's own hand-back) that re-queues a trial."""

    def __init__(self, max_retry: int = DEFAULT_MAX_RETRY) -> None:
        self.max_retry = max_retry

    def verdict(self, system_attrs: dict[str, Any], params: dict[str, Any]) -> str:
        """What happens to a trial handed back or lost now, for its failure reason (said before it ends)."""
        retried = len(system_attrs.get(attrs.RETRY_HISTORY, []))
        if retried >= self.max_retry:
            return f"not re-queued: retried {retried} times already (--max-retry {self.max_retry})"
        if not params and not system_attrs.get(attrs.FIXED_PARAMS):
            return "not re-queued: no hyps sampled yet"
        return "trial re-queued"

    def exhausted(self, system_attrs: dict[str, Any]) -> int | None:
        """The retries a trial already had, if that is all it gets (then its hyps are dropped)."""
        retried = len(system_attrs.get(attrs.RETRY_HISTORY, []))
        return retried if retried >= self.max_retry else None

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        history = [*trial.system_attrs.get(attrs.RETRY_HISTORY, []), trial.number]
        queued = trial.system_attrs.get(attrs.FIXED_PARAMS)
        if len(history) > self.max_retry or not (trial.params or queued):
            return
        if not claim_requeue(study, trial):
            return  # another process found it lost at the same moment and re-queued it
        if not trial.params:  # claimed from the queue but lost before sampling: queue the same hyps again
            retry_attrs = {**attrs.inherited(trial.user_attrs), attrs.RETRY_OF: trial.number}
            study.add_trial(optuna.create_trial(state=TrialState.WAITING, user_attrs=retry_attrs, system_attrs={
                attrs.FIXED_PARAMS: queued, attrs.FAILED_TRIAL: history[0], attrs.RETRY_HISTORY: history}))
            return
        user_attrs = attrs.inherited(trial.user_attrs)
        user_attrs[attrs.RETRY_OF] = trial.number
        intermediate: dict[int, float] = {}
        resume = self._resume_point(trial)
        if resume is not None:
            checkpoint, epochs, metrics = resume
            user_attrs[attrs.RESUME_FROM] = str(checkpoint)
            user_attrs[attrs.EPOCH_METRICS] = metrics
            for key in (attrs.VAL_SUBSET, attrs.VAL_IMAGES):  # which of those epochs saw val_fraction's subset
                if isinstance(trial.user_attrs.get(key), list):
                    user_attrs[key] = trial.user_attrs[key][:epochs]
            intermediate = {s: v for s, v in trial.intermediate_values.items() if s <= epochs}
        system_attrs: dict[str, Any] = {attrs.FAILED_TRIAL: history[0], attrs.RETRY_HISTORY: history}
        study.add_trial(optuna.create_trial(
            state=TrialState.WAITING, params=trial.params, distributions=trial.distributions,
            user_attrs=user_attrs, system_attrs=system_attrs, intermediate_values=intermediate or None))

    @staticmethod
    def _resume_point(trial: FrozenTrial) -> tuple[Path, int, list[dict[str, Any]]] | None:
        """The dead trial's checkpoint, if readable here and matching what it reported."""
        directory = trial.user_attrs.get(attrs.DIR)
        if not directory:
            return None
        checkpoint = last_checkpoint(directory)
        epochs = completed_epochs(checkpoint)
        metrics = trial.user_attrs.get(attrs.EPOCH_METRICS) or []
        if not epochs or len(metrics) < epochs:
            return None  # killed between saving and reporting that epoch: start afresh
        return checkpoint, epochs, metrics[:epochs]


def claim_requeue(study: optuna.Study, trial: FrozenTrial) -> bool:
    """Whether this process re-queues ``trial``: the first to claim it, atomically in the storage.

    Several workers run the stale-trial check at once, and a worker handing its trial back can race
    one that judged it lost: each may see itself as the one that failed the trial (on SQLite a retry
    after "database is locked" finds the trial finished and cannot tell whose commit that was). One
    claim record per trial (a study attribute, unique per study) lets exactly one re-queue it; a claim
    whose reply was lost is recognised by its token.
    """
    backend = optuna_compat.backend_of(study)
    if not hasattr(backend, "claim_study_key"):
        return True  # a storage without atomic claims (in-memory: one process)
    sid = optuna_compat.study_id(study)
    key, token = attrs.REQUEUE_CLAIM_PREFIX + str(optuna_compat.trial_id(trial)), uuid.uuid4().hex
    if backend.claim_study_key(sid, key, token):
        return True
    return backend.get_study_system_attrs(sid).get(key) == token
