"""hpo as a library: what the CLI does, as functions a notebook or a test can call.

The ``hpo`` commands are a thin layer over these: they parse options, call one function here and
print its result. Everything raises :class:`~hpo.errors.HpoError` for bad input, like the CLI.

    import hpo
    summary = hpo.launch("demo", sampler="ga", workers=2)     # create or join, train until the budget
    study = hpo.load("demo")                                   # an optuna.Study plus hpo's settings
    hpo.export("demo", "hyp.yaml")                             # the best trial for `yolo train cfg=`
"""

from __future__ import annotations

from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from hpo import attrs
from hpo.errors import HpoError
from hpo.study import StudySettings


@dataclass(frozen=True)
class LoadedStudy:
    """A study read back from a storage: Optuna's study object and what hpo stored with it."""

    study: optuna.Study
    settings: StudySettings
    storage_url: str

    @property
    def name(self) -> str:
        return self.study.study_name

    def summary(self) -> dict[str, Any]:
        return study_summary(self.study, self.settings)


def open_storage(storage: str | None = None, *, create: bool = False,
                 **kwargs: Any) -> tuple[optuna.storages.RDBStorage, str]:
    """The storage behind ``storage`` (URL, SQLite path, else ``$HPO_STORAGE``/the default) and its URL.

    Only ``create=True`` (``launch``, ``worker``) may create an SQLite file; every other command
    fails naming the path it looked at, instead of creating an empty storage there.
    """
    from hpo.storage import check_creatable, check_exists, open_storage as _open, resolve_url

    url = resolve_url(storage)
    if create:
        check_creatable(url)
    else:
        check_exists(url)
    return _open(url, **kwargs), url


def check_writable(runs_dir: str | Path | None, artifacts: str | Path | None) -> None:
    """The folders a search writes to, checked before the study is created or joined."""
    from hpo.paths import check_writable_dir

    if runs_dir is not None:
        check_writable_dir(Path(runs_dir), "--runs-dir")
    if artifacts is not None:
        check_writable_dir(Path(artifacts), "--artifacts")


def load(study: str, storage: str | None = None) -> LoadedStudy:
    """Study ``study`` from the storage, with its stored spec, sampler, pruner and budget."""
    from hpo.study import load_settings

    rdb, url = open_storage(storage)
    settings = load_settings(rdb, study)
    return LoadedStudy(optuna.load_study(study_name=study, storage=rdb), settings, url)


def study_names(storage: str | None = None) -> list[str]:
    from hpo.study import study_names as names

    rdb, _ = open_storage(storage)
    return names(rdb)


def artifact_dir(explicit: str | Path | None, storage_url: str) -> Path | None:
    """The artifact folder for this storage (None: uploads off); see :mod:`hpo.artifacts`."""
    from hpo.artifacts import resolve_dir

    return resolve_dir(explicit, storage_url)


def check_study_files(spec: Any, source: str) -> None:
    """Data yaml, weights and dataset checked before any worker trains."""
    from hpo.data.check import check_dataset

    spec.check_files(source)
    check_dataset(spec.resolved_data())


