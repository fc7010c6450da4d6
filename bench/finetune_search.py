"""Benchmark 4 redone on the fine-tuning problem: best-so-far objective vs cumulative epochs.

Arms (each a fresh SQLite study and one ``hpo worker`` process, or Ultralytics' own tuner), named
``SAMPLER-PRUNER``: the GA without pruning (the contest's YOLOv5 evolve) and with Hyperband, TPE
without pruning, with Hyperband and with the ``base`` reference-curve pruner, random with ``base``,
and Ultralytics' ``model.tune()`` GA (:mod:`bench.ultra_tune`); ``ga_bounded-PRUNER`` is the GA with
Ultralytics 8.4's bounded mutation (:data:`SAMPLER_VARIANTS`). Each over several seeds, on the demo's
problem (``studies/demo.yaml``, problem P1 of :mod:`bench.finetune`): the pasture-pretrained
yolov5n-p6 (:mod:`bench.pretrain`) fine-tuned on the farm twin. Arms that prune get
:data:`PRUNED_TRIALS_FACTOR` times the trials, and every arm is compared within the epochs the tuner
trains (the GPU-hour proxy); pruning's savings are measured on the first trials of the same seeds.

    python -m bench.finetune_search --quick                      # smoke: 2 arms, 1 seed, 3 trials of 2 epochs
    python -m bench.finetune_search --seeds 0,1,2,3,4            # CPU, 2 studies side by side (about an hour)
    python -m bench.finetune_search --gpu --jobs 8               # one CUDA GPU, 8 studies side by side

Writes ``OUT.json`` (every study's trials and curve) and ``OUT.md`` (the table). Every arm fine-tunes
the committed checkpoint (weights/yolov5n-p6-pasture.pt, the demo's), ``--quick`` a quick recipe's.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from bench.common import REPO, child_env, fmt_num, fmt_stat, fresh_dir, gpu_sharing, run_measured, say, stat, tail
from bench.finetune import CHOSEN

ARMS = ("ga-none", "ga-hyperband", "tpe-none", "tpe-hyperband", "tpe-base", "random-base", "ultralytics")
#: Arm sampler names beyond hpo's registry: the GA with a study file's ``ga:`` settings.
SAMPLER_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "ga_bounded": ("ga", {"mutation": "bounded"}),  # Ultralytics 8.4's step, YOLOv5's parent selection
}
#: The study file benchmark 4 runs, on bench/finetune.py's chosen problem (P1): the demo's.
STUDY_FILE = REPO / "studies" / "demo.yaml"
#: Trials per study (the tuner's iterations) unless --trials says otherwise: section 9's size, kept apart
#: from the demo's own budget (``trials:`` in the study file), which serves a one-command run.
TRIALS = 8
#: Arms that prune get this many times the tuner's trials: compared per epoch, a pruned trial is cheaper.
PRUNED_TRIALS_FACTOR = 1.5
#: With ``--equal-epochs`` arms that prune instead spend the unpruned arms' epochs (hpo's ``epoch_budget``),
#: in at most this many times their trials.
EQUAL_EPOCHS_TRIAL_CAP = 4


def pruned_budget_text(results: dict[str, Any]) -> str:
    """How a run's pruning arms were budgeted, for its setup lines."""
    spec = results["spec"]
    if results.get("equal_epochs"):
        return (f"Pruning arms spend the unpruned arms' epochs (hpo's epoch budget, "
                f"{spec['trials'] * spec['train']['epochs']} epochs, at most {EQUAL_EPOCHS_TRIAL_CAP}x the trials)")
    return f"Pruning arms get {PRUNED_TRIALS_FACTOR:g}x the trials"


