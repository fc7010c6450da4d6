"""Trials that train nothing, run through hpo's worker loop or bare Optuna, in worker processes.

A trial is a deterministic learning curve over the livestock seed's search space (lr0, lrf, momentum):
it reports ``steps`` values, asks the pruner after each, and optionally sleeps ``seconds`` in total
(spread over the steps) to stand for training time. Both arms use the same objective, the same
sampler (hpo's ``create_sampler`` with the same per-worker seeds), the same pruner (hpo's
``create_pruner``) and the same database, configured alike (WAL SQLite with a 120 s lock timeout /
pooled PostgreSQL with pre-ping, heartbeats every 30 s, grace period 120 s); only the loop and the
storage class differ:

- ``hpo``: the storage is ``hpo.storage.open_storage`` (hpo's retrying RDB storage, stale trials
  re-queued), the study is created with :func:`hpo.study.create_or_join` and every worker runs
  :class:`hpo.search.worker.Worker` exactly as ``hpo worker`` builds it (keep policy on a runs folder,
  study-wide budget, surplus check, heartbeats).
- ``optuna``: the storage is Optuna's own ``RDBStorage`` with the same engine settings and
  heartbeat, the study is created with ``optuna.create_study`` (plus the same enqueued base trial, if
  the spec has base hyps: the synthetic spec has none) and every worker runs ``study.optimize`` with
  ``MaxTrialsCallback(budget, states=(COMPLETE, PRUNED))``.

Per-trial log lines are off in both (Optuna's INFO logging, hpo's ``--verbose``).
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]


def seed_space() -> dict[str, Any]:
    """The livestock seed's search space (lr0, lrf, momentum), read from studies/lr_momentum.yaml."""
    import yaml

    return yaml.safe_load((REPO / "studies" / "lr_momentum.yaml").read_text())["search_space"]


@dataclass(frozen=True)
class Load:
    """What one synthetic trial does."""

    steps: int = 10
    seconds: float = 0.0  # total sleep per trial (training time stand-in), spread over the steps


def synthetic_spec_dict(name: str, *, steps: int, trials: int, sampler: str, pruner: str) -> dict[str, Any]:
    """The seed's search space and base, with ``steps`` epochs (the pruners' max resource)."""
    return {
        "name": name,
        "description": "benchmark: synthetic learning curves, nothing is trained",
        "model": "yolov5n-p6.yaml",
        "data": "unused-by-synthetic-trials.yaml",
        "train": {"epochs": steps, "optimizer": "SGD"},
        "objective": {"metric": "fitness", "direction": "maximize"},
        "search_space": seed_space(),
        # No base trial: an enqueued (WAITING) trial can be popped by two workers at once on SQLite
        # (Optuna's WAITING -> RUNNING is not atomic there), which kills a worker of either arm.
        "sampler": sampler,
        "pruner": pruner,
        "trials": trials,
    }


def make_objective(spec: Any, load: Load) -> Callable[[Any], float]:
    import optuna

    from hpo.search.trial_runner import suggest_params
    from hpo.testing.curves import curve_value

    pause = load.seconds / load.steps if load.seconds else 0.0

    def objective(trial: optuna.Trial) -> float:
        params = suggest_params(trial, spec)
        value = 0.0
        for step in range(1, load.steps + 1):
            if pause:
                time.sleep(pause)
            value = curve_value(spec, params, step)
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at step {step}")
        return value

    return objective


# --- study creation (parent) and workers (children) ----------------------------------------------

def open_arm_storage(arm: str, url: str) -> Any:
    """hpo's storage for hpo, Optuna's own RDBStorage (same engine settings, heartbeat) for Optuna."""
    import warnings

    import optuna

    from hpo.storage import DEFAULT_GRACE_PERIOD, DEFAULT_HEARTBEAT_INTERVAL, engine_kwargs_for, open_storage

    if arm == "hpo":
        return open_storage(url)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs_for(url),
                                          heartbeat_interval=DEFAULT_HEARTBEAT_INTERVAL,
                                          grace_period=DEFAULT_GRACE_PERIOD)


def create_study(arm: str, url: str, spec_dict: dict[str, Any], budget: int) -> None:
    import optuna

    from hpo.spec import parse_spec
    from hpo.study import create_or_join

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = parse_spec(spec_dict)
    storage = open_arm_storage(arm, url)
    try:
        if arm == "hpo":
            create_or_join(storage, spec, budget=budget)
        else:
            study = optuna.create_study(study_name=spec.name, storage=storage,
                                        direction=spec.objective.direction)
            if spec.base_params():
                study.enqueue_trial(spec.base_params())
    finally:
        storage.engine.dispose()