def launch(study: str | Path, *, storage: str | None = None, sampler: str | None = None,
           pruner: str | None = None, trials: int | None = None, epoch_budget: int | None = None,
           workers: int = 1, device: str | None = None,
           gpus: list[str] | None = None, workers_per_gpu: int | str = 1, gpu_mem_per_trial: float | None = None,
           mps: str = "auto", allow_spec_change: bool = False,
           allow_budget_cut: bool = False, studies_dir: str | Path = "studies", create_only: bool = False,
           options: Any = None, console: Any = None, check_data: bool = True) -> dict[str, Any]:
    """Create or join a study and run local worker processes until it has its budget of trials.

    ``study`` is a study name (looked up in ``studies_dir``) or a YAML path. ``options`` is a
    :class:`~hpo.search.worker.WorkerOptions` for the workers. Returns the study summary; its
    ``worker_errors`` counts workers that exited with an error, ``failed_workers`` lists them with
    their logs, and ``interrupted`` says whether a signal (Ctrl-C) stopped the launch.

    ``workers_per_gpu`` is a number or ``"auto"`` (from each GPU's free memory and
    ``gpu_mem_per_trial`` GiB per training, capped by the cores); ``mps`` (``auto``/``on``/``off``)
    says whether CUDA MPS runs while workers share a GPU (:mod:`hpo.search.mps`). ``gpu`` in the
    summary says what was chosen and done.
    """
    from rich.console import Console

    from hpo.offline import configure_offline
    from hpo.search import mps as gpu_sharing
    from hpo.search.launch import Launcher, parse_workers_per_gpu, plan_workers, signals_as_interrupt
    from hpo.search.worker import WorkerOptions
    from hpo.spec import find_spec_file, load_spec
    from hpo.storage import mask_url, resolve_url
    from hpo.study import create_or_join

    fixed_per_gpu = parse_workers_per_gpu(workers_per_gpu)  # None: auto; bad options fail before anything starts
    gpu_sharing.check_mode(mps)
    if gpu_mem_per_trial is not None and not gpu_mem_per_trial > 0:
        raise HpoError(f"{gpu_mem_per_trial!r} must be above 0 (GiB)", field="--gpu-mem-per-trial")
    spec_path = find_spec_file(str(study), studies_dir)
    spec = load_spec(spec_path)
    console = console or Console(stderr=True, quiet=True)
    if check_data and (options is None or options.trainer == "yolo"):
        check_study_files(spec, str(spec_path))
    configure_offline()
    url = resolve_url(storage)
    options = options or WorkerOptions(artifacts=artifact_dir(None, url))
    check_writable(options.runs_dir, options.artifacts)
    rdb, url = open_storage(url, create=True)
    settings = create_or_join(rdb, spec, sampler=sampler, pruner=pruner, budget=trials, epoch_budget=epoch_budget,
                              allow_spec_change=allow_spec_change, allow_budget_cut=allow_budget_cut)
    for change in settings.changes:  # a join that changes the study says so
        console.print(f"[yellow]warning:[/] study {spec.name}: {change}", soft_wrap=True)
    the_study = optuna.load_study(study_name=spec.name, storage=rdb)
    if create_only:
        console.print(f"study [bold]{spec.name}[/] ready on {mask_url(url)}: sampler {settings.sampler}, pruner "
                      f"{settings.pruner}, budget {budget_text(settings)}; start workers with `hpo worker --study "
                      f"{spec.name}`")
        return {**study_summary(the_study, settings), "worker_errors": 0, "storage": mask_url(url),
                "changes": list(settings.changes), "interrupted": False, "failed_workers": []}
    gpu_plan = _plan_gpus(spec, gpus=gpus, device=device, fixed_per_gpu=fixed_per_gpu,
                          gpu_mem_per_trial=gpu_mem_per_trial, console=console)
    plans = plan_workers(workers=workers, gpus=gpu_plan["gpus"], device=device,
                         workers_per_gpu=gpu_plan["workers_per_gpu"])
    on_gpu = plans[0].device != "cpu"
    console.print(f"study [bold]{spec.name}[/] on {mask_url(url)}: sampler {settings.sampler}, pruner "
                  f"{settings.pruner}, budget {budget_text(settings)}, {len(plans)} worker(s) on "
                  f"{'GPU' if on_gpu else 'CPU'}")
    if spec.base_import is not None:  # YOLOv5 keys without an Ultralytics meaning: said, not dropped silently
        for line in spec.base_import.warning_lines():
            console.print(f"[yellow]warning:[/] {line}")
    sharing = max(Counter(p.env.get("CUDA_VISIBLE_DEVICES") for p in plans).values()) if on_gpu else 0
    control = gpu_sharing.find_control()
    use_mps, why = gpu_sharing.wanted(mps, gpu_workers=on_gpu, max_per_gpu=sharing, control=control)
    launcher = Launcher(study=the_study, settings=settings, storage_url=url, plans=plans, options=options,
                        console=console)
    mps_record: dict[str, Any] = {"mode": mps, "used": use_mps, "started": False, "lines": []}
    if not use_mps:
        mps_record["lines"].append(f"MPS: {why}")
        if on_gpu:
            console.print(f"MPS: {why}", markup=False)
    daemon = (gpu_sharing.MpsDaemon(control, log_directory=launcher.log_dir() / "mps",
                                    say=lambda line: console.print(line, markup=False, soft_wrap=True))
              if use_mps and control else None)
    with signals_as_interrupt():  # SIGTERM/SIGHUP too: a daemon started here is stopped
        with daemon if daemon is not None else nullcontext():
            if daemon is not None:
                mps_record["started"] = daemon.started
            try:
                launcher.start()
                failed = launcher.wait()
            except BaseException:
                launcher.stop()  # no worker may outlive the launch (nor the MPS daemon it uses)
                raise
    if daemon is not None:
        mps_record["lines"] = daemon.lines
    gpu_plan["mps"] = mps_record
    return {**study_summary(the_study, settings), "worker_errors": len(failed), "storage": mask_url(url),
            "logs": str(launcher.log_dir()), "changes": list(settings.changes), "interrupted": launcher.interrupted,
            "gpu": {k: v for k, v in gpu_plan.items() if k != "gpus"},
            "failed_workers": [{"index": w.index, "returncode": w.returncode, "log": str(w.log)} for w in failed]}