def study_run(workdir: Path, spec: dict[str, Any], arm: str, seed: int, device: str,
              env: dict[str, str], deadline: float | None = None, equal_epochs: bool = False) -> dict[str, Any]:
    """One study: hpo worker (sampler-pruner arm) or Ultralytics' tuner; its best-so-far curve.

    At ``deadline`` (time.time()) the study's process is killed; an hpo study keeps the trials it
    finished (``truncated``), so a run on a lent machine with a hard time limit still reports.
    """
    timeout = 6 * 3600 if deadline is None else max(5.0, deadline - time.time())
    truncated = False
    from bench.demo import read_study
    from bench.training import summarise

    key = f"{arm}-s{seed}"
    d = fresh_dir(workdir / "search" / key)
    t0 = time.perf_counter()
    if arm == "ultralytics":
        spec_file = d / "spec.json"
        spec_file.write_text(json.dumps(spec))
        cmd = [sys.executable, "-m", "bench.ultra_tune", "--spec", str(spec_file), "--project", str(d / "project"),
               "--iterations", str(spec["trials"]), "--out", str(d / "out.json"), "--device", device]
        r = run_measured(cmd, env=env, cwd=REPO, log=d / "log.txt", timeout=timeout)
        if r["rc"] != 0:
            return {"key": key, "error": f"tuner exit {r['rc']}: {tail(d / 'log.txt', 8)}"}
        res = json.loads((d / "out.json").read_text())
        trials = [{"number": it["iteration"] - 1, "state": "COMPLETE" if it["epochs"] else "FAIL",
                   "value": it["value"], "params": it["hyperparameters"], "epochs": it["epochs"],
                   "complete": it["complete"], "values": it.get("values", [])} for it in res["iterations"]]
    else:
        from hpo.spec import parse_spec
        from hpo.storage import open_storage
        from hpo.study import create_or_join

        sampler, pruner, ga = arm_parts(arm)
        if ga:
            spec = {**spec, "ga": ga}
        url = f"sqlite:///{d / 'hpo.db'}"
        storage = open_storage(url)
        budget, epoch_budget = trials_for(arm, spec, equal_epochs)
        create_or_join(storage, parse_spec(spec), sampler=sampler, pruner=pruner, budget=budget,
                       epoch_budget=epoch_budget)
        storage.engine.dispose()
        cmd = [sys.executable, "-m", "hpo", "worker", "--study", spec["name"], "--storage", url, "--seed", str(seed),
               "--worker-index", "0", "--device", device, "--runs-dir", str(d / "runs"), "--keep", "1", "--verbose"]
        r = run_measured(cmd, env=env, cwd=REPO, log=d / "log.txt", timeout=timeout)
        truncated = r["rc"] == 124
        if r["rc"] != 0 and not truncated:
            return {"key": key, "error": f"worker exit {r['rc']}: {tail(d / 'log.txt', 8)}"}
        trials = sorted(read_study(url, spec["name"])["trials"], key=lambda t: (t["complete"] or 0, t["number"]))
    out = summarise(trials)
    out.update({"key": key, "arm": arm, "seed": seed, "wall_s": round(time.perf_counter() - t0, 1),
                "truncated": truncated})
    say(f"{key}: {out['epochs']} epochs, best {fmt_num(out['best'], 4)}, {out['wall_s']:.0f} s")
    return out


def arm_parts(arm: str) -> tuple[str, str, dict[str, Any]]:
    """(sampler of hpo's registry, pruner, the study file's ``ga:`` settings) of an arm ``NAME-PRUNER``."""
    name, _, pruner = arm.partition("-")
    sampler, ga = SAMPLER_VARIANTS.get(name, (name, {}))
    return sampler, pruner, ga


def trials_for(arm: str, spec: dict[str, Any], equal_epochs: bool = False) -> tuple[int, int | None]:
    """The arm's (trial budget, epoch budget): the study's trials, or for a pruning arm
    :data:`PRUNED_TRIALS_FACTOR` times them, or with ``equal_epochs`` the unpruned arms' epochs."""
    pruning = arm != "ultralytics" and not arm.endswith("-none")
    if not pruning:
        return spec["trials"], None
    if equal_epochs:
        return spec["trials"] * EQUAL_EPOCHS_TRIAL_CAP, spec["trials"] * spec["train"]["epochs"]
    return math.ceil(spec["trials"] * PRUNED_TRIALS_FACTOR), None


def curve_at(curve: list[list[Any]], epochs: int) -> float | None:
    best = None
    for cum, value in curve:
        if cum <= epochs:
            best = value
    return best


def epochs_to_reach(curve: list[list[Any]], target: float) -> int | None:
    """Cumulative epochs at which the best-so-far first reaches ``target`` (None: never)."""
    for cum, value in curve:
        if value is not None and value >= target - 1e-12:
            return int(cum)
    return None


