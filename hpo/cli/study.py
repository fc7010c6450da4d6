"""The search commands: ``launch``, ``worker``, ``status``."""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import zlib
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from hpo import api
from hpo.cli.console import make_console
from hpo.cli.final import print_final
from hpo.cli.options import (ArtifactsOpt, CurveSecondsOpt, GraceOpt, HeartbeatOpt, JsonOpt, KeepOpt, MaxFailuresOpt,
                             MaxInfeasibleOpt, MaxRetryOpt, PrunerName, RunsDirOpt, SamplerName, StorageOpt, TrainerOpt, choice)
from hpo.errors import HpoError
from hpo.search.retry import DEFAULT_MAX_RETRY
from hpo.search.worker import DEFAULT_KEEP, DEFAULT_MAX_CONSECUTIVE_FAILURES, DEFAULT_MAX_INFEASIBLE, WorkerOptions
from hpo.storage import DEFAULT_GRACE_PERIOD, DEFAULT_HEARTBEAT_INTERVAL


def launch(
    study: Annotated[str, typer.Option("--study", help="study name (looked up in ./studies/) or a study YAML path")],
    sampler: Annotated[Optional[SamplerName], typer.Option(help="default: the study file's")] = None,
    pruner: Annotated[Optional[PrunerName], typer.Option(help="default: the study file's")] = None,
    storage: StorageOpt = None,
    workers: Annotated[int, typer.Option(help="CPU worker processes (ignored on GPUs: one per GPU)", min=1)] = 1,
    trials: Annotated[Optional[int], typer.Option(help="study-wide budget of finished trials (default: the study file's)", min=1)] = None,
    epoch_budget: Annotated[Optional[int], typer.Option(
        help="study-wide budget of epochs trained, all trials together (the GPU-hour proxy; pruned trials "
             "leave room for more); the study ends at this or --trials, whichever comes first (default: the "
             "study file's epoch_budget, else none)", min=1, show_default=False)] = None,
    seed: Annotated[int, typer.Option(help="base seed; each worker derives its own")] = 0,
    device: Annotated[Optional[str], typer.Option(help="'cpu' to force CPU (default: every visible GPU, else CPU)")] = None,
    gpus: Annotated[Optional[str], typer.Option(help="comma-separated GPU indices, one worker each, e.g. 0,1,2,3")] = None,
    workers_per_gpu: Annotated[str, typer.Option(
        help="trainings per GPU: a number, or auto (each GPU's free memory / --gpu-mem-per-trial, capped by "
             "the cores: one training per 4 of them, or per `train.workers`)")] = "1",
    gpu_mem_per_trial: Annotated[Optional[float], typer.Option(
        help="GiB of GPU memory one training takes, for --workers-per-gpu auto [default: 18, lr_momentum's "
             "shape; measure yours]", show_default=False)] = None,
    mps: Annotated[str, typer.Option(
        help="CUDA MPS while trainings share a GPU: auto (on when --workers-per-gpu > 1 and "
             "nvidia-cuda-mps-control is on PATH), on, off; a daemon this launch starts, it stops")] = "auto",
    runs_dir: RunsDirOpt = Path("runs"),
    keep: KeepOpt = DEFAULT_KEEP,
    allow_spec_change: Annotated[bool, typer.Option(help="join a study whose stored spec differs, replacing it")] = False,
    allow_budget_cut: Annotated[bool, typer.Option(help="accept a --trials below the trials already finished")] = False,
    artifacts: ArtifactsOpt = None,
    studies_dir: Annotated[Path, typer.Option(help="where study names are looked up")] = Path("studies"),
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON summary at the end")] = False,
    heartbeat_interval: HeartbeatOpt = DEFAULT_HEARTBEAT_INTERVAL,
    grace_period: GraceOpt = DEFAULT_GRACE_PERIOD,
    max_retry: MaxRetryOpt = DEFAULT_MAX_RETRY,
    max_consecutive_failures: MaxFailuresOpt = DEFAULT_MAX_CONSECUTIVE_FAILURES,
    max_infeasible: MaxInfeasibleOpt = DEFAULT_MAX_INFEASIBLE,
    create_only: Annotated[bool, typer.Option(help="create or join the study, start no worker (for `hpo worker` elsewhere)")] = False,
    trainer: TrainerOpt = "yolo",
    curve_epoch_seconds: CurveSecondsOpt = 0.0,
) -> None:
    """Create or join a study and run local workers until it has its budget of trials.

    Run it again (or `hpo worker` on other machines) to add workers to the same study; a killed
    launch loses nothing: start it again and it carries on.
    """
    from hpo.storage import mask_url, resolve_url

    url = resolve_url(storage)
    options = WorkerOptions(seed=seed, runs_dir=runs_dir.resolve(), keep=keep, heartbeat_interval=heartbeat_interval,
                            grace_period=grace_period, max_retry=max_retry,
                            artifacts=api.artifact_dir(artifacts, url), trainer=trainer,
                            curve_epoch_seconds=curve_epoch_seconds,
                            max_consecutive_failures=max_consecutive_failures, max_infeasible=max_infeasible)
    console = make_console(stderr=True, quiet=as_json)
    gpu_list = [g.strip() for g in gpus.split(",") if g.strip()] if gpus else None
    summary = api.launch(study, storage=url, sampler=choice(sampler), pruner=choice(pruner), trials=trials,
                         epoch_budget=epoch_budget,
                         workers=workers, device=device, gpus=gpu_list, workers_per_gpu=workers_per_gpu,
                         gpu_mem_per_trial=gpu_mem_per_trial, mps=mps,
                         allow_spec_change=allow_spec_change, allow_budget_cut=allow_budget_cut,
                         studies_dir=studies_dir, create_only=create_only,
                         options=options, console=console)
    if create_only:
        return
    if as_json:
        hidden = ("worker_errors", "storage", "logs", "interrupted", "failed_workers")  # "gpu" stays: what ran where
        print(json.dumps({k: v for k, v in summary.items() if k not in hidden}, indent=2))
    else:
        t, best = summary["trials"], summary.get("best")
        epochs = (f", {summary['epochs_trained']}/{summary['epoch_budget']} epochs trained"
                  if summary["epoch_budget"] is not None else "")
        console.print(f"{t['finished']}/{summary['budget']} trials finished{epochs} ({t['complete']} complete, "
                      f"{t['pruned']} pruned, {t['failed']} failed"
                      + (f"; {t['infeasible']} refused untrained as infeasible, not counted" if t["infeasible"] else "")
                      + ")"
                      + (f"; best {best['value']:.5f} in trial {best['number']}: {best['params']}" if best else ""),
                      soft_wrap=True)
        where = f" --storage '{mask_url(url)}'" if storage else ""
        console.print(f"next: hpo export --study {summary['study']}{where}", soft_wrap=True)
    if summary["interrupted"]:
        raise typer.Exit(130)  # stopped by Ctrl-C/SIGTERM: the running trials went back to the study
    budget_met = summary["done"]
    if summary["failed_workers"] and not budget_met:
        raise HpoError(f"{summary['worker_errors']} worker(s) exited with an error; see {summary['logs']}")
    for dead in summary["failed_workers"]:  # the study is complete all the same: said, not an error
        typer.echo(f"warning: worker {dead['index']} exited with status {dead['returncode']}; see {dead['log']}",
                   err=True)
    if not budget_met:
        raise typer.Exit(1)