def _plan_gpus(spec: Any, *, gpus: list[str] | None, device: str | None, fixed_per_gpu: int | None,
               gpu_mem_per_trial: float | None, console: Any) -> dict[str, Any]:
    """The GPUs this launch uses and how many workers each gets (``--workers-per-gpu auto``: measured now)."""
    import os

    from hpo.search.launch import (DEFAULT_GPU_MEM_PER_TRIAL_GIB, DEFAULT_LOADER_WORKERS, fit_workers_per_gpu,
                                   query_free_gib, visible_gpus)

    gpu_list = None if device == "cpu" else (gpus if gpus is not None else visible_gpus())
    if not gpu_list or fixed_per_gpu is not None:
        return {"gpus": gpu_list, "workers_per_gpu": fixed_per_gpu or 1, "auto": None}
    mem = gpu_mem_per_trial or DEFAULT_GPU_MEM_PER_TRIAL_GIB
    loader_workers = int(spec.train.get("workers") or DEFAULT_LOADER_WORKERS)
    cpus = os.cpu_count() or 1
    fits = fit_workers_per_gpu({g: query_free_gib(g) for g in gpu_list}, mem_per_trial_gib=mem, cpus=cpus,
                               loader_workers=loader_workers)
    lines = [fit.describe(mem, cpus, loader_workers) for fit in fits.values()]
    console.print("workers per GPU (auto): " + "; ".join(lines), soft_wrap=True)
    return {"gpus": gpu_list, "workers_per_gpu": {g: f.workers for g, f in fits.items()},
            "auto": {"gpu_mem_per_trial_gib": mem, "cpus": cpus, "loader_workers": loader_workers,
                     "free_gib": {g: round(f.free_gib, 2) for g, f in fits.items()}, "lines": lines}}


def budget_text(settings: StudySettings) -> str:
    """``20 trials`` or ``20 trials / 300 epochs``: the study's budgets, as launch and status say them."""
    epochs = f" / {settings.epoch_budget} epochs" if settings.epoch_budget is not None else ""
    return f"{settings.budget} trials{epochs}"


