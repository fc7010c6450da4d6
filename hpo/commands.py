"""Study subcommands: ``launch``, ``worker``, ``status``, ``export``."""

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

from hpo.cli import app
from hpo.errors import HpoError
from hpo.retry import DEFAULT_MAX_RETRY
from hpo.storage import DEFAULT_GRACE_PERIOD, DEFAULT_HEARTBEAT_INTERVAL

StorageOpt = Annotated[Optional[str], typer.Option(
    "--storage", help="SQLAlchemy URL (postgresql+psycopg://... across machines) or an SQLite path; "
    "default $HPO_STORAGE, else storage/hpo.db", show_default=False)]
RunsDirOpt = Annotated[Path, typer.Option("--runs-dir", help="root of the trial directories")]
# Crash safety, shared by `launch` (passed on to its workers) and `worker`.
HeartbeatOpt = Annotated[int, typer.Option(help="seconds between heartbeats of a running trial", min=1)]
GraceOpt = Annotated[int, typer.Option(
    help="seconds without heartbeat before a trial counts as dead and is retried", min=1)]
MaxRetryOpt = Annotated[int, typer.Option(help="retries of a trial whose worker died or was stopped", min=0)]
KeepOpt = Annotated[int, typer.Option("--keep", help="top trials that keep their weights (0: keep all)")]
ArtifactsOpt = Annotated[Optional[str], typer.Option(
    "--artifacts", help="artifact folder the dashboard serves (default $HPO_ARTIFACTS, else artifacts/ next to "
    "an SQLite storage, else storage/artifacts; 'off' disables uploads)", show_default=False)]


def _open(storage: str | None) -> tuple[Any, str]:
    from hpo.storage import open_storage, resolve_url

    url = resolve_url(storage)
    return open_storage(url), url


def _activate_artifacts(explicit: str | None, storage: str | None) -> Any:
    """Resolve the artifact folder once and hand it to this process and its workers (environment)."""
    from hpo.artifacts import activate, resolve_dir
    from hpo.storage import resolve_url

    path = resolve_dir(explicit, resolve_url(storage))
    activate(path)
    return path


def _check_data(spec: Any, source: str) -> None:
    """Files first, then the dataset itself, before any worker trains."""
    spec.check_files(source)
    from hpo.data.check import check_dataset

    check_dataset(spec.resolved_data())