def bootstrap_median_diff(a: list[float], b: list[float], n: int = 10000, seed: int = 0) -> tuple[float, float, float]:
    """Median(a) - median(b) with a 95 % percentile bootstrap interval (runs resampled within each arm)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    xa, xb = np.asarray(a, float), np.asarray(b, float)
    diffs = np.median(rng.choice(xa, (n, xa.size)), axis=1) - np.median(rng.choice(xb, (n, xb.size)), axis=1)
    return float(np.median(xa) - np.median(xb)), float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))


def analyse(results: dict[str, Any], baseline: str = "ultralytics") -> dict[str, Any]:
    """What the issue asks of benchmark 4: epochs to reach the tuner's final median best, each arm's
    best within the tuner's epochs against the tuner's (bootstrap intervals), pruning's savings on the
    same seeds and trial counts, and how well each epoch ranks hyps (what pruning relies on)."""
    import statistics

    from bench.finetune import spearman

    ok = {arm: sorted((r for r in results["runs"] if r.get("arm") == arm and not r.get("error")),
                      key=lambda r: r["seed"]) for arm in results["arms"]}
    ok = {arm: runs for arm, runs in ok.items() if runs}
    spec = results["spec"]
    out: dict[str, Any] = {"arms": {}}
    base_runs = ok.get(baseline, [])
    target = statistics.median(r["best"] for r in base_runs) if base_runs else None
    base_epochs = statistics.median(r["epochs"] for r in base_runs) if base_runs else None
    budget = base_epochs or spec["train"]["epochs"] * spec["trials"]
    out["target"], out["target_epochs"], out["budget"] = target, base_epochs, budget
    for arm, runs in ok.items():
        within = [curve_at(r["curve"], int(budget)) for r in runs]
        row: dict[str, Any] = {"runs": len(runs), "final": [r["best"] for r in runs], "within": within,
                               "epochs": [r["epochs"] for r in runs]}
        if target is not None:
            reach = [epochs_to_reach(r["curve"], target) for r in runs]
            row["reach"] = reach
            hit = sorted(x for x in reach if x is not None)
            # The median run's epochs; a run that never got there counts as infinitely many.
            row["reached"] = len(hit)
            row["reach_median"] = (statistics.median(x if x is not None else float("inf") for x in reach)
                                   if len(hit) * 2 > len(reach) else None)
            if row["reach_median"] is not None and base_epochs:
                row["reach_fraction"] = row["reach_median"] / base_epochs
        if base_runs and arm != baseline and all(w is not None for w in within):
            row["vs_baseline"] = bootstrap_median_diff(within, [r["best"] for r in base_runs])
        out["arms"][arm] = row
    out["pruning"] = {}
    n, epochs = spec["trials"], spec["train"]["epochs"]
    for arm, runs in ok.items():
        sampler, _, pruner = arm.partition("-")
        by_seed = {r["seed"]: r for r in ok.get(f"{sampler}-none", [])}
        if not pruner or pruner == "none" or not by_seed:
            continue
        pairs = []
        for r in runs:
            other = by_seed.get(r["seed"])
            if other is None:
                continue
            mine, full = first_trials(r, n, epochs), first_trials(other, n, epochs)
            if mine["best"] is None or full["best"] is None:
                continue
            pairs.append({"seed": r["seed"], "pruned_epochs": mine["epochs"], "full_epochs": full["epochs"],
                          "pruned_best": mine["best"], "full_best": full["best"], "pruned": mine["pruned"]})
        if pairs:
            out["pruning"][arm] = {
                "pairs": pairs, "trials": n, "against": f"{sampler}-none",
                "epochs_saved": 1 - sum(p["pruned_epochs"] for p in pairs) / sum(p["full_epochs"] for p in pairs),
                "best_diff": bootstrap_median_diff([p["pruned_best"] for p in pairs], [p["full_best"] for p in pairs])}
    # Rank correlation of each epoch's objective with the trial's final value, over the trials that
    # trained every epoch in the arms that never prune (pruned trials would bias it).
    full = [t for arm in ("ga-none", baseline) for r in ok.get(arm, []) for t in r.get("trials", [])
            if t["state"] == "COMPLETE" and len(t.get("values") or []) == epochs and t["value"] is not None]
    if len(full) >= 3:
        finals = [t["value"] for t in full]
        out["spearman"] = {"n": len(full), "by_epoch": [round(spearman([t["values"][k] for t in full], finals), 3)
                                                       for k in range(epochs - 1)]}
    return out


def first_trials(run: dict[str, Any], n: int, epochs: int) -> dict[str, Any]:
    """Epochs, best value and trials pruned over the run's first ``n`` finished trials.

    A run kept in bench/results.json has its curve but not its trials: the curve has one point per
    trial (cumulative epochs, best so far), which gives the same epochs and best; a trial that trained
    fewer than ``epochs`` epochs counts as pruned there.
    """
    if "trials" not in run:
        points = run["curve"][:n]
        ran = [b[0] - a[0] for a, b in zip([[0, None]] + points[:-1], points)]
        return {"epochs": points[-1][0] if points else 0, "best": points[-1][1] if points else None,
                "pruned": sum(e < epochs for e in ran)}
    trials = run["trials"][:n]
    values = [t["value"] for t in trials if t["state"] == "COMPLETE" and t["value"] is not None]
    return {"epochs": sum(t["epochs"] for t in trials), "best": max(values) if values else None,
            "pruned": sum(t["state"] == "PRUNED" for t in trials)}


def merge(results: dict[str, Any], earlier: dict[str, Any]) -> dict[str, Any]:
    """``results`` with the arms of an ``earlier`` run on the same problem that it lacks (its runs too).

    So a follow-up run of a few arms (``--arms``) is compared with the whole earlier benchmark without
    redoing it; ``earlier`` is a run's JSON, this benchmark's section, or bench/results.json (whose
    section's runs have curves, no trials).
    """
    earlier = earlier.get("sections", {}).get(FinetuneSearch.NAME, earlier)  # bench/results.json
    earlier = earlier.get("raw", earlier)  # a bench section
    # The study file's default sampler and pruner do not reach the arms: each names its own. The measured
    # noise reaches only the reference-curve pruners' margins: arms without them may differ in it.
    extra = [a for a in earlier["arms"] if a not in results["arms"]]
    ignored = {"sampler", "pruner"}
    if not any(arm_parts(a)[1] in ("base", "incumbent") for a in extra if a != "ultralytics"):
        ignored.add("noise")
    changed = sorted(k for k in {*earlier["spec"], *results["spec"]} - ignored
                     if earlier["spec"].get(k) != results["spec"].get(k))
    if changed:
        raise ValueError(f"the earlier run is of another problem (spec differs in {', '.join(changed)})")
    return {**results, "arms": [*results["arms"], *extra],
            "runs": [*results["runs"], *(r for r in earlier["runs"] if r.get("arm") in extra)],
            "merged": [*results.get("merged", []), {"finished": earlier["finished"], "arms": extra,
                                                    "seeds": earlier["seeds"], "device": earlier["device"]}]}


def plot(results: dict[str, Any], path: Path) -> Path:
    """Median best-so-far against cumulative epochs per arm, min-max band shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    spec = results["spec"]
    longest = max((r["epochs"] for r in results["runs"] if not r.get("error")), default=0)
    grid = np.arange(1, max(longest, spec["train"]["epochs"] * spec["trials"]) + 1)
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for arm in results["arms"]:
        runs = [r for r in results["runs"] if r.get("arm") == arm and not r.get("error")]
        if not runs:
            continue
        ys = np.array([[np.nan if (v := curve_at(r["curve"], int(g))) is None else v for g in grid] for r in runs])
        with warnings.catch_warnings():  # epochs before any run's first complete trial are all NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            med, low, high = np.nanmedian(ys, axis=0), np.nanmin(ys, axis=0), np.nanmax(ys, axis=0)
        line, = ax.step(grid, med, where="post", label=f"{arm} ({len(runs)} runs)")
        ax.fill_between(grid, low, high, step="post", alpha=0.12, color=line.get_color())
    ax.set_xlabel("cumulative epochs trained (the GPU-hour proxy)")
    ax.set_ylabel("best objective so far (0.1 mAP50 + 0.9 mAP50-95)")
    ax.axvline(spec["train"]["epochs"] * spec["trials"], color="grey", lw=0.8, ls=":")
    ax.set_title(f"Fine-tuning search: median and min-max over seeds ({results['device']})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def result_tables(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The run's tables ({title, columns, rows}): best-so-far at fractions of the no-pruning budget,
    reaching the tuner's median best with bootstrap intervals, and pruning's savings on the same seeds.
    One source for the run's own OUT.md and for its bench section."""
    spec = results["spec"]
    budget = spec["train"]["epochs"] * spec["trials"]
    marks = sorted({max(1, round(budget * f)) for f in (0.125, 0.25, 0.5, 0.75, 1.0)})
    rows = []
    for arm in results["arms"]:
        ok = [r for r in results["runs"] if r.get("arm") == arm and not r.get("error")]
        if ok:
            rows.append([arm, str(len(ok)), *[fmt_stat(stat([curve_at(r["curve"], m) for r in ok]), 3) for m in marks],
                         fmt_stat(stat([r["best"] for r in ok]), 4), fmt_stat(stat([r["epochs"] for r in ok]), 0),
                         fmt_stat(stat([r["wall_s"] / 60 for r in ok]), 1)])
    tables = [{"title": "Best-so-far objective at cumulative epochs: median [min–max] over seeds",
               "columns": ["arm", "runs", *[f"≤ {m} ep" for m in marks], "final best", "epochs used", "wall (min)"],
               "rows": rows}]
    a = analyse(results)
    if a["target"] is not None:
        arows = []
        for arm, row in a["arms"].items():
            rm = row.get("reach_median")
            diff = row.get("vs_baseline")
            arows.append([arm, f"{row.get('reached', '-')}/{row['runs']}",
                          "-" if rm is None else ("never" if rm == float("inf") else f"{rm:.0f}"),
                          f"{row['reach_fraction']:.0%}" if row.get("reach_fraction") not in (None, float("inf")) else "-",
                          fmt_stat(stat(row["within"]), 4) if arm != "ultralytics" else fmt_stat(stat(row["final"]), 4),
                          "-" if diff is None else f"{diff[0]:+.4f} [{diff[1]:+.4f}, {diff[2]:+.4f}]"])
        tables.append({"title": f"Reaching `model.tune()`'s final median best ({a['target']:.4f}; the tuner trains "
                                f"{a['target_epochs']:.0f} epochs per run)",
                       "columns": ["arm", "runs reaching it", "median epochs to reach it", "of the tuner's epochs",
                                   f"best within {a['budget']:.0f} epochs", "that − tuner's final, 95 % bootstrap CI"],
                       "rows": arows})
    if a["pruning"]:
        prow = []
        for arm, pr in a["pruning"].items():
            d = pr["best_diff"]
            prow.append([f"{arm} vs {pr['against']}", str(sum(p["pruned"] for p in pr["pairs"])),
                         f"{sum(p['pruned_epochs'] for p in pr['pairs'])} / {sum(p['full_epochs'] for p in pr['pairs'])}",
                         f"{pr['epochs_saved']:.0%}", f"{d[0]:+.4f} [{d[1]:+.4f}, {d[2]:+.4f}]",
                         ", ".join(f"{fmt_num(p['pruned_best'], 3)}/{fmt_num(p['full_best'], 3)}" for p in pr["pairs"])])
        n = next(iter(a["pruning"].values()))["trials"]
        tables.append({"title": f"Pruning savings: each sampler with a pruner against the same sampler without, "
                                f"first {n} trials of the same seeds",
                       "columns": ["arms", "trials pruned", "epochs with / without", "fewer epochs",
                                   "best with − without, 95 % bootstrap CI", "best with/without per seed"],
                       "rows": prow})
    if a.get("spearman"):
        sp = a["spearman"]
        tables.append({"title": f"Does epoch k rank hyps? Spearman ρ of the objective at epoch k with the final value "
                                f"({sp['n']} trials that trained every epoch, arms without pruning)",
                       "columns": ["epoch k", *[str(k + 1) for k in range(len(sp["by_epoch"]))]],
                       "rows": [["ρ", *[f"{x:+.2f}" for x in sp["by_epoch"]]]]})
    return tables


def result_notes(results: dict[str, Any]) -> list[str]:
    """Studies cut at the deadline and studies that failed."""
    cut = sorted(r["key"] for r in results["runs"] if r.get("truncated"))
    notes = [f"Stopped at the deadline (trials finished by then are counted): {', '.join(cut)}."] if cut else []
    return notes + [f"Failed: {r['key']}: {r['error'][:300]}" for r in results["runs"] if r.get("error")]


def render(results: dict[str, Any]) -> str:
    """OUT.md: one line on the run, then :func:`result_tables` and :func:`result_notes` as Markdown."""
    from bench.report import markdown_table

    spec = results["spec"]
    lines = [f"Fine-tuning search benchmark ({results['device']}, {results['finished']}, {results['seconds'] / 60:.1f} min): "
             f"{spec['trials']} trials × {spec['train']['epochs']} epochs per study, seeds "
             f"{', '.join(map(str, results['seeds']))}, {results['jobs']} studies side by side."]
    for table in result_tables(results):
        lines += ["", f"**{table['title']}**", "", *markdown_table(table["columns"], table["rows"])]
    notes = result_notes(results)
    return "\n".join(lines + ([""] + [f"- {n}" for n in notes] if notes else [])) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.finetune_search", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gpu", action="store_true", help="train on CUDA device 0 (pretraining included)")
    p.add_argument("--quick", action="store_true", help="smoke: 2 arms, seed 0, 3 trials of 2 epochs")
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--trials", type=int, default=None, help=f"trials per study (default {TRIALS})")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs per trial, every arm (default: the problem's 5; benchmark 11 replays 15)")
    p.add_argument("--noise-from", type=Path, default=None, metavar="RANKS_JSON",
                   help="noise.std and noise.per_epoch from `python -m bench.finetune ranks --out` at these epochs")
    p.add_argument("--noise-std", type=float, default=None,
                   help="seed-to-seed std at these epochs (the margin of the base/incumbent pruners; default the "
                        "study file's, measured at 5 epochs)")
    p.add_argument("--equal-epochs", action="store_true",
                   help="pruning arms spend the unpruned arms' epochs (an epoch budget of trials x epochs, at most "
                        f"{EQUAL_EPOCHS_TRIAL_CAP}x the trials) instead of {PRUNED_TRIALS_FACTOR:g}x the trials")
    p.add_argument("--jobs", type=int, default=None, help="studies side by side (default 2 on CPU, 8 on GPU)")
    p.add_argument("--workdir", type=Path, default=REPO / "bench" / ".work")
    p.add_argument("--out", type=Path, default=None, help="results prefix (default WORKDIR/finetune_search)")
    p.add_argument("--deadline", type=float, default=None,
                   help="seconds from start after which running studies are stopped (kept as truncated)")
    p.add_argument("--render", type=Path, default=None, metavar="JSON",
                   help="only re-render the table and the plot of an earlier run's JSON")
    p.add_argument("--into-results", type=Path, default=None, metavar="JSON",
                   help="put an earlier run's JSON into bench/results.json and results.md as section "
                        "`finetune_search` (a run of hours need not be redone by `make bench`)")
    p.add_argument("--note", action="append", default=[], help="with --into-results: a note under the section")
    p.add_argument("--merge", type=Path, default=None, metavar="JSON",
                   help="with --render/--into-results: add the arms this run lacks from an earlier run's JSON "
                        "(or bench/results.json, whose finetune_search section is used) on the same problem")
    args = p.parse_args(argv)
    if args.render or args.into_results:
        results = json.loads((args.render or args.into_results).read_text())
        if args.merge:
            try:
                results = merge(results, json.loads(args.merge.read_text()))
            except ValueError as exc:
                p.error(f"--merge {args.merge}: {exc}")
    if args.render:
        args.render.with_suffix(".md").write_text(render(results))
        plot(results, args.render.with_suffix(".png"))
        print(render(results))
        return 0
    if args.into_results:
        return into_results(results, notes=args.note)
    results = run_search(gpu=args.gpu, quick=args.quick, seeds=[int(x) for x in args.seeds.split(",")],
                         arms=[a for a in args.arms.split(",") if a], trials=args.trials, jobs=args.jobs,
                         workdir=args.workdir, out=args.out, deadline=args.deadline, epochs=args.epochs,
                         noise=_noise_option(args), equal_epochs=args.equal_epochs)
    print(render(results))
    return 1 if any(r.get("error") for r in results["runs"]) else 0