def study_summary(study: optuna.Study, settings: StudySettings) -> dict[str, Any]:
    """What ``hpo status`` and ``hpo launch --json`` say about a study."""
    from hpo.search.objective import METRIC_NAMES
    from hpo.study import best_trial, epoch_use, progress

    from hpo.study import gain_over_base, is_multi_objective, pareto_front

    state = progress(study)
    epochs = epoch_use(study, settings.epochs_per_trial) if settings.epoch_budget is not None else None
    best = best_trial(study)
    failed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,)) if state.failed else []
    exhausted = [t.number for t in failed if t.user_attrs.get(attrs.RETRIES_EXHAUSTED) is not None]
    # Workers racing for the last budget slot record the loser's empty trial as FAIL (Optuna cannot
    # delete a trial); it trained nothing, so it is counted apart, not as a failure.
    surplus = sum(1 for t in failed if t.user_attrs.get(attrs.SURPLUS))
    study_attrs = study.user_attrs
    multi = is_multi_objective(study)
    return {
        "study": study.study_name,
        "sampler": settings.sampler,
        "pruner": settings.pruner,
        "objective": settings.spec.objective.model_dump(),
        "objectives": [o.model_dump() for o in settings.spec.objectives],
        "constraints": {k: v.model_dump(exclude_none=True) for k, v in settings.spec.constraints.items()},
        "budget": settings.budget,
        # With an epoch budget: the epochs the finished trials trained (hpo.study.epoch_use), and whether
        # either budget is reached (the study is done).
        "epoch_budget": settings.epoch_budget,
        "epochs_trained": None if epochs is None else epochs.trained,
        "done": state.finished >= settings.budget or (epochs is not None and epochs.trained >= settings.epoch_budget),
        "warnings": settings.spec.base_import.warning_lines() if settings.spec.base_import else [],
        "final": study_attrs.get(attrs.STUDY_FINAL),
        # Trials whose worker died or was stopped once too often: their hyps were never trained to the end.
        "retries_exhausted": exhausted,
        # Workers that gave up (too many failed trials in a row), with why.
        "stopped_workers": [v["reason"] for k, v in sorted(study_attrs.items())
                            if k.startswith(attrs.WORKER_STOPPED_PREFIX) and isinstance(v, dict)],
        # finished: what counts against the budget (hpo.study.StudyProgress); infeasible: refused untrained.
        "trials": {"finished": state.finished, "complete": state.complete, "pruned": state.pruned,
                   "infeasible": state.infeasible,
                   "failed": state.failed - surplus, "running": state.running, "waiting": state.waiting,
                   "surplus": surplus},
        "best": None if best is None else {
            "number": best.number, "value": best.values[0], "params": best.params,
            "metrics": {k: best.user_attrs.get(k) for k in METRIC_NAMES},
        },
        "vs_base": gain_over_base(study, settings.spec),
        "front": None if not multi else [
            {"number": t.number, "values": t.values, "params": t.params} for t in pareto_front(study)],
    }


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """One row per trial: state, value(s), params, epochs, costs, feasibility and why it ended."""
    from hpo.spec import COST_METRICS

    rows = []
    for t in study.get_trials(deepcopy=False):
        rows.append({
            "number": t.number, "state": t.state.name, "value": t.values[0] if t.values else None,
            "values": t.values, "params": t.params, "feasible": t.user_attrs.get(attrs.FEASIBLE),
            "violations": t.user_attrs.get(attrs.VIOLATIONS) or [],
            "costs": {k: t.user_attrs[k] for k in COST_METRICS if k in t.user_attrs},
            "epochs": t.user_attrs.get(attrs.EPOCHS), "last_step": t.last_step,
            "train_seconds": t.user_attrs.get(attrs.TRAIN_SECONDS),
            "reason": t.user_attrs.get(attrs.FAIL_REASON) or t.user_attrs.get(attrs.PRUNED_REASON),
            "worker": t.user_attrs.get(attrs.WORKER),
        })
    return rows


def export(study: str, output: str | Path | None = None, *, trial: int | None = None, fmt: str = "ultralytics",
           final: bool = False, storage: str | None = None, by: str | None = None) -> tuple[str, str]:
    """The winner's (or ``trial``'s, or the retrained winner's) training config as YAML text.

    The winner is the best feasible trial by metric ``by`` (default: the primary objective), see
    :class:`hpo.final.record.WinnerRule`. Written atomically to ``output`` when given. Returns the
    text and a phrase saying what it is and how it was chosen.
    """
    from hpo.final.export import FORMATS, pick_trial, render, render_final
    from hpo.paths import write_atomic
    from hpo.final.record import WinnerRule

    if fmt not in FORMATS:
        raise HpoError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})", field="--format")
    if final and trial is not None:
        raise HpoError("give either --trial or --final", field="--final")
    if by is not None and (trial is not None or final):
        raise HpoError("--by chooses the winner: give it without --trial (and --final exports the winner "
                       "`hpo retrain --by` chose)", field="--by")
    loaded = load(study, storage)
    if final:
        text, winner = render_final(loaded.study, loaded.settings, fmt)
        what = f"final model: trial {winner['trial']}, full-set value {winner['full_value']:.5f}"
    else:
        rule = None if trial is not None else WinnerRule.of(loaded.settings.spec, by)
        chosen = pick_trial(loaded.study, trial, spec=loaded.settings.spec, rule=rule)
        text = render(loaded.study, loaded.settings, chosen, fmt, rule)
        what = f"trial {chosen.number}, value{'s' if len(chosen.values) > 1 else ''} " + \
            ", ".join(f"{v:.5g}" for v in chosen.values) + (f"; chosen by {rule.describe()}" if rule else "")
    if output is not None and str(output) != "-":
        from hpo.paths import check_writable_dir

        check_writable_dir(Path(output).parent, "--output")
        write_atomic(Path(output), text)
    return text, what
