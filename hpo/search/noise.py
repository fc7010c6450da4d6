"""``hpo noise``: the objective's seed-to-seed noise, measured on the base hyps before a search.

A search's best trial beats the base hyps by some margin; whether that margin is a better set of
hyps or a luckier training seed depends on how far the same hyps move when only ``seed=`` changes.
This trains the base hyps (the study's ``base``, Ultralytics' defaults elsewhere) once per training
seed, with the study's data, model, weights and training arguments, and reports what a study file's
``noise:`` block holds: ``std`` (of the trial value, the best epoch's objective, as a trial scores) and
``per_epoch`` (of the best value up to each epoch: the margin the ``base``/``incumbent`` pruners
allow at that epoch, where mid-training values swing far more than the final one). With it in the
study file, ``hpo status`` states the best trial's gain in multiples of the noise.

Each seed's training is kept (``runs/<study>/noise/seed_N``, its curve in ``curve.json``): a killed
or repeated run retrains only the seeds whose curve is missing or was made with other settings.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from hpo.paths import write_atomic
from hpo.spec import StudySpec
from hpo.search.trial_runner import ProgressRunner

if TYPE_CHECKING:
    from rich.progress import Progress

#: Fewer seeds than this give a standard deviation too rough to judge a gain by.
MIN_SEEDS = 2
DEFAULT_SEEDS = 5


def seed_noise(curves: Sequence[Sequence[float]], direction: str = "maximize") -> tuple[float, list[float]]:
    """Sample std over seeds of the best value (a spec's ``noise.std``), and of the best value up to each
    epoch (``noise.per_epoch``), from one per-epoch objective curve per training seed.

    NaN (and no per-epoch values) with fewer than two curves; epochs beyond the shortest curve are left out.
    """
    curves = [list(c) for c in curves if c]
    if len(curves) < 2:
        return float("nan"), []
    best = max if direction == "maximize" else min
    epochs = min(len(c) for c in curves)
    per_epoch = [statistics.stdev(best(c[:k + 1]) for c in curves) for k in range(epochs)]
    return statistics.stdev(best(c) for c in curves), per_epoch


@dataclass
class SeedRun:
    """One training of the base hyps: its seed, per-epoch objective, best value, or why it failed."""

    seed: int
    values: list[float] = field(default_factory=list)
    value: float | None = None
    train_seconds: float = 0.0
    error: str | None = None
    reused: bool = False
    fingerprint: str = ""


@dataclass
class NoiseReport:
    """The seeds' runs and what they say: mean, std and per-epoch std of the objective."""

    study: str
    metric: str
    direction: str
    params: dict[str, Any]
    device: str
    runs: list[SeedRun]
    mean: float
    std: float
    per_epoch: list[float]

    @property
    def good_runs(self) -> list[SeedRun]:
        return [r for r in self.runs if r.error is None and r.value is not None]

    def source(self) -> str:
        seeds = [r.seed for r in self.good_runs]
        span = f"{seeds[0]}-{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) and len(seeds) > 2 \
            else ", ".join(map(str, seeds))
        return (f"base hyps, training seeds {span}, `hpo noise` on {time.strftime('%Y-%m-%d')}, "
                f"device {self.device}")

    def noise_block(self) -> dict[str, Any] | None:
        """The study file's ``noise:`` block, or None when the seeds did not give a usable std."""
        if not (math.isfinite(self.std) and self.std > 0):
            return None
        block: dict[str, Any] = {"std": float(f"{self.std:.4g}")}
        if self.per_epoch and all(v > 0 for v in self.per_epoch):  # the spec wants every margin positive
            block["per_epoch"] = [float(f"{v:.4g}") for v in self.per_epoch]
        block["source"] = self.source()
        return block

    def to_json(self) -> dict[str, Any]:
        return {"study": self.study, "metric": self.metric, "direction": self.direction, "params": self.params,
                "device": self.device, "mean": _finite_or_none(self.mean), "std": _finite_or_none(self.std),
                "per_epoch": self.per_epoch, "runs": [asdict(r) for r in self.runs], "noise": self.noise_block()}


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


class NoiseMeter:
    """Trains the base hyps of ``spec`` once per training seed and measures the spread.

    Args:
        spec: the study's validated spec.
        runs_dir: root of the run folders; trainings go to ``runs_dir/<study>/noise/seed_N``.
        device: ``cpu`` or a CUDA index.
        force: retrain seeds an earlier run already trained with the same settings.
        progress: where each training draws its progress bar (None: no bar).
    """

    def __init__(self, spec: StudySpec, *, runs_dir: Path, device: str, force: bool = False,
                 progress: Progress | None = None) -> None:
        self.spec = spec
        self.noise_dir = (Path(runs_dir) / spec.name / "noise").resolve()
        self.device = device
        self.force = force
        self.progress = progress
        self.params = spec.base_params()

    def fingerprint(self, seed: int) -> str:
        """Everything that shapes one seed's training: equal fingerprints, equal trainings."""
        args = self.spec.training_args(self.params, {"seed": seed})
        shaping = {"args": args, "weights": _file_id(args.get("pretrained")),
                   "device": self.device, "metric": self.spec.objective.metric}
        return hashlib.sha256(json.dumps(shaping, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def measure(self, seeds: Sequence[int], on_run: Callable[[SeedRun], None] | None = None) -> NoiseReport:
        runs = []
        for seed in seeds:
            run = self.run_seed(seed)
            runs.append(run)
            if on_run is not None:
                on_run(run)
        direction = self.spec.objective.direction
        good = [r for r in runs if r.error is None and r.value is not None]
        std, per_epoch = seed_noise([r.values for r in good], direction)
        mean = statistics.fmean(r.value for r in good) if good else float("nan")  # type: ignore[misc]
        return NoiseReport(study=self.spec.name, metric=self.spec.objective.metric, direction=direction,
                           params=self.params, device=self.device, runs=runs, mean=mean, std=std,
                           per_epoch=per_epoch)

    def run_seed(self, seed: int) -> SeedRun:
        save_dir = self.noise_dir / f"seed_{seed}"
        fingerprint = self.fingerprint(seed)
        if not self.force:
            kept = _load_run(save_dir / "curve.json", fingerprint)
            if kept is not None:
                return kept
        if save_dir.exists():  # interrupted or made with other settings: start clean
            shutil.rmtree(save_dir)
        run = SeedRun(seed=seed, fingerprint=fingerprint)
        runner = ProgressRunner(self.spec, runs_dir=self.noise_dir, device=self.device, study_name=self.spec.name,
                                progress=self.progress, label=f"seed {seed}")
        try:
            record = runner.train(self.params, save_dir, overrides={"seed": seed})
            run.values = list(record.values)
            run.train_seconds = round(record.train_seconds, 2)
            run.value = record.value(self.spec.objective.direction)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - one diverging seed is a finding, not the end of the run
            from hpo.search.worker import failure_reason

            run.error = failure_reason(exc)
        write_atomic(save_dir / "curve.json", json.dumps(asdict(run), indent=2))  # a rerun trusts a whole curve only
        return run


def _file_id(path: str | None) -> Any:
    """A weights file by size and modification time (cheap; a new checkpoint at the same path counts as new)."""
    if not path:
        return None
    try:
        st = Path(path).stat()
    except OSError:
        return path
    return [str(path), st.st_size, int(st.st_mtime)]


def _load_run(path: Path, fingerprint: str) -> SeedRun | None:
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if old.get("fingerprint") != fingerprint or old.get("error") or old.get("value") is None:
        return None
    return SeedRun(**{**old, "reused": True})