def _noise_option(args: argparse.Namespace) -> dict[str, Any] | None:
    """The spec's ``noise:`` from --noise-from (a ranks run) or --noise-std; None keeps the study file's."""
    if args.noise_from:
        from bench.finetune import seed_noise

        measured = json.loads(args.noise_from.read_text())
        std, per_epoch = seed_noise(measured["runs"])
        if args.epochs and len(per_epoch) != args.epochs:
            raise SystemExit(f"{args.noise_from}: measured at {len(per_epoch)} epochs, not --epochs {args.epochs}")
        return {"std": round(std, 4), "per_epoch": [round(x, 4) for x in per_epoch],
                "source": f"base hyps over 5 seeds at {len(per_epoch)} epochs ({args.noise_from.name}, benchmark 11)"}
    if args.noise_std is not None:
        return {"std": args.noise_std, "source": "--noise-std"}
    return None


def run_search(*, gpu: bool = False, quick: bool = False, seeds: list[int] | None = None,
               arms: list[str] | None = None, trials: int | None = None, jobs: int | None = None,
               workdir: Path = REPO / "bench" / ".work", out: Path | None = None,
               deadline: float | None = None, epochs: int | None = None,
               noise: dict[str, Any] | None = None, equal_epochs: bool = False) -> dict[str, Any]:
    """Every (arm, seed) study; the results dict (also written to OUT.json/.md/.png after each study)."""
    from hpo.offline import configure_offline

    configure_offline()
    from bench.finetune import chosen_problem, ensure_target, finetune_spec_dict
    from bench.pretrain import COMMITTED, COMMITTED_RECORD, pretrain

    device = "0" if gpu else "cpu"
    jobs = jobs or (8 if gpu else 2)
    workdir = Path(workdir).resolve()
    out = (out or workdir / ("finetune_search_quick" if quick else "finetune_search")).resolve()
    problem = chosen_problem()
    arms = list(arms or ARMS)
    seeds = list(seeds if seeds is not None else (0, 1, 2, 3, 4))
    epochs = 2 if quick else epochs
    if epochs:
        problem = {**problem, "train": {**problem["train"], "epochs": epochs}}
    if quick:
        arms, seeds = [a for a in arms if a in ("random-base", "ultralytics")], [0]
        rec = pretrain(quick=True, root=workdir / "pretrained", device=device, log=say)
    else:  # the demo's own checkpoint, on any device: its noise floor was measured on exactly these weights
        rec = {**json.loads(COMMITTED_RECORD.read_text()), "weights": str(COMMITTED)}
    data = ensure_target(workdir, problem)
    spec = finetune_spec_dict(data, Path(rec["weights"]), problem, study_file=STUDY_FILE)
    spec["trials"] = 3 if quick else (trials or TRIALS)
    if noise is not None:  # measured for these epochs (the study file's is for its own)
        spec["noise"] = noise
    if spec.get("prune_after", 1) >= spec["train"]["epochs"]:
        spec["prune_after"] = 1
    if gpu:
        spec["train"]["workers"] = max(1, (os.cpu_count() or 2) // jobs)
    env = child_env(None if gpu else 1)
    if gpu:
        env.pop("CUDA_VISIBLE_DEVICES", None)
        env.setdefault("OMP_NUM_THREADS", "2")  # many trainings share the CPU cores
    say(f"fine-tuning search: arms {', '.join(arms)}, seeds {seeds}, {spec['trials']} trials × "
        f"{spec['train']['epochs']} epochs, device {device}, {jobs} side by side")
    started = time.perf_counter()
    stop_at = time.time() + deadline if deadline else None
    tasks = [(arm, seed) for seed in seeds for arm in arms]
    # Seed by seed (a run cut short by --deadline leaves whole seeds), longest arms first within a
    # seed: the tuner and no-pruning arms train every epoch.
    tasks.sort(key=lambda t: (t[1], 0 if t[0] in ("ultralytics", "ga-none") else 1))
    runs: list[dict[str, Any]] = []

    def write() -> dict[str, Any]:
        """Results so far: a run cut short (time limit) still leaves every finished study."""
        results = {"device": "CUDA GPU 0" if gpu else "CPU", "finished": time.strftime("%Y-%m-%d %H:%M %Z"),
                   "seconds": round(time.perf_counter() - started, 1), "seeds": seeds, "arms": arms, "jobs": jobs,
                   "spec": spec, "pretrained": {k: rec.get(k) for k in ("key", "final", "train_seconds", "device")},
                   "complete": len(runs) == len(tasks), "equal_epochs": equal_epochs, "runs": runs}
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".json").write_text(json.dumps(results, indent=1, default=str) + "\n")
        out.with_suffix(".md").write_text(render(results))
        plot(results, out.with_suffix(".png"))
        return results

    with gpu_sharing(gpu, jobs, workdir, env), ThreadPoolExecutor(jobs) as pool:
        futures = [pool.submit(_guard, workdir, spec, arm, seed, device, env, stop_at, equal_epochs)
                   for arm, seed in tasks]
        for fut in as_completed(futures):
            runs.append(fut.result())
            write()
    return write()