def worker(
    study: Annotated[str, typer.Option("--study", help="name of a study created by `hpo launch`")],
    storage: StorageOpt = None,
    seed: Annotated[int, typer.Option(help="base seed (combined with --worker-index)")] = 0,
    worker_index: Annotated[Optional[int], typer.Option(help="distinct per worker; default from host and pid")] = None,
    device: Annotated[Optional[str], typer.Option(help="'cpu' or a CUDA index such as 0 (default: 0 if CUDA, else cpu)")] = None,
    runs_dir: RunsDirOpt = Path("runs"),
    keep: KeepOpt = DEFAULT_KEEP,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log every trial")] = False,
    artifacts: ArtifactsOpt = None,
    heartbeat_interval: HeartbeatOpt = DEFAULT_HEARTBEAT_INTERVAL,
    grace_period: GraceOpt = DEFAULT_GRACE_PERIOD,
    max_retry: MaxRetryOpt = DEFAULT_MAX_RETRY,
    max_consecutive_failures: MaxFailuresOpt = DEFAULT_MAX_CONSECUTIVE_FAILURES,
    max_infeasible: MaxInfeasibleOpt = DEFAULT_MAX_INFEASIBLE,
    workers_per_machine: Annotated[int, typer.Option(help="trainings sharing this machine (sizes the data "
                                                     "loaders)", min=1)] = 1,
    trainer: TrainerOpt = "yolo",
    curve_epoch_seconds: CurveSecondsOpt = 0.0,
) -> None:
    """Run one worker on an existing study (on this or any other machine) until its budget is reached.

    The study's spec, sampler and pruner come from the storage: only the data and weights paths must
    exist on this machine. SIGTERM/SIGINT stop it after the current batch and re-queue the trial.
    """
    from hpo.offline import configure_offline
    from hpo.search.retry import RequeueTrial
    from hpo.search.samplers import create_sampler, worker_seed
    from hpo.search.worker import Worker, install_signal_handlers, load_worker_study
    from hpo.storage import DEFAULT_RETRY_SECONDS, resolve_url
    from hpo.study import load_settings

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    stop_event = threading.Event()
    install_signal_handlers(stop_event)
    configure_offline()
    url = resolve_url(storage)
    options = WorkerOptions(seed=seed, runs_dir=runs_dir.resolve(), keep=keep, heartbeat_interval=heartbeat_interval,
                            grace_period=grace_period, max_retry=max_retry,
                            artifacts=api.artifact_dir(artifacts, url), workers_per_machine=workers_per_machine,
                            trainer=trainer, curve_epoch_seconds=curve_epoch_seconds,
                            max_consecutive_failures=max_consecutive_failures, max_infeasible=max_infeasible)
    requeue = RequeueTrial(options.max_retry)
    api.check_writable(options.runs_dir, options.artifacts)
    # A worker started (by a scheduler) while its database restarts waits for it, as it would mid-run.
    rdb, _ = api.open_storage(url, create=True, heartbeat_interval=options.heartbeat_interval,
                              grace_period=options.grace_period, stale_trial_callback=requeue,
                              wait_seconds=DEFAULT_RETRY_SECONDS)
    settings = load_settings(rdb, study)
    if options.trainer == "yolo":
        settings.spec.check_files(f"study {study!r}")
    if worker_index is None:
        worker_index = zlib.crc32(f"{socket.gethostname()}:{os.getpid()}".encode()) % 100_000
    name = f"{socket.gethostname()}#{worker_index}"
    if device is None:
        import torch

        device = "0" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and "OMP_NUM_THREADS" in os.environ:
        import torch

        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    sampler = create_sampler(settings.sampler, settings.spec, worker_seed(options.seed, worker_index))
    the_study = load_worker_study(rdb, settings, sampler)
    runner: Any
    if options.trainer == "curve":
        from hpo.testing.curves import LearningCurveTrainer

        runner = LearningCurveTrainer(settings.spec, runs_dir=options.runs_dir,
                                      epoch_seconds=options.curve_epoch_seconds, stop_event=stop_event)
    else:
        from hpo.search.trial_runner import TrialRunner

        runner = TrialRunner(settings.spec, runs_dir=options.runs_dir, device=device, stop_event=stop_event,
                             artifact_dir=options.artifacts, workers_per_machine=options.workers_per_machine)
    summary = Worker(the_study, settings, runner, name=name, runs_dir=options.runs_dir, keep=options.keep,
                     stop_event=stop_event, requeue=requeue,
                     max_consecutive_failures=options.max_consecutive_failures,
                     max_infeasible=options.max_infeasible).run()
    logging.getLogger("hpo.worker").info("[%s] done: %s%s", name, summary.trials,
                                         " (stopped by signal)" if summary.stopped else "")