def _worker_main(arm: str, url: str, spec_dict: dict[str, Any], budget: int, index: int, seed: int,
                 load: dict[str, Any], runs_dir: str, go: Any, out: Any) -> None:
    """One worker process: open, load, report ready, wait for ``go``, run, report."""
    try:
        import optuna

        from hpo.search.samplers import create_sampler, worker_seed
        from hpo.spec import parse_spec
        from hpo.search.pruners import create_pruner
        from hpo.study import load_settings

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = open_arm_storage(arm, url)
        objective_spec = parse_spec(spec_dict)
        objective = make_objective(objective_spec, Load(**load))
        if arm == "hpo":
            from hpo.search.worker import DEFAULT_KEEP, Worker, load_worker_study

            settings = load_settings(storage, objective_spec.name)
            sampler = create_sampler(settings.sampler, settings.spec, worker_seed(seed, index))
            study = load_worker_study(storage, settings, sampler)
            runner: Callable[[], Any] = Worker(study, settings, objective, name=f"bench#{index}",
                                              runs_dir=Path(runs_dir), keep=DEFAULT_KEEP).run
        else:
            from optuna.study import MaxTrialsCallback
            from optuna.trial import TrialState

            spec = objective_spec
            sampler = create_sampler(spec.sampler, spec, worker_seed(seed, index))
            study = optuna.load_study(study_name=spec.name, storage=storage, sampler=sampler,
                                      pruner=create_pruner(spec.pruner, spec))
            stop = MaxTrialsCallback(budget, states=(TrialState.COMPLETE, TrialState.PRUNED))

            def runner() -> None:
                study.optimize(objective, n_trials=budget, callbacks=[stop], gc_after_trial=False)

        out.put(("ready", index, time.time()))
        go.wait()
        runner()
        out.put(("done", index, time.time()))
    except BaseException as exc:  # noqa: BLE001 - the parent reports it
        import traceback

        out.put(("error", index, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()[-2000:]}"))


def measure(arm: str, url: str, spec_dict: dict[str, Any], *, budget: int, workers: int, seed: int,
            load: Load, runs_dir: Path, timeout: float = 900.0) -> dict[str, Any]:
    """Run ``workers`` processes of ``arm`` on a fresh study at ``url``; times of the run.

    ``makespan`` runs from the moment every worker is ready (imports done, storage open, study
    loaded) and told to go, to the last trial's completion time as the storage recorded it; the
    start-up (spawn to ready) is reported separately.
    """
    import optuna
    from optuna.trial import TrialState

    from hpo.attrs import SURPLUS

    create_study(arm, url, spec_dict, budget)
    ctx = mp.get_context("spawn")
    go = ctx.Event()
    out = ctx.Queue()
    procs = []
    spawned = time.time()
    for i in range(workers):
        p = ctx.Process(target=_worker_main, daemon=True,
                        args=(arm, url, spec_dict, budget, i, seed, asdict(load), str(runs_dir), go, out))
        p.start()
        procs.append(p)
    ready: dict[int, float] = {}
    done: dict[int, float] = {}
    errors: list[str] = []
    deadline = time.time() + timeout

    def collect(until: Callable[[], bool]) -> None:
        while not until() and time.time() < deadline and not errors:
            try:
                kind, index, payload = out.get(timeout=0.5)
            except queue.Empty:
                if not any(p.is_alive() for p in procs):
                    break
                continue
            if kind == "ready":
                ready[index] = payload
            elif kind == "done":
                done[index] = payload
            else:
                errors.append(f"worker {index}: {payload}")

    collect(lambda: len(ready) == workers)
    t_go = time.time()
    go.set()
    collect(lambda: len(done) == workers)
    t_exit = time.time()
    for p in procs:
        p.join(timeout=10)
        if p.is_alive():
            p.kill()
            p.join()
    if errors or len(done) != workers:
        raise RuntimeError(errors[0] if errors else f"{workers - len(done)} worker(s) did not finish in time")

    storage = open_arm_storage("optuna", url)
    try:
        trials = optuna.load_study(study_name=spec_dict["name"], storage=storage).get_trials(deepcopy=False)
    finally:
        storage.engine.dispose()
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    done_at = sorted(t.datetime_complete.timestamp() for t in finished)  # type: ignore[union-attr]
    if len(done_at) < budget:
        raise RuntimeError(f"only {len(done_at)} of {budget} trials finished")
    makespan = done_at[budget - 1] - t_go  # until the study has its budget (extra trials not counted)
    startups = sorted(ready[i] - spawned for i in ready)
    return {
        "finished": len(finished),
        "pruned": sum(t.state == TrialState.PRUNED for t in trials),
        # A worker that loses the race for the last budget slot records a FAIL marked surplus and
        # trains nothing (hpo's design, see hpo.search.worker): counted apart from real failures.
        "failed": sum(t.state == TrialState.FAIL and not t.user_attrs.get(SURPLUS) for t in trials),
        "surplus": sum(t.state == TrialState.FAIL and bool(t.user_attrs.get(SURPLUS)) for t in trials),
        "makespan_s": makespan,
        "seconds_per_trial": makespan / budget,
        "throughput_per_s": budget / makespan,
        "exit_s": t_exit - t_go,
        "startup_median_s": startups[len(startups) // 2],
        "startup_all_ready_s": startups[-1],
    }