@app.command()
def launch(
    study: Annotated[str, typer.Option("--study", help="study name (looked up in ./studies/) or a study YAML path")],
    sampler: Annotated[Optional[str], typer.Option(help="ga | tpe | cmaes | nsga2 | gp | random (default: the study file's)")] = None,
    pruner: Annotated[Optional[str], typer.Option(help="hyperband | median | sha | none (default: the study file's)")] = None,
    storage: StorageOpt = None,
    workers: Annotated[int, typer.Option(help="CPU worker processes (ignored on GPUs: one per GPU)", min=1)] = 1,
    trials: Annotated[Optional[int], typer.Option(help="study-wide budget of finished trials (default: the study file's)", min=1)] = None,
    seed: Annotated[int, typer.Option(help="base seed; each worker derives its own")] = 0,
    device: Annotated[Optional[str], typer.Option(help="'cpu' to force CPU (default: every visible GPU, else CPU)")] = None,
    gpus: Annotated[Optional[str], typer.Option(help="comma-separated GPU indices, one worker each, e.g. 0,1,2,3")] = None,
    workers_per_gpu: Annotated[int, typer.Option(min=1)] = 1,
    runs_dir: RunsDirOpt = Path("runs"),
    keep: KeepOpt = 3,
    allow_spec_change: Annotated[bool, typer.Option(help="join a study whose stored spec differs, replacing it")] = False,
    artifacts: ArtifactsOpt = None,
    studies_dir: Annotated[Path, typer.Option(help="where study names are looked up")] = Path("studies"),
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON summary at the end")] = False,
    heartbeat_interval: HeartbeatOpt = DEFAULT_HEARTBEAT_INTERVAL,
    grace_period: GraceOpt = DEFAULT_GRACE_PERIOD,
    max_retry: MaxRetryOpt = DEFAULT_MAX_RETRY,
    create_only: Annotated[bool, typer.Option(help="create or join the study, start no worker (for `hpo worker` elsewhere)")] = False,
    trainer: Annotated[str, typer.Option(hidden=True)] = "yolo",
    curve_epoch_seconds: Annotated[float, typer.Option(hidden=True)] = 0.0,
) -> None:
    """Create or join a study and run local workers until it has its budget of trials.

    Run it again (or `hpo worker` on other machines) to add workers to the same study; a killed
    launch loses nothing: start it again and it carries on.
    """
    import optuna

    from hpo.launch import Launcher, plan_workers
    from hpo.offline import configure_offline
    from hpo.spec import find_spec_file, load_spec
    from hpo.storage import mask_url
    from hpo.study import create_or_join, progress

    spec_path = find_spec_file(study, studies_dir)
    spec = load_spec(spec_path)
    if trainer == "yolo":
        _check_data(spec, str(spec_path))
    configure_offline()
    rdb, url = _open(storage)
    _activate_artifacts(artifacts, url)
    settings = create_or_join(rdb, spec, sampler=sampler, pruner=pruner, budget=trials,
                              allow_spec_change=allow_spec_change)
    if create_only:
        Console(stderr=True, quiet=as_json).print(
            f"study [bold]{spec.name}[/] ready on {mask_url(url)}: sampler {settings.sampler}, pruner "
            f"{settings.pruner}, budget {settings.budget}; start workers with `hpo worker --study {spec.name}`")
        return
    gpu_list = [g.strip() for g in gpus.split(",") if g.strip()] if gpus else None
    plans = plan_workers(workers=workers, gpus=gpu_list, device=device, workers_per_gpu=workers_per_gpu)
    console = Console(stderr=True, quiet=as_json)
    console.print(f"study [bold]{spec.name}[/] on {mask_url(url)}: sampler {settings.sampler}, pruner "
                  f"{settings.pruner}, budget {settings.budget}, {len(plans)} worker(s) on "
                  f"{'CPU' if plans[0].device == 'cpu' else 'GPU'}")
    if spec.base_import is not None:  # YOLOv5 keys without an Ultralytics meaning: said, not dropped silently
        for line in spec.base_import.warning_lines():
            console.print(f"[yellow]warning:[/] {line}")
    the_study = optuna.load_study(study_name=spec.name, storage=rdb)
    launcher = Launcher(study=the_study, settings=settings, storage_url=url, plans=plans, seed=seed,
                        runs_dir=runs_dir.resolve(), keep=keep, console=console,
                        worker_args=["--heartbeat-interval", str(heartbeat_interval), "--grace-period",
                                     str(grace_period), "--max-retry", str(max_retry), "--trainer", trainer,
                                     "--curve-epoch-seconds", str(curve_epoch_seconds)])
    launcher.start()
    errors = launcher.wait()
    state = progress(the_study)
    summary = _study_summary(the_study, settings)
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        best = summary.get("best")
        console.print(f"{state.finished}/{settings.budget} trials finished ({state.complete} complete, "
                      f"{state.pruned} pruned, {state.failed} failed)"
                      + (f"; best {best['value']:.5f} in trial {best['number']}: {best['params']}" if best else ""))
        console.print(f"next: hpo export --study {spec.name}" + (f" --storage '{mask_url(url)}'" if storage else ""))
    if errors:
        raise HpoError(f"{errors} worker(s) exited with an error; see {launcher.log_dir()}")
    if state.finished < settings.budget:
        raise typer.Exit(1)


