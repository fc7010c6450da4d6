"""2. Scaling: throughput of 1..16 worker processes on PostgreSQL with trials of a fixed duration."""

from __future__ import annotations

from typing import Any

from bench.common import fmt_stat, ratios, say, stat
from bench.context import Context, Section, begin, end
from bench.synthetic import Load, measure, synthetic_spec_dict
from hpo.search.worker import IDLE_POLL_SECONDS

NAME = "scaling"
TITLE = "2. Scaling with parallel workers (PostgreSQL)"
TARGET = 0.9
SAMPLER, PRUNER = "random", "none"


def settings(ctx: Context) -> dict[str, Any]:
    if ctx.quick:
        return {"workers": [1, 2, 4], "waves": 2, "seconds": 0.2, "steps": 4, "repeats": ctx.reps(3, 1)}
    return {"workers": [1, 2, 4, 8, 16], "waves": 6, "seconds": 1.0, "steps": 10, "repeats": ctx.reps(3)}


def run(ctx: Context) -> Section:
    sec, t0 = begin(NAME, TITLE)
    cfg = settings(ctx)
    kind = "postgresql" if "postgresql" in ctx.storages else "sqlite"
    label = "PostgreSQL" if kind == "postgresql" else "SQLite"
    if kind != "postgresql":
        sec.notes.append(f"PostgreSQL not available ({ctx.pg_missing}); measured on SQLite instead, "
                         "which is not the multi-worker storage: the target does not apply.")
    load = Load(steps=cfg["steps"], seconds=cfg["seconds"])
    runs_dir = ctx.workdir / "scaling" / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    sec.setup = [
        f"Trial = the learning curve of benchmark 1 with {cfg['steps']} steps and a {cfg['seconds']:g} s "
        f"sleep spread over them (no CPU used while \"training\"): {cfg['seconds']:g} s per trial. "
        f"Pruner `{PRUNER}` (every trial lasts the same), sampler `{SAMPLER}`.",
        f"W workers (processes) share one study on {label} with a budget of {cfg['waves']} × W trials, "
        f"so the ideal run lasts {cfg['waves']} × {cfg['seconds']:g} s whatever W.",
        "Throughput = budget / time from go (every worker ready) until the study has its budget of "
        "finished trials. "
        "Efficiency = throughput(W) / (W × throughput(1)), with throughput(1) from the same repeat and "
        "arm. Start-up = spawn of the W processes until the last is ready (imports, storage, study).",
        f"Both arms as in benchmark 1 (hpo's `Worker` vs bare `study.optimize`), {cfg['repeats']} repeat(s), "
        "arms alternating within each repeat, fresh database per run.",
    ]
    results: dict[int, dict[str, list[dict[str, Any] | None]]] = {w: {"optuna": [], "hpo": []}
                                                               for w in cfg["workers"]}
    for rep in range(cfg["repeats"]):
        for workers in cfg["workers"]:
            arms = ("optuna", "hpo") if (rep + workers) % 2 == 0 else ("hpo", "optuna")
            for arm in arms:
                budget = cfg["waves"] * workers
                spec = synthetic_spec_dict(f"scaling-{arm}", steps=cfg["steps"], trials=budget,
                                           sampler=SAMPLER, pruner=PRUNER)
                url = ctx.factory.new(kind, f"sc_{arm}")
                try:
                    r = measure(arm, url, spec, budget=budget, workers=workers, seed=rep, load=load,
                                runs_dir=runs_dir, timeout=600 + 10 * budget * cfg["seconds"])
                    say(f"scaling {workers:2d}w rep {rep + 1} {arm}: {r['throughput_per_s']:.2f} trials/s "
                        f"(start-up {r['startup_all_ready_s']:.1f} s, {r['finished']} trials)")
                except Exception as exc:  # noqa: BLE001
                    say(f"scaling {workers}w {arm} failed: {exc}")
                    sec.notes.append(f"{workers} worker(s), {arm}, repeat {rep + 1} failed: "
                                     f"{str(exc).splitlines()[0][:300]}")
                    r = None
                finally:
                    ctx.factory.drop(url)
                results[workers][arm].append(r)

    one = {arm: [r["throughput_per_s"] if r else None for r in results[cfg["workers"][0]][arm]]
           for arm in ("optuna", "hpo")}
    rows = []
    summary: dict[str, Any] = {}
    for workers in cfg["workers"]:
        row: list[Any] = [workers, f"{cfg['waves'] * workers}",
                          f"{workers / cfg['seconds']:.2f}"]
        per_arm = {}
        for arm in ("optuna", "hpo"):
            thr = [r["throughput_per_s"] if r else None for r in results[workers][arm]]
            eff = [t / (workers * o) if t and o else None for t, o in zip(thr, one[arm])]
            start = [r["startup_all_ready_s"] if r else None for r in results[workers][arm]]
            per_arm[arm] = {"throughput": stat(thr), "efficiency": stat(eff), "startup_s": stat(start)}
        ratio = stat(ratios([r["throughput_per_s"] if r else None for r in results[workers]["hpo"]],
                            [r["throughput_per_s"] if r else None for r in results[workers]["optuna"]]))
        row += [fmt_stat(per_arm["optuna"]["throughput"], 2), fmt_stat(per_arm["hpo"]["throughput"], 2),
                fmt_stat(ratio, 3), fmt_stat(per_arm["optuna"]["efficiency"], 3),
                f"**{fmt_stat(per_arm['hpo']['efficiency'], 3)}**",
                fmt_stat(per_arm["optuna"]["startup_s"], 1), fmt_stat(per_arm["hpo"]["startup_s"], 1)]
        rows.append(row)
        summary[str(workers)] = {**per_arm, "hpo_over_optuna_throughput": ratio,
                                 "runs": results[workers]}
    sec.table("Throughput (trials/s), efficiency and start-up, median [min–max] of the repeats",
              ["workers", "trials", "ideal trials/s", "bare Optuna trials/s", "hpo trials/s",
               "hpo / Optuna", "efficiency Optuna", "efficiency hpo", "start-up Optuna (s)",
               "start-up hpo (s)"], rows)
    lags = {arm: stat([r["exit_s"] - r["makespan_s"] for w in cfg["workers"][1:] for r in results[w][arm] if r])
            for arm in ("optuna", "hpo")}
    if lags["hpo"]["n"]:
        sec.notes.append(
            "Not in the throughput: the last worker process exited "
            f"{fmt_stat(lags['hpo'], 1)} s after the study had its budget with hpo (idle workers poll every "
            f"{IDLE_POLL_SECONDS:g} s), {fmt_stat(lags['optuna'], 1)} s with bare Optuna (multi-worker runs).")
    top = cfg["workers"][-1]
    eff = summary[str(top)]["hpo"]["efficiency"]
    met = None if eff["median"] is None or kind != "postgresql" or top < 16 else eff["median"] >= TARGET
    sec.target(f"hpo efficiency ≥ {TARGET} at 16 workers ({label})",
               f"{fmt_stat(eff, 3)} at {top} workers (bare Optuna "
               f"{fmt_stat(summary[str(top)]['optuna']['efficiency'], 3)})", met,
               "" if top >= 16 else "quick mode stops below 16 workers: not comparable to the target")
    sec.raw = {"settings": {**cfg, "storage": kind, "sampler": SAMPLER, "pruner": PRUNER}, "workers": summary}
    return end(sec, t0)
