"""1. Orchestration overhead: hpo's worker loop vs bare ``study.optimize`` on trials that train nothing."""

from __future__ import annotations

from typing import Any

from bench.common import fmt_stat, ratios, say, stat
from bench.context import Context, Section, begin, end
from bench.synthetic import Load, measure, synthetic_spec_dict
from hpo.search.worker import IDLE_POLL_SECONDS

NAME = "overhead"
TITLE = "1. Orchestration overhead (no training)"
TARGET = 1.15
SAMPLER, PRUNER = "random", "hyperband"


def settings(ctx: Context) -> dict[str, Any]:
    if ctx.quick:
        return {"workers": [1, 2], "trials": {1: 20, 2: 20}, "steps": 5, "repeats": ctx.reps(3, 1)}
    return {"workers": [1, 8], "trials": {1: 100, 8: 200}, "steps": 10, "repeats": ctx.reps(3)}


def run(ctx: Context) -> Section:
    sec, t0 = begin(NAME, TITLE)
    cfg = settings(ctx)
    load = Load(steps=cfg["steps"], seconds=0.0)
    runs_dir = ctx.workdir / "overhead" / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    sec.setup = [
        f"Trial = a deterministic learning curve over the demo study's space (lr0, lrf, momentum): "
        f"{cfg['steps']} steps, each `trial.report()` + `trial.should_prune()`, no sleep, no training.",
        f"Sampler `{SAMPLER}` (hpo's `create_sampler`, per-worker seeds from `worker_seed`), pruner "
        f"`{PRUNER}` (hpo's `create_pruner`, max_resource = {cfg['steps']}). The cheapest sampler, so that "
        "the loop is measured, not TPE's model fitting. No base trial is enqueued (see the notes).",
        "Same database for both arms, configured alike (WAL SQLite with a 120 s lock timeout / pooled "
        "PostgreSQL with pre-ping; heartbeats every 30 s, grace period 120 s), a fresh database per run. "
        "**hpo**: `hpo.storage.open_storage` (hpo's retrying RDB storage, stale trials re-queued) + "
        "`create_or_join` + `hpo.search.worker.Worker` as `hpo worker` builds it (keep policy on a runs folder, "
        "study-wide budget, surplus check). **bare Optuna**: Optuna's own `RDBStorage` with the same "
        "engine settings and heartbeat + `optuna.create_study` + `study.optimize(n_trials=budget, "
        "callbacks=[MaxTrialsCallback(budget, (COMPLETE, PRUNED))])`. The ratio therefore includes "
        "hpo's storage wrapper as well as its loop.",
        "Workers are processes (multiprocessing, spawn). A run's clock starts when every worker has "
        "imported, opened the storage, loaded the study and waits for the go signal; it stops when the "
        "study has its budget of finished trials (completion times as recorded in the storage). "
        "Seconds per trial = that time / budget (with several workers bare Optuna's callback lets a "
        "few extra trials run; they are not counted). Start-up (spawn to ready) is reported on its own.",
        f"Per-trial log lines off in both arms. {cfg['repeats']} repeat(s); in each repeat the two arms "
        "run back to back, alternating which goes first; the ratio is taken per repeat.",
    ]
    kinds = ctx.storages
    results: dict[str, dict[str, list[dict[str, Any] | None]]] = {}
    for rep in range(cfg["repeats"]):
        for kind in kinds:
            for workers in cfg["workers"]:
                key = f"{kind}/{workers}"
                results.setdefault(key, {"optuna": [], "hpo": []})
                arms = ("optuna", "hpo") if rep % 2 == 0 else ("hpo", "optuna")
                for arm in arms:
                    budget = cfg["trials"][workers]
                    spec = synthetic_spec_dict(f"overhead-{arm}", steps=cfg["steps"], trials=budget,
                                               sampler=SAMPLER, pruner=PRUNER)
                    url = ctx.factory.new(kind, f"ov_{arm}")
                    try:
                        r = measure(arm, url, spec, budget=budget, workers=workers, seed=rep,
                                    load=load, runs_dir=runs_dir)
                        say(f"overhead {kind} {workers}w rep {rep + 1} {arm}: "
                            f"{r['seconds_per_trial'] * 1000:.1f} ms/trial ({r['finished']} trials, "
                            f"start-up {r['startup_all_ready_s']:.1f} s)")
                    except Exception as exc:  # noqa: BLE001 - recorded, the suite goes on
                        say(f"overhead {kind} {workers}w {arm} failed: {exc}")
                        sec.notes.append(f"{kind}, {workers} worker(s), {arm}, repeat {rep + 1} failed: "
                                         f"{str(exc).splitlines()[0][:300]}")
                        r = None
                    finally:
                        ctx.factory.drop(url)
                    results[key][arm].append(r)

    rows = []
    for kind in kinds:
        for workers in cfg["workers"]:
            key = f"{kind}/{workers}"
            base = [r["seconds_per_trial"] if r else None for r in results[key]["optuna"]]
            ours = [r["seconds_per_trial"] if r else None for r in results[key]["hpo"]]
            ratio = stat(ratios(ours, base))
            b_ms = stat([v * 1000 if v else None for v in base])
            h_ms = stat([v * 1000 if v else None for v in ours])
            start_b = stat([r["startup_all_ready_s"] if r else None for r in results[key]["optuna"]])
            start_h = stat([r["startup_all_ready_s"] if r else None for r in results[key]["hpo"]])
            finished = [r["finished"] for r in results[key]["hpo"] if r]
            pruned = [r["pruned"] for r in results[key]["hpo"] if r]
            label = "PostgreSQL" if kind == "postgresql" else "SQLite"
            extra = stat([h - b if h is not None and b is not None else None
                          for h, b in zip(h_ms["values"] if h_ms["n"] == len(ours) else [],
                                          b_ms["values"] if b_ms["n"] == len(base) else [])])
            rows.append([label, workers, f"{cfg['trials'][workers]} × {cfg['steps']}", fmt_stat(b_ms, 1),
                         fmt_stat(h_ms, 1), f"**{fmt_stat(ratio, 3)}**", fmt_stat(extra, 1), fmt_stat(start_b, 1),
                         fmt_stat(start_h, 1),
                         f"{pruned[0]}/{finished[0]}" if finished else "-"])
            met = None if ratio["median"] is None or ctx.quick else ratio["median"] <= TARGET
            sec.target(f"hpo ≤ {TARGET}× bare Optuna per trial ({label}, {workers} worker{'s' if workers > 1 else ''})",
                       f"{fmt_stat(ratio, 3)}× (hpo − Optuna = {fmt_stat(extra, 1)} ms/trial)", met,
                       "quick mode: 20 trials, one repeat" if ctx.quick else "")
            sec.raw[key] = {**results[key], "ratio": ratio, "optuna_ms": b_ms, "hpo_ms": h_ms, "extra_ms": extra}
    lags = {arm: stat([r["exit_s"] - r["makespan_s"] for key in results if not key.endswith("/1")
                       for r in results[key][arm] if r]) for arm in ("optuna", "hpo")}
    if lags["hpo"]["n"]:
        sec.notes.append(
            "Not in the figures: with several workers, the last worker process exited "
            f"{fmt_stat(lags['hpo'], 1)} s after the study had its budget with hpo (its idle workers poll "
            f"every {IDLE_POLL_SECONDS:g} s while the last trials run elsewhere), "
            f"{fmt_stat(lags['optuna'], 1)} s with bare Optuna.")
    sec.table("Seconds per trial (ms), median [min–max] of the repeats",
              ["storage", "workers", "trials × steps", "bare Optuna ms/trial", "hpo ms/trial",
               "hpo / Optuna", "hpo − Optuna (ms/trial)", "start-up Optuna (s)", "start-up hpo (s)",
               "pruned/finished (hpo)"], rows)
    sec.notes.append(
        "No enqueued base trial in these synthetic studies: with two or more workers on SQLite, two "
        "workers can pop the same WAITING trial (Optuna's WAITING → RUNNING update relies on SELECT … "
        "FOR UPDATE, which SQLite ignores). In development runs this killed a bare-Optuna worker "
        "(`ValueError: Cannot tell a COMPLETE trial`); hpo claims queued trials with one conditional "
        "UPDATE (`hpo.storage`), so its workers do not, but bare Optuna would. PostgreSQL did not show it.")
    if ctx.pg_missing:
        sec.notes.append(f"PostgreSQL not measured: {ctx.pg_missing}")
    sec.raw["settings"] = {**cfg, "trials": {str(k): v for k, v in cfg["trials"].items()},
                           "sampler": SAMPLER, "pruner": PRUNER}
    return end(sec, t0)