class FinetuneSearch:
    """``make bench`` section 9: the run above (hours on 2 CPU cores), or ``--into-results`` of one."""

    NAME = "finetune_search"
    TITLE = "9. Benchmark 4 on the fine-tuning problem: best-so-far objective against epochs"

    @staticmethod
    def run(ctx: Any) -> Any:
        from bench.context import begin, end

        sec, t0 = begin(FinetuneSearch.NAME, FinetuneSearch.TITLE)
        results = run_search(quick=ctx.quick, seeds=ctx.seeds, jobs=ctx.jobs, workdir=ctx.workdir,
                             out=ctx.workdir / "finetune_search")
        fill_section(sec, results, figure_dir=REPO / "bench" if not ctx.quick else ctx.workdir)
        return end(sec, t0)


def fill_section(sec: Any, results: dict[str, Any], figure_dir: Path) -> None:
    """The results as a bench section: setup, the curve table, the analysis, the plot, raw numbers."""
    spec = results["spec"]
    t = spec["train"]
    noise = spec.get("noise") or {}
    sec.setup = [
        f"Problem: the demo's (`studies/demo.yaml`, problem {CHOSEN} of section 8): the committed pasture-pretrained "
        f"yolov5n-p6 fine-tuned {t['epochs']} epochs at {t['imgsz']} px on the farm twin (128 training images, 64 "
        "validation), 10 hyps searched. Objective: 0.1 mAP50 + 0.9 mAP50-95 at the trial's best epoch; training "
        "seed 0 in every trial of every arm (trial 0 = the base hyps gives the same value in all arms). Seed-to-seed "
        f"noise of the base hyps: std {noise.get('std', '?')} (training seeds 0-4).",
        f"Arms: {', '.join(results['arms'])}; `hpo worker` on a fresh SQLite study per (arm, seed), the "
        "seed feeding the sampler; `ultralytics`: `model.tune()`'s Tuner on the same space, data, epochs and "
        f"iteration count (`bench/ultra_tune.py`). {spec['trials']} trials per study; "
        f"{pruned_budget_text(results)[0].lower() + pruned_budget_text(results)[1:]}, and every arm is compared "
        "within the tuner's epochs. Pruners stop a trial "
        f"from epoch {spec.get('prune_after', 1)} on: Hyperband (min_resource {spec.get('prune_after', 1)}, "
        f"max_resource {t['epochs']}, reduction factor 3); `base`/`incumbent`: best-so-far more than the noise std "
        "behind the base trial's / the best finished trial's best-so-far at the same epoch.",
        f"{results['device']}, {results['jobs']} studies side by side (1 torch thread each). "
        "Cumulative epochs = epochs trained, pruned trials counting the epochs they ran.",
    ]
    sec.tables.extend(result_tables(results))
    figure = figure_dir / "finetune_search.png"
    plot(results, figure)
    sec.figures.append(figure.name)
    sec.notes.extend(result_notes(results))
    sec.raw = {k: v for k, v in results.items() if k != "runs"}
    sec.raw["runs"] = [{k: v for k, v in r.items() if k != "trials"} for r in results["runs"]]


def into_results(results: dict[str, Any], notes: list[str] | None = None) -> int:
    """Write a finished run into bench/results.json (section ``finetune_search``) and re-render results.md."""
    from bench.report import import_run

    import_run(FinetuneSearch.NAME, FinetuneSearch.TITLE, started=results["finished"], seconds=results["seconds"],
               module="bench.finetune_search", notes=notes,
               fill=lambda sec: fill_section(sec, results, figure_dir=REPO / "bench"))
    return 0


def _guard(workdir: Path, spec: dict[str, Any], arm: str, seed: int, device: str, env: dict[str, str],
           deadline: float | None, equal_epochs: bool = False) -> dict[str, Any]:
    try:
        return study_run(workdir, spec, arm, seed, device, env, deadline, equal_epochs)
    except Exception as exc:  # noqa: BLE001 - reported in the table
        return {"key": f"{arm}-s{seed}", "arm": arm, "seed": seed, "error": f"{type(exc).__name__}: {exc}"}


if __name__ == "__main__":
    sys.exit(main())