@app.command()
def worker(
    study: Annotated[str, typer.Option("--study", help="name of a study created by `hpo launch`")],
    storage: StorageOpt = None,
    seed: Annotated[int, typer.Option(help="base seed (combined with --worker-index)")] = 0,
    worker_index: Annotated[Optional[int], typer.Option(help="distinct per worker; default from host and pid")] = None,
    device: Annotated[Optional[str], typer.Option(help="'cpu' or a CUDA index such as 0 (default: 0 if CUDA, else cpu)")] = None,
    runs_dir: RunsDirOpt = Path("runs"),
    keep: KeepOpt = 3,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log every trial")] = False,
    artifacts: ArtifactsOpt = None,
    heartbeat_interval: HeartbeatOpt = DEFAULT_HEARTBEAT_INTERVAL,
    grace_period: GraceOpt = DEFAULT_GRACE_PERIOD,
    max_retry: MaxRetryOpt = DEFAULT_MAX_RETRY,
    trainer: Annotated[str, typer.Option(hidden=True, help="yolo | curve (a learning-curve stand-in for tests)")] = "yolo",
    curve_epoch_seconds: Annotated[float, typer.Option(hidden=True)] = 0.0,
) -> None:
    """Run one worker on an existing study (on this or any other machine) until its budget is reached.

    The study's spec, sampler and pruner come from the storage: only the data and weights paths must
    exist on this machine. SIGTERM/SIGINT stop it after the current batch and re-queue the trial.
    """
    from hpo.offline import configure_offline
    from hpo.samplers import create_sampler, worker_seed
    from hpo.study import load_settings
    from hpo.trial_runner import TrialRunner
    from hpo.worker import Worker, install_signal_handlers, load_worker_study

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    stop_event = threading.Event()
    install_signal_handlers(stop_event)
    configure_offline()
    _activate_artifacts(artifacts, storage)
    from hpo.retry import RequeueTrial
    from hpo.storage import open_storage

    requeue = RequeueTrial(max_retry)
    rdb = open_storage(storage, heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                       stale_trial_callback=requeue)
    settings = load_settings(rdb, study)
    if trainer == "yolo":
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
    sampler = create_sampler(settings.sampler, settings.spec, worker_seed(seed, worker_index))
    the_study = load_worker_study(rdb, settings, sampler)
    if trainer == "curve":
        from hpo.curve_trainer import LearningCurveTrainer

        runner: Any = LearningCurveTrainer(settings.spec, runs_dir=runs_dir, epoch_seconds=curve_epoch_seconds,
                                           stop_event=stop_event)
    else:
        runner = TrialRunner(settings.spec, runs_dir=runs_dir, device=device, stop_event=stop_event)
    summary = Worker(the_study, settings, runner, name=name, runs_dir=runs_dir.resolve(), keep=keep,
                     stop_event=stop_event, requeue=requeue).run()
    logging.getLogger("hpo.worker").info("[%s] done: %s%s", name, summary.trials,
                                         " (stopped by signal)" if summary.stopped else "")


def _study_summary(study: Any, settings: Any) -> dict[str, Any]:
    from hpo.study import best_trial, progress

    state = progress(study)
    best = best_trial(study)
    return {
        "study": study.study_name,
        "sampler": settings.sampler,
        "pruner": settings.pruner,
        "objective": settings.spec.objective.model_dump(),
        "budget": settings.budget,
        "warnings": settings.spec.base_import.warning_lines() if settings.spec.base_import else [],
        "final": study.user_attrs.get("hpo:final"),
        "trials": {"finished": state.finished, "complete": state.complete, "pruned": state.pruned,
                   "failed": state.failed, "running": state.running, "waiting": state.waiting},
        "best": None if best is None else {
            "number": best.number, "value": best.value, "params": best.params,
            "metrics": {k: best.user_attrs.get(k) for k in ("precision", "recall", "map50", "map75",
                                                             "map50-95", "fitness")},
        },
    }


def _trial_rows(study: Any) -> list[dict[str, Any]]:
    rows = []
    for t in study.get_trials(deepcopy=False):
        rows.append({
            "number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
            "epochs": t.user_attrs.get("epochs"), "last_step": t.last_step,
            "train_seconds": t.user_attrs.get("train_seconds"),
            "reason": t.user_attrs.get("fail_reason") or t.user_attrs.get("pruned_reason"),
            "worker": t.user_attrs.get("hpo:worker"),
        })
    return rows