def status(
    study: Annotated[Optional[str], typer.Option("--study", help="show one study's trials")] = None,
    storage: StorageOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Studies and trials at a glance."""
    names = [study] if study else api.study_names(storage)
    summaries = []
    for name in names:
        loaded = api.load(name, storage)
        summary = loaded.summary()
        if study:
            summary["trial_table"] = api.trial_rows(loaded.study)
        summaries.append(summary)
    if as_json:
        print(json.dumps(summaries[0] if study else summaries, indent=2, default=str))
        return
    console = make_console()
    if not summaries:
        console.print("no studies in this storage (start one with `hpo launch --study NAME`)")
        return
    overview = Table(title="studies")
    for col in ("study", "sampler", "pruner", "finished/budget", "complete", "pruned", "infeasible", "failed",
                "running", "best"):
        overview.add_column(col)
    for s in summaries:
        t = s["trials"]
        best = s["best"]
        epochs = f" ({s['epochs_trained']}/{s['epoch_budget']} ep)" if s["epoch_budget"] is not None else ""
        overview.add_row(s["study"], s["sampler"], s["pruner"], f"{t['finished']}/{s['budget']}{epochs}",
                         str(t["complete"]), str(t["pruned"]), str(t["infeasible"]), str(t["failed"]), str(t["running"]),
                         (f"front of {len(s['front'])}" if s.get("front") is not None else
                          f"{best['value']:.5f} (#{best['number']})") if best else "-")
    console.print(overview)
    for s in summaries:
        for line in s["stopped_workers"]:
            console.print(f"[yellow]warning:[/] study {s['study']}: {line}")
        if s["retries_exhausted"]:
            numbers = ", ".join(str(n) for n in s["retries_exhausted"])
            console.print(f"[yellow]warning:[/] study {s['study']}: trial(s) {numbers} lost their worker once too "
                          "often and were not re-queued (retries exhausted): their hyps never finished training")
    if study:
        summary = summaries[0]
        multi = summary.get("front") is not None
        values_col = "values (" + ", ".join(o["metric"] for o in summary["objectives"]) + ")" if multi else "value"
        constrained = bool(summary.get("constraints"))
        trials = Table(title=f"trials of {study}")
        for col in ("#", "state", values_col, "epochs", "params", *(["feasible"] if constrained else []), "note"):
            trials.add_column(col)
        for r in summary["trial_table"]:
            params = ", ".join(f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}" for k, v in r["params"].items())
            shown = "-" if r["value"] is None else (", ".join(f"{v:.5g}" for v in r["values"]) if multi
                                                    else f"{r['value']:.5f}")
            feasible = {True: "yes", False: "[red]INFEASIBLE[/]", None: "-"}[r.get("feasible")]
            note = "; ".join(filter(None, [*r.get("violations", []), r["reason"] or ""]))
            trials.add_row(str(r["number"]), r["state"], shown, str(r["epochs"] or r["last_step"] or "-"), params,
                           *([feasible] if constrained else []), note)
        console.print(trials)
        if multi:
            print_front(console, summary)
        if summary.get("vs_base"):
            console.print(gain_line(summary["vs_base"]))
            if "gain_in_noise" not in summary["vs_base"]:
                console.print(f"is that gain real or seed luck? measure the noise once: hpo noise --study {study} "
                              "(and add the noise: block it prints to the study file)", soft_wrap=True)
        if summary.get("final"):
            print_final(console, summaries[0]["final"])
        for line in summaries[0].get("warnings", []):
            console.print(f"[yellow]warning:[/] {line}")


def gain_line(vs: dict[str, Any]) -> str:
    """One line: the best trial against the base hyps, and that gain against the measured noise."""
    best, base = vs["best"], vs["base"]
    line = (f"best {best['value']:.4f} (#{best['number']}) vs base hyps {base['value']:.4f} (#{base['number']}): "
            f"{vs['gain']:+.4f}")
    if "gain_in_noise" in vs:
        ratio = vs["gain_in_noise"]
        verdict = ("well above the noise" if ratio >= 3 else "above the noise" if ratio >= 2 else
                   "within the noise: could be seed luck")
        line += (f" = {ratio:.1f}x the base hyps' seed-to-seed std {vs['noise_std']:.4f} ({verdict}; "
                 f"noise measured: {vs['noise_source'] or 'the study file'})")
    return line


def print_front(console: Console, summary: dict[str, Any]) -> None:
    """The Pareto front of a multi-objective study: the trials no other (feasible) trial dominates."""
    objectives = summary["objectives"]
    front = Table(title=f"Pareto front ({len(summary['front'])} trial(s); "
                        + ", ".join(f"{o['metric']} {o['direction'][:3]}" for o in objectives) + ")")
    for col in ("#", *(o["metric"] for o in objectives), "params"):
        front.add_column(col)
    for t in summary["front"]:
        params = ", ".join(f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}" for k, v in t["params"].items())
        front.add_row(str(t["number"]), *(f"{v:.5g}" for v in t["values"]), params)
    console.print(front)
    if summary["front"]:
        console.print(f"pick one: hpo export --study {summary['study']} --trial N; "
                      f"retrain them all: hpo retrain --study {summary['study']} --front")
