"""The record of the final stage: the retrained models, stored with the study as ``hpo:final``.

``hpo retrain`` writes it; ``status``, ``export --final``, ``report`` and the dashboard read it. It
lives apart from the retraining itself so readers never import the trainer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import optuna

from hpo import attrs
from hpo.errors import HpoError

#: The contest's limit on the submitted weight file ("at most 100 MB"), read as 10^8 bytes: the
#: stricter of MB and MiB.
WEIGHT_LIMIT_BYTES = 100_000_000


@dataclass
class FinalModel:
    """One retrained trial: its mini-set result next to its full-set one."""

    trial: int
    params: dict[str, Any]
    mini_value: float
    mini_rank: int
    fingerprint: str
    dir: str
    full_value: float | None = None
    full_rank: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    epochs: int = 0
    weights: str | None = None
    weight_bytes: int | None = None
    fp16_stripped: bool | None = None
    under_limit: bool | None = None
    train_seconds: float = 0.0
    wall_seconds: float = 0.0
    reused: bool = False
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.full_value is not None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def final_record(study: optuna.Study) -> dict[str, Any] | None:
    record = study.user_attrs.get(attrs.STUDY_FINAL)
    return record if isinstance(record, dict) else None


def final_winner(study: optuna.Study) -> tuple[dict[str, Any], dict[str, Any]]:
    """The study's final record and its winning model; a one-line error if there is none."""
    record = final_record(study)
    if record is None:
        raise HpoError(f"study {study.study_name!r} has no final model yet: run `hpo retrain --study "
                       f"{study.study_name}` first", field="--final")
    winner = next((m for m in record["models"] if m["trial"] == record.get("winner")), None)
    if winner is None:
        raise HpoError(f"no retrained model of study {study.study_name!r} succeeded", field="--final")
    return record, winner


def summary_lines(record: dict[str, Any]) -> list[str]:
    """What ``retrain`` and ``status`` say about the final models, in words."""
    lines = []
    winner = record.get("winner")
    if winner is not None:
        w = next(m for m in record["models"] if m["trial"] == winner)
        lines.append(f"winner on the full set: trial {winner} ({record['metric']} {w['full_value']:.5f}, "
                     f"mAP75 {format_value(w['metrics'].get('map75'))}, weights {_mb(w['weight_bytes'])}"
                     f"{'' if w.get('under_limit') else ' OVER the 100 MB limit'})")
        mini = record.get("mini_winner")
        if mini == winner:
            lines.append(f"the mini-set winner (trial {mini}) is also the full-set winner")
        else:
            rank = record.get("mini_winner_full_rank")
            lines.append(f"the mini-set winner (trial {mini}) ranks {rank if rank else 'n/a'} on the full set")
    n_ok = sum(1 for m in record["models"] if m.get("full_value") is not None and not m.get("error"))
    if record.get("spearman") is not None:
        lines.append(f"Spearman rank correlation mini vs full over {n_ok} models: {record['spearman']:+.3f} "
                     "(1: the mini set ranks the hyps exactly as the full set does)")
    elif n_ok >= 3:
        lines.append("Spearman rank correlation mini vs full: undefined (all values tie on one side)")
    return lines


def format_value(value: Any) -> str:
    return f"{value:.5f}" if isinstance(value, (int, float)) else "n/a"


def _mb(n: Any) -> str:
    return f"{n / 1e6:.1f} MB" if isinstance(n, (int, float)) else "n/a"