@app.command()
def status(
    study: Annotated[Optional[str], typer.Option("--study", help="show one study's trials")] = None,
    storage: StorageOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Studies and trials at a glance."""
    import optuna

    from hpo.study import load_settings, study_names

    rdb, _ = _open(storage)
    names = [study] if study else study_names(rdb)
    summaries = []
    for name in names:
        settings = load_settings(rdb, name)
        the_study = optuna.load_study(study_name=name, storage=rdb)
        summary = _study_summary(the_study, settings)
        if study:
            summary["trial_table"] = _trial_rows(the_study)
        summaries.append(summary)
    if as_json:
        print(json.dumps(summaries[0] if study else summaries, indent=2, default=str))
        return
    console = Console()
    if not summaries:
        console.print("no studies in this storage (start one with `hpo launch --study NAME`)")
        return
    overview = Table(title="studies")
    for col in ("study", "sampler", "pruner", "finished/budget", "complete", "pruned", "failed", "running", "best"):
        overview.add_column(col)
    for s in summaries:
        t = s["trials"]
        best = s["best"]
        overview.add_row(s["study"], s["sampler"], s["pruner"], f"{t['finished']}/{s['budget']}",
                         str(t["complete"]), str(t["pruned"]), str(t["failed"]), str(t["running"]),
                         f"{best['value']:.5f} (#{best['number']})" if best else "-")
    console.print(overview)
    if study:
        trials = Table(title=f"trials of {study}")
        for col in ("#", "state", "value", "epochs", "params", "note"):
            trials.add_column(col)
        for r in summaries[0]["trial_table"]:
            params = ", ".join(f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}" for k, v in r["params"].items())
            trials.add_row(str(r["number"]), r["state"], "-" if r["value"] is None else f"{r['value']:.5f}",
                           str(r["epochs"] or r["last_step"] or "-"), params, r["reason"] or "")
        console.print(trials)
        if summaries[0].get("final"):
            from hpo.final_commands import print_final

            print_final(console, summaries[0]["final"])
        for line in summaries[0].get("warnings", []):
            console.print(f"[yellow]warning:[/] {line}")


@app.command()
def export(
    study: Annotated[str, typer.Option("--study", help="study name in the storage")],
    output: Annotated[Path, typer.Option("-o", "--output", help="file to write ('-' for stdout)")] = Path("hyp.yaml"),
    trial: Annotated[Optional[int], typer.Option("--trial", help="export this trial instead of the best")] = None,
    fmt: Annotated[str, typer.Option("--format", help="ultralytics: a config for `yolo train cfg=FILE`; "
                                     "yolov5: a YOLOv5 hyp.yaml for `train.py --hyp FILE`")] = "ultralytics",
    final: Annotated[bool, typer.Option("--final", help="export the winner of `hpo retrain` (full-set settings)")] = False,
    storage: StorageOpt = None,
) -> None:
    """Write the best trial's full training config as a YAML that `yolo train cfg=FILE` accepts."""
    import optuna

    from hpo.export import FORMATS, pick_trial, render, render_final, write_atomic
    from hpo.study import load_settings

    if fmt not in FORMATS:
        raise HpoError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})", field="--format")
    if final and trial is not None:
        raise HpoError("give either --trial or --final", field="--final")
    rdb, _ = _open(storage)
    settings = load_settings(rdb, study)
    the_study = optuna.load_study(study_name=study, storage=rdb)
    if final:
        text, winner = render_final(the_study, settings, fmt)
        what = f"final model: trial {winner['trial']}, full-set value {winner['full_value']:.5f}"
    else:
        chosen = pick_trial(the_study, trial)
        text = render(the_study, settings, chosen, fmt)
        what = f"trial {chosen.number}, value {chosen.value:.5f}"
    if str(output) == "-":
        sys.stdout.write(text)
        return
    write_atomic(output, text)
    use = f"python train.py --hyp {output} (YOLOv5)" if fmt == "yolov5" else f"yolo train cfg={output}"
    Console(stderr=True).print(f"wrote {output} ({what}); train with: {use}")
