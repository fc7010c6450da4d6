"""3. Pruning savings and 4. search quality per epoch: the demo study with real training.

Every study run is ``hpo worker`` (one worker process, as ``hpo launch --workers 1`` starts it) on a
fresh SQLite study created with the demo spec, a sampler, a pruner and a seed. Ultralytics' own GA
tuner runs on the same data, model, epochs and trial count (:mod:`bench.ultra_tune`). Runs execute
``ctx.jobs`` at a time side by side; on CPU each training uses one thread whatever the setting
(Ultralytics' ``select_device`` sets ``torch.set_num_threads(min(8, cores - 1))``), so on 2 cores two
runs side by side train as fast as one alone, and every run sees the same company.
"""

from __future__ import annotations

import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from bench.common import REPO, child_env, fmt_num, fmt_stat, fresh_dir, ratios, run_measured, say, stat, tail
from bench.context import Context, Section, begin, end
from bench.demo import demo_spec_dict, ensure_demo_data, read_study, warm_label_cache

PRUNING_TARGET = 0.40
SAMPLERS = ("ga", "tpe", "cmaes", "random")


def settings(ctx: Context) -> dict[str, Any]:
    tuner = ctx.shared.get("tuner_repeats")
    if ctx.quick:
        return {"epochs": 2, "trials": 3, "pruning_seeds": ctx.seeds or [0], "search_seeds": ctx.seeds or [0],
                "samplers": ["ga", "random"], "tuner_repeats": tuner or 1}
    # About 45 min of training on 2 cores (12 trials × 10 epochs per study, two studies side by side).
    return {"epochs": None, "trials": None, "pruning_seeds": ctx.seeds or [0, 1, 2],
            "search_seeds": ctx.seeds or [0, 1], "samplers": list(SAMPLERS), "tuner_repeats": tuner or 1}


def _threads(ctx: Context) -> int:
    return max(1, (os.cpu_count() or 1) // ctx.jobs)


def _prepare(ctx: Context) -> tuple[Path, dict[str, Any]]:
    data = ensure_demo_data(ctx.workdir)
    warm_label_cache(ctx.workdir, data, _threads(ctx))
    cfg = settings(ctx)
    spec = demo_spec_dict(data, epochs=cfg["epochs"], trials=cfg["trials"])
    return data, spec


# --- one study run -----------------------------------------------------------------------------

def study_run(ctx: Context, spec: dict[str, Any], sampler: str, pruner: str, seed: int) -> dict[str, Any]:
    from hpo.spec import parse_spec
    from hpo.storage import open_storage
    from hpo.study import create_or_join

    key = f"{sampler}-{pruner}-s{seed}"
    d = fresh_dir(ctx.workdir / "studies" / key)
    url = f"sqlite:///{d / 'hpo.db'}"
    storage = open_storage(url)
    create_or_join(storage, parse_spec(spec), sampler=sampler, pruner=pruner, budget=spec["trials"])
    storage.engine.dispose()
    cmd = [sys.executable, "-m", "hpo", "worker", "--study", spec["name"], "--storage", url, "--seed", str(seed),
           "--worker-index", "0", "--device", "cpu", "--runs-dir", str(d / "runs"), "--keep", "3", "--verbose"]
    say(f"study {key}: started")
    r = run_measured(cmd, env=child_env(_threads(ctx)), cwd=REPO, log=d / "worker.log", timeout=4 * 3600)
    if r["rc"] != 0:
        raise RuntimeError(f"hpo worker for {key} failed (exit {r['rc']}): {tail(d / 'worker.log')}")
    trials = sorted(read_study(url, spec["name"])["trials"], key=lambda t: (t["complete"] or 0, t["number"]))
    out = summarise(trials, direction=spec["objective"]["direction"])
    out.update({"key": key, "sampler": sampler, "pruner": pruner, "seed": seed, "wall_s": r["seconds"]})
    say(f"study {key}: {out['epochs']} epochs, best {fmt_num(out['best'], 4)}, {r['seconds']:.0f} s, "
        f"{out['pruned']} pruned, {out['failed']} failed")
    return out


def summarise(trials: list[dict[str, Any]], direction: str = "maximize") -> dict[str, Any]:
    """Epochs, best value and the best-so-far curve over cumulative epochs (complete trials only)."""
    better = max if direction == "maximize" else min
    cumulative, best = 0, None
    curve = []
    for t in trials:
        cumulative += t["epochs"]
        if t["state"] == "COMPLETE" and t["value"] is not None:
            best = t["value"] if best is None else better(best, t["value"])
        curve.append([cumulative, best])
    return {"epochs": cumulative, "best": best, "curve": curve, "trials": trials,
            "complete": sum(t["state"] == "COMPLETE" for t in trials),
            "pruned": sum(t["state"] == "PRUNED" for t in trials),
            "failed": sum(t["state"] == "FAIL" for t in trials)}


def tuner_run(ctx: Context, spec: dict[str, Any], rep: int) -> dict[str, Any]:
    key = f"ultralytics-tune-r{rep}"
    d = fresh_dir(ctx.workdir / "studies" / key)
    spec_file = d / "spec.json"
    spec_file.write_text(json.dumps(spec))
    cmd = [sys.executable, "-m", "bench.ultra_tune", "--spec", str(spec_file), "--project", str(d / "project"),
           "--iterations", str(spec["trials"]), "--out", str(d / "out.json")]
    say(f"study {key}: started")
    r = run_measured(cmd, env=child_env(_threads(ctx)), cwd=REPO, log=d / "tune.log", timeout=4 * 3600)
    if r["rc"] != 0:
        raise RuntimeError(f"Ultralytics tuner failed (exit {r['rc']}): {tail(d / 'tune.log')}")
    res = json.loads((d / "out.json").read_text())
    trials = [{"number": it["iteration"] - 1, "state": "COMPLETE" if it["epochs"] else "FAIL",
               "value": it["value"], "params": it["hyperparameters"], "epochs": it["epochs"],
               "tuner_fitness": it["tuner_fitness"], "complete": it["complete"]} for it in res["iterations"]]
    out = summarise(trials)
    out.update({"key": key, "sampler": "ultralytics", "pruner": "none", "seed": rep, "wall_s": r["seconds"],
                "tuner_best_fitness": max((t["tuner_fitness"] or 0) for t in trials) if trials else None})
    say(f"study {key}: {out['epochs']} epochs, best {fmt_num(out['best'], 4)}, {r['seconds']:.0f} s")
    return out


def _guarded(key: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - the section reports it
        say(f"study {key} failed: {exc}")
        return {"key": key, "error": f"{type(exc).__name__}: {str(exc)[:600]}"}


def submit(ctx: Context, jobs: list[tuple[str, float, Callable[[], dict[str, Any]]]]) -> None:
    """Queue study runs on the suite's pool (``ctx.jobs`` side by side), longest first."""
    if "pool" not in ctx.shared:
        ctx.shared["pool"] = ThreadPoolExecutor(max(1, ctx.jobs), thread_name_prefix="study")
        ctx.shared["futures"] = {}
    futures = ctx.shared["futures"]
    for key, _, fn in sorted(jobs, key=lambda j: -j[1]):
        if key not in futures:
            futures[key] = ctx.shared["pool"].submit(_guarded, key, fn)


def collect(ctx: Context, keys: list[str]) -> dict[str, dict[str, Any]]:
    futures = ctx.shared.get("futures", {})
    return {k: futures[k].result() for k in keys if k in futures}


def shutdown(ctx: Context) -> None:
    pool = ctx.shared.pop("pool", None)
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


def plan(ctx: Context, spec: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    """The study runs of benchmark 3 and of benchmark 4, as (key, cost estimate, function)."""
    cfg = settings(ctx)
    selected = ctx.shared.get("selected", ["pruning", "search"])
    trials = spec["trials"]

    def job(sampler: str, pruner: str, seed: int) -> tuple[str, float, Callable[[], dict[str, Any]]]:
        cost = trials * (1.0 if pruner == "none" else 0.7)
        return (f"{sampler}-{pruner}-s{seed}", cost, lambda: study_run(ctx, spec, sampler, pruner, seed))

    pruning = []
    for seed in cfg["pruning_seeds"]:
        pruning += [job("ga", "hyperband", seed), job("ga", "none", seed)]
    search = [(f"ultralytics-tune-r{r}", trials * 1.2, (lambda r=r: tuner_run(ctx, spec, r)))
              for r in range(cfg["tuner_repeats"])]
    for sampler in cfg["samplers"]:
        seeds = set(cfg["search_seeds"])
        if sampler == "ga" and "pruning" in selected:
            seeds |= set(cfg["pruning_seeds"])  # the pruning benchmark trains these anyway
        search += [job(sampler, "hyperband", seed) for seed in sorted(seeds)]
    return pruning, search


def _common_setup(ctx: Context, spec: dict[str, Any]) -> list[str]:
    t = spec["train"]
    return [
        f"The demo study (`studies/demo.yaml`): yolov5n-p6 "
        f"{'fine-tuned from ' + Path(spec['weights']).name if spec.get('weights') else 'from scratch'}, "
        f"{t['epochs']} epochs, imgsz {t['imgsz']}, batch {t['batch']}, SGD, cosine LR, search over "
        f"{', '.join(spec['search_space'])}, "
        f"{spec['trials']} trials per study, objective 0.1 mAP50 + 0.9 mAP50-95 at the trial's best epoch, "
        "base hyps as the first trial. Data: the synthetic twin of `make demo` (`hpo data synth --cows 240 "
        "--pigs 80 --scale 0.1 --seed 0` + `hpo data prepare`): 128 training images (mini set), 64 validation.",
        f"Each study: a fresh SQLite study and one `hpo worker --seed S --device cpu` process (real "
        f"Ultralytics training, 1 thread). Runs go {ctx.jobs} at a time side by side.",
        "Epochs = epochs actually trained, summed over the study's trials (a pruned trial counts the "
        "epochs it ran). Wall time = the worker process, start to exit.",
    ]


def _curve_at(curve: list[list[Any]], epochs: int) -> float | None:
    best = None
    for cum, value in curve:
        if cum <= epochs:
            best = value
    return best


# --- 3. pruning ----------------------------------------------------------------------------------

class Pruning:
    NAME = "pruning"
    TITLE = "3. Pruning savings (Hyperband vs no pruning, real training)"

    @staticmethod
    def run(ctx: Context) -> Section:
        sec, t0 = begin(Pruning.NAME, Pruning.TITLE)
        cfg = settings(ctx)
        _, spec = _prepare(ctx)
        seeds = cfg["pruning_seeds"]
        pruning, search = plan(ctx, spec)
        # Benchmark 4's runs join the same queue (the pool stays full); this section waits for its own.
        submit(ctx, pruning + (search if "search" in ctx.shared.get("selected", []) else []))
        runs = collect(ctx, [k for k, _, _ in pruning])
        sec.setup = _common_setup(ctx, spec) + [
            f"Same sampler (`ga`, the demo's) and seed, same trial count; pruner `hyperband` (hpo's: "
            f"min_resource = the demo's `prune_after` = {spec.get('prune_after', 1)}, max_resource "
            f"{spec['train']['epochs']}, reduction factor 3) vs `none`. "
            f"Seeds {', '.join(map(str, seeds))}; the two arms of a seed are a pair, ratios per pair.",
            "Best objective \"within run-to-run noise\" is judged as: Hyperband's median best is not "
            "below the no-pruning median best by more than the seed-to-seed spread (max − min) of the "
            "no-pruning runs (being better is fine). With this few seeds that test is weak; every seed's "
            "figures are shown.",
        ]
        rows, hb_eps, none_eps, hb_best, none_best, hb_wall, none_wall = [], [], [], [], [], [], []
        for seed in seeds:
            hb, no = runs.get(f"ga-hyperband-s{seed}", {}), runs.get(f"ga-none-s{seed}", {})
            if hb.get("error") or no.get("error") or not hb or not no:
                sec.notes.append(f"seed {seed}: {hb.get('error') or no.get('error') or 'missing run'}")
                continue
            hb_eps.append(hb["epochs"])
            none_eps.append(no["epochs"])
            hb_best.append(hb["best"])
            none_best.append(no["best"])
            hb_wall.append(hb["wall_s"])
            none_wall.append(no["wall_s"])
            rows.append([seed, no["epochs"], hb["epochs"], f"{100 * (1 - hb['epochs'] / no['epochs']):.0f}%",
                         f"{no['wall_s'] / 60:.1f}", f"{hb['wall_s'] / 60:.1f}", f"{hb['wall_s'] / no['wall_s']:.2f}",
                         fmt_num(no["best"], 4), fmt_num(hb["best"], 4), f"{hb['pruned']}/{len(hb['trials'])}"])
        savings = stat([1 - h / n for h, n in zip(hb_eps, none_eps)])
        wall = stat(ratios(hb_wall, none_wall))
        sb_none, sb_hb = stat(none_best), stat(hb_best)
        rows.append(["**median**", fmt_stat(stat(none_eps), 0), fmt_stat(stat(hb_eps), 0),
                     f"**{fmt_stat(savings, 2, pct=True)}**", fmt_stat(stat([w / 60 for w in none_wall]), 1),
                     fmt_stat(stat([w / 60 for w in hb_wall]), 1), fmt_stat(wall, 2), fmt_stat(sb_none, 4),
                     fmt_stat(sb_hb, 4), ""])
        sec.table("Per seed: epochs trained, wall time, best objective",
                  ["seed", "epochs, no pruning", "epochs, Hyperband", "epochs saved", "wall min, no pruning",
                   "wall min, Hyperband", "wall ratio", "best, no pruning", "best, Hyperband",
                   "pruned trials (Hyperband)"], rows)
        if savings["n"]:
            sec.target(f"Hyperband trains ≥ {PRUNING_TARGET:.0%} fewer epochs than no pruning",
                       f"{fmt_stat(savings, 2, pct=True)} fewer",
                       None if ctx.quick else savings["median"] >= PRUNING_TARGET,
                       "quick mode: 3 trials of 2 epochs, nothing to prune" if ctx.quick else "")
        if savings["n"] and sb_hb["n"] and sb_none["n"]:
            noise = (sb_none["max"] - sb_none["min"]) if sb_none["n"] > 1 else None
            diff = sb_hb["median"] - sb_none["median"]
            met = None if noise is None or ctx.quick else diff >= -noise
            sec.target("best objective with Hyperband within run-to-run noise of no pruning",
                       f"median {fmt_num(sb_hb['median'], 4)} vs {fmt_num(sb_none['median'], 4)} (difference "
                       f"{diff:+.4f}; seed-to-seed spread without pruning {fmt_num(noise, 4)})", met,
                       "needs ≥ 2 seeds" if noise is None else "")
        sec.raw = {"settings": {"seeds": seeds, "epochs": spec["train"]["epochs"], "trials": spec["trials"],
                                "jobs": ctx.jobs},
                   "savings": savings, "wall_ratio": wall, "best_none": sb_none, "best_hyperband": sb_hb,
                   "runs": {k: v for k, v in runs.items() if k.startswith("ga-")}}
        return end(sec, t0)


# --- 4. search quality -------------------------------------------------------------------------

class Search:
    NAME = "search"
    TITLE = "4. Search quality per epoch (samplers and Ultralytics' tuner)"

    @staticmethod
    def run(ctx: Context) -> Section:
        sec, t0 = begin(Search.NAME, Search.TITLE)
        cfg = settings(ctx)
        _, spec = _prepare(ctx)
        pruning, search = plan(ctx, spec)
        submit(ctx, search)
        methods: dict[str, list[str]] = {}
        for key, _, _ in search:
            if not key.startswith("ultralytics"):
                methods.setdefault(f"{key.split('-')[0]} + Hyperband", []).append(key)
        tuner_keys = [k for k, _, _ in search if k.startswith("ultralytics")]
        runs = collect(ctx, [k for k, _, _ in search] + [k for k, _, _ in pruning if "-none-" in k])
        ga_none = sorted(k for k in runs if k.startswith("ga-none-s") and not runs[k].get("error"))
        if ga_none:
            methods["ga, no pruning"] = ga_none
        methods["Ultralytics model.tune() GA, no pruning"] = tuner_keys
        epochs, trials = spec["train"]["epochs"], spec["trials"]
        budget = epochs * trials
        marks = sorted({max(1, round(budget * f)) for f in (0.125, 0.25, 0.5, 0.75, 1.0)})
        sec.setup = _common_setup(ctx, spec) + [
            f"Samplers {', '.join(cfg['samplers'])} (hpo's configurations: GA = YOLOv5's evolve; TPE multivariate "
            "with constant liar, 5 start-up trials; CMA-ES; random), each with the demo's Hyperband pruner, "
            f"seeds {', '.join(map(str, cfg['search_seeds']))} (GA: also the pruning benchmark's seeds).",
            f"Outside baseline: Ultralytics' `model.tune()` GA (8.4's Tuner, {trials} iterations, same data, "
            "model, epochs, image size, batch, nbs, SGD, seed, `plots=False, save=False, val=True`, space = the "
            "same lr0/lrf/momentum bounds with YOLOv5's gains), offline, see `bench/ultra_tune.py`; its "
            "iterations' per-epoch mAPs are scored with hpo's objective. Its mutation RNG is unseeded: "
            f"{cfg['tuner_repeats']} repeat(s).",
            "Best-so-far = the best objective among the study's complete trials once that many epochs "
            "have been trained in total (pruned trials' partial values never count). Ultralytics' own "
            "fitness is mAP50-95 of the last or best checkpoint; the JSON keeps it too.",
        ]
        rows = []
        for label, keys in methods.items():
            ok = [runs[k] for k in keys if k in runs and not runs[k].get("error")]
            for k in keys:
                if k in runs and runs[k].get("error"):
                    sec.notes.append(f"{k} failed: {runs[k]['error'][:300]}")
            if not ok:
                continue
            row = [label, len(ok)]
            for mark in marks:
                row.append(fmt_stat(stat([_curve_at(r["curve"], mark) for r in ok]), 3))
            row += [fmt_stat(stat([r["best"] for r in ok]), 4), fmt_stat(stat([r["epochs"] for r in ok]), 0),
                    fmt_stat(stat([r["wall_s"] / 60 for r in ok]), 1)]
            rows.append(row)
        sec.table("Best-so-far objective after N cumulative epochs (median [min–max] over seeds)",
                  ["method", "runs", *[f"≤ {m} ep" for m in marks], "final best", "epochs used", "wall (min)"],
                  rows)
        fig = _plot(ctx, methods, runs, budget)
        if fig:
            sec.figures.append(fig)
        sec.notes.append("No target: this is a comparison. A '-' means no trial had completed by then "
                         "(with Hyperband the first complete trial may come late).")
        sec.raw = {"settings": {**cfg, "epochs": epochs, "trials": trials}, "methods": methods,
                   "runs": {k: runs[k] for keys in methods.values() for k in keys if k in runs}}
        return end(sec, t0)


def _plot(ctx: Context, methods: dict[str, list[str]], runs: dict[str, Any], budget: int) -> str | None:
    """Median best-so-far curves, one line per method, as a PNG next to results.md."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:  # noqa: BLE001
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    xs = list(range(1, budget + 1))
    for label, keys in methods.items():
        ok = [runs[k] for k in keys if k in runs and not runs[k].get("error")]
        if not ok:
            continue
        ys = []
        for x in xs:
            vals = [v for v in (_curve_at(r["curve"], x) for r in ok) if v is not None]
            ys.append(sorted(vals)[len(vals) // 2] if len(vals) * 2 > len(ok) else float("nan"))
        ax.step(xs, ys, where="post", label=f"{label} ({len(ok)})")
    ax.set_xlabel("cumulative epochs trained")
    ax.set_ylabel("best objective so far (median)")
    ax.set_title("Search quality per epoch, demo study")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    name = "search_quality.png"
    out = ctx.shared.get("out_dir")
    if out is None:
        return None
    fig.tight_layout()
    fig.savefig(Path(out) / name, dpi=100)
    plt.close(fig)
    return name
