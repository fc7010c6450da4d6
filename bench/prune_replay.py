"""Benchmark 11: pruners replayed on recorded 15-epoch fine-tuning curves (how much can pruning save here?).

Benchmark 9 found pruning costly on the demo's 5-epoch problem: its first epochs do not rank hyps. Is
that the problem's shortness? This trains the chosen problem (P1) for 15 epochs instead of 5: the base
hyps over 5 seeds, the lr0 points and 40 random points of the search space (:func:`bench.finetune.ranks`,
cached trainings), then replays those curves through real Optuna pruners, configured as hpo's study
files configure them (:mod:`hpo.search.pruners`), in many random trial orders:

- a study of ``TRIALS`` trials, the base hyps first (hpo enqueues them first), the others drawn at random
  from the recorded points; each trial reports its recorded values epoch by epoch, the pruner decides
  after each as it does in a worker, a finished trial's value is its best epoch (hpo's objective);
- **same trials**: epochs trained and the best found, against the same trials without pruning;
- **same epochs**: trials drawn until the epochs of ``TRIALS`` unpruned trials are spent: the best found
  for the same GPU-hours, the way a pruner is meant to pay.

What a replay does not show: a sampler learning from pruned trials (trials here are random points, as
with the random sampler), and seed-to-seed noise within one study (each point has one recorded curve).

    python -m bench --only prune_replay                 # into bench/results.md (about 15 min of training)
    python -m bench.prune_replay replay RANKS.json      # the table alone, from `bench.finetune ranks --out`
    python -m bench.prune_replay confirm RUN.json       # a real finetune_search run into the same section
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Callable

from bench.common import fmt_num, say
from bench.context import Context, Section, begin, end

EPOCHS = 15
RANDOM_POINTS = 40
TRIALS = 12
ORDERS = 300

def _configs(per_epoch_noise: list[float] | None = None) -> dict[str, Callable[[int, float], Any]]:
    """label -> pruner factory (given the epochs and the measured noise std). The min resources (prune_after)
    cover what benchmark 9 used (1) up to two thirds of the trial; reduction factors Optuna's default 3, and 2.
    With ``per_epoch_noise`` (the seed std of the best value up to each epoch, ``noise.per_epoch``), the
    reference pruners also with that margin."""
    import optuna

    from hpo.search.pruners import ReferenceCurvePruner

    def hyperband(r: int, eta: int) -> Callable[[int, float], Any]:
        return lambda epochs, noise: optuna.pruners.HyperbandPruner(min_resource=r, max_resource=epochs,
                                                                    reduction_factor=eta)

    def median(r: int) -> Callable[[int, float], Any]:
        return lambda epochs, noise: optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=r)

    def reference(kind: str, r: int, per_epoch: bool = False) -> Callable[[int, float], Any]:
        return lambda epochs, noise: ReferenceCurvePruner(kind, margin=noise if not per_epoch else per_epoch_noise,
                                                          min_epochs=r)

    configs: dict[str, Callable[[int, float], Any]] = {}
    for r in (1, 3, 5, 8, 10):
        configs[f"hyperband r={r} η=3"] = hyperband(r, 3)
    for r in (3, 5):
        configs[f"hyperband r={r} η=2"] = hyperband(r, 2)
    for r in (1, 5, 10):
        configs[f"median warm-up {r}"] = median(r)
    for r in (1, 5, 10):
        configs[f"base curve from {r}"] = reference("base", r)
        configs[f"incumbent curve from {r}"] = reference("incumbent", r)
    if per_epoch_noise:
        configs["base curve, per-epoch noise"] = reference("base", 1, per_epoch=True)
        configs["incumbent curve, per-epoch noise"] = reference("incumbent", 1, per_epoch=True)
    return configs


def replay(curves: list[list[float]], order: list[int], pruner: Any, *, base: int | None,
           epoch_budget: int | None = None, snapshot_after: int | None = None) -> dict[str, Any]:
    """One study replayed: the trials of ``order`` (indices into ``curves``) one after another.

    Without ``epoch_budget`` every trial of ``order`` runs; with it, trials run until that many epochs
    are spent (a trial started within the budget trains as far as its pruner lets it). With
    ``snapshot_after``, ``"snapshot"`` holds the epochs and best after that many trials: what a study of
    only those trials would have ended with (a pruner decides on the trials so far, never on later ones).
    """
    import optuna

    from hpo.attrs import BASE_TRIAL

    # A fixed name: Optuna's Hyperband assigns brackets by hashing the study's name with the trial number.
    study = optuna.create_study(study_name="replay", direction="maximize", pruner=pruner,
                                sampler=optuna.samplers.RandomSampler(seed=0))
    epochs = finished = started = 0
    snapshot = None
    for idx in order:
        if epoch_budget is not None and epochs >= epoch_budget:
            break
        trial = study.ask()
        started += 1
        if idx == base:
            trial.set_user_attr(BASE_TRIAL, True)
        values = curves[idx]
        pruned = False
        for step, value in enumerate(values, start=1):
            trial.report(value, step)
            epochs += 1
            if step < len(values) and trial.should_prune():
                pruned = True
                break
        if pruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, max(values))
            finished += 1
        if started == snapshot_after:
            snapshot = {"epochs": epochs, "best": study.best_value if finished else None}
    out = {"epochs": epochs, "trials": started, "finished": finished,
           "best": study.best_value if finished else None}
    if snapshot_after is not None:
        out["snapshot"] = snapshot
    return out


def simulate(curves: list[list[float]], base: int, noise: float, *, trials: int = TRIALS, orders: int = ORDERS,
             seed: int = 0, configs: dict[str, Callable[[int, float], Any]] | None = None,
             per_epoch_noise: list[float] | None = None) -> dict[str, Any]:
    """Every pruner config over the same ``orders`` random trial orders; per config the savings and bests."""
    import optuna
    import numpy as np

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = np.random.default_rng(seed)
    others = [i for i in range(len(curves)) if i != base]
    epochs = len(curves[base])
    draws = []
    for _ in range(orders):
        rest = [int(i) for i in rng.permutation(others)]
        draws.append([base] + rest)  # the first TRIALS are the study; the rest feed the same-epochs variant
    none_best = [max(max(curves[i]) for i in d[:trials]) for d in draws]
    results: dict[str, Any] = {"none": {"epochs_saved": [0.0] * orders, "diff_same_trials": [0.0] * orders,
                                        "diff_same_epochs": [0.0] * orders, "trials_same_epochs": [trials] * orders}}
    for label, make in (configs or _configs(per_epoch_noise)).items():
        saved, diff_trials, diff_epochs, n_epochs_trials = [], [], [], []
        for d, ref in zip(draws, none_best):
            # One replay serves both views: pruning only saves epochs, so the budget of `trials` unpruned
            # trials always reaches trial `trials`, and the study up to there is the same-trials study.
            budget = replay(curves, d, make(epochs, noise), base=base, epoch_budget=trials * epochs,
                            snapshot_after=trials)
            same = budget["snapshot"]
            saved.append(1 - same["epochs"] / (trials * epochs))
            diff_trials.append((same["best"] if same["best"] is not None else 0.0) - ref)
            diff_epochs.append((budget["best"] if budget["best"] is not None else 0.0) - ref)
            n_epochs_trials.append(budget["trials"])
        results[label] = {"epochs_saved": saved, "diff_same_trials": diff_trials, "diff_same_epochs": diff_epochs,
                          "trials_same_epochs": n_epochs_trials}
    return results


def summarise(results: dict[str, Any], noise: float) -> list[dict[str, Any]]:
    rows = []
    for label, r in results.items():
        rows.append({
            "pruner": label,
            "epochs_saved": statistics.median(r["epochs_saved"]),
            "diff_same_trials": statistics.median(r["diff_same_trials"]),
            "within_noise_same_trials": sum(d >= -noise for d in r["diff_same_trials"]) / len(r["diff_same_trials"]),
            "diff_same_epochs": statistics.median(r["diff_same_epochs"]),
            "ahead_same_epochs": sum(d > noise for d in r["diff_same_epochs"]) / len(r["diff_same_epochs"]),
            "behind_same_epochs": sum(d < -noise for d in r["diff_same_epochs"]) / len(r["diff_same_epochs"]),
            "trials_same_epochs": statistics.median(r["trials_same_epochs"]),
        })
    return rows


def replay_notes(analysis: dict[str, Any], rows: list[dict[str, Any]], *, pool: int, trials: int) -> list[str]:
    """What the figures say, from the figures: when epochs start to rank, which pruner pays per epoch."""
    notes = []
    per_epoch = analysis["per_epoch"]
    ranks_from = next((e["epoch"] for e in per_epoch if e["spearman_vs_final"] >= 0.7), None)
    if ranks_from is not None:
        before = [e["noise_std"] for e in per_epoch if e["epoch"] < ranks_from] or [float("nan")]
        notes.append(f"Intermediate values rank the hyps (Spearman ρ ≥ 0.7 with the final value) from epoch "
                     f"{ranks_from} of {len(per_epoch)}; before it the base hyps' own value swings between seeds "
                     f"by a std of {min(before):.3f}-{max(before):.3f} (the final value: "
                     f"{analysis['noise_std']:.4f}): a pruner deciding on one epoch's value there decides on noise.")
    pruned = [r for r in rows if r["pruner"] != "none"]
    if pruned:
        best = max(pruned, key=lambda r: (r["ahead_same_epochs"] - r["behind_same_epochs"], r["epochs_saved"]))
        notes.append(f"Per epoch (the same epochs as {trials} unpruned trials), {best['pruner']} does best: ahead of "
                     f"no pruning in {best['ahead_same_epochs']:.0%} of the orders, behind in "
                     f"{best['behind_same_epochs']:.0%}, with {best['trials_same_epochs']:.0f} trials for the epochs "
                     f"of {trials}; the most epochs saved with the best within noise in ≥ 90 % of orders: "
                     + (", ".join(f"{r['pruner']} ({r['epochs_saved']:.0%})" for r in sorted(
                         (r for r in pruned if r["within_noise_same_trials"] >= 0.9),
                         key=lambda r: -r["epochs_saved"])[:3]) or "none") + ".")
    capped = [r["pruner"] for r in pruned if r["trials_same_epochs"] >= pool]
    if capped:
        notes.append(f"The same-epochs variant draws from {pool} recorded points without repeating one: "
                     f"{', '.join(capped)} ran out of points before its epochs (its figure is a lower bound).")
    return notes


class PruneReplay:
    NAME = "prune_replay"
    TITLE = "11. Pruning replayed on 15-epoch fine-tuning curves"

    @staticmethod
    def run(ctx: Context) -> Section:
        from bench.finetune import ranks

        sec, t0 = begin(PruneReplay.NAME, PruneReplay.TITLE)
        epochs, points, trials, orders = (2, 1, 3, 5) if ctx.quick else (EPOCHS, RANDOM_POINTS, TRIALS, ORDERS)
        measured = ranks(epochs=epochs, random_count=points, jobs=ctx.jobs, workdir=ctx.workdir, quick=ctx.quick)
        runs = [r for r in measured["runs"] if not r.get("error") and len(r.get("values", [])) == epochs]
        hyps = [r for r in runs if r["kind"] != "seed" or r["seed"] == 0]
        base = next(i for i, r in enumerate(hyps) if r["kind"] == "seed")
        curves = [r["values"] for r in hyps]
        a = measured["analysis"]
        noise = a["noise_std"]
        per_epoch = [e["best_so_far_std"] for e in a["per_epoch"]]
        results = simulate(curves, base, noise, trials=min(trials, len(curves)), orders=orders,
                           per_epoch_noise=per_epoch if all(x > 0 for x in per_epoch) else None)
        rows = summarise(results, noise)
        sec.setup = [
            f"Trainings: problem P1 (section 8: the pasture-pretrained yolov5n-p6 fine-tuned on the farm twin, "
            f"128 px, batch 8) for {epochs} epochs instead of 5: the base hyps over 5 training seeds, the lr0 "
            f"points and {points} random points of the search space ({len(hyps)} distinct hyps, "
            f"`python -m bench.finetune ranks`, cached in bench/.work/finetune/runs/).",
            f"Replay: {orders} random orders of the recorded points, each a study of {min(trials, len(curves))} "
            "trials with the base hyps first; Optuna's own pruners (configured as hpo configures them: "
            "`prune_after` is Hyperband's min resource and the median pruner's warm-up) and hpo's reference-curve "
            f"pruners (margin: the seed std of the final value, {fmt_num(noise, 4)}) decide after every epoch "
            "on the recorded values. A finished trial's value is its best epoch.",
            "Same trials: the study's trials with the pruner against the same trials without it. Same epochs: "
            "trials drawn until the epochs of the unpruned study are spent, best against the unpruned best. "
            "'Within noise': best no more than one seed std below the unpruned best; 'ahead'/'behind': by "
            "more than one seed std.",
        ]
        sec.table(f"Does epoch k rank hyps? {len(hyps)} hyps, {epochs} epochs",
                  ["epoch", "seed std", "seed std of the best so far", "hyp spread", "spread / std",
                   "Spearman ρ with final"],
                  [[e["epoch"], fmt_num(e["noise_std"], 4), fmt_num(e.get("best_so_far_std"), 4),
                    fmt_num(e["spread"], 4), f"{e['ratio']:.1f}", f"{e['spearman_vs_final']:.2f}"]
                   for e in a["per_epoch"]])
        sec.table(f"Pruners replayed ({orders} trial orders; medians)",
                  ["pruner", "epochs saved", "best − unpruned (same trials)", "best within noise",
                   "trials for the same epochs", "best − unpruned (same epochs)", "ahead / behind"],
                  [[r["pruner"], f"{r['epochs_saved']:.0%}", f"{r['diff_same_trials']:+.4f}",
                    f"{r['within_noise_same_trials']:.0%}", f"{r['trials_same_epochs']:.0f}",
                    f"{r['diff_same_epochs']:+.4f}", f"{r['ahead_same_epochs']:.0%} / {r['behind_same_epochs']:.0%}"]
                   for r in rows])
        hits = [r for r in rows if r["pruner"] != "none" and r["epochs_saved"] >= 0.6
                and r["within_noise_same_trials"] >= 0.9]
        sec.target("replayed on random points: a pruner trains ≥ 60 % fewer epochs with the best within noise "
                   "(in ≥ 90 % of orders)",
                   ", ".join(f"{r['pruner']}: {r['epochs_saved']:.0%} saved, within noise in "
                             f"{r['within_noise_same_trials']:.0%}" for r in hits) or "no configuration",
                   None if ctx.quick else bool(hits))
        sec.notes.extend(replay_notes(a, rows, pool=len(curves) - 1, trials=min(trials, len(curves))))
        sec.raw = {"noise_std": noise, "base_index": base, "curves": curves,
                   "hyps": [r["params"] for r in hyps], "rows": rows, "analysis": a}
        say(f"prune replay: {len(rows)} configurations over {orders} orders")
        return end(sec, t0)


def real_targets(run: dict[str, Any], tag: str) -> list[dict[str, Any]]:
    """The issue's two pruning targets, judged on real studies: (1) a pruner trains >= 60 % fewer epochs than
    the same sampler without it, over the same trials, with a best within the noise (median difference no
    more than one seed std below); (2) the GA with a pruner ahead of the GA without it within the same
    epochs (median of the seeds' bests)."""
    import statistics

    from bench.finetune_search import analyse

    a = analyse(run)
    noise = float((run["spec"].get("noise") or {}).get("std") or 0.0)
    targets = []
    pruning = a.get("pruning", {})
    if pruning:
        hits = {arm: p for arm, p in pruning.items() if p["epochs_saved"] >= 0.6 and p["best_diff"][0] >= -noise}
        measured = "; ".join(f"{arm}: {p['epochs_saved']:.0%} fewer, best {p['best_diff'][0]:+.4f}"
                             for arm, p in pruning.items())
        targets.append({"target": f"{tag}a pruner trains ≥ 60 % fewer epochs than none, best within noise "
                                  f"(≥ −{noise:.4f})", "measured": measured, "met": bool(hits)})
    ga_none = a["arms"].get("ga-none")
    for arm, row in a["arms"].items():
        if arm.startswith("ga-") and arm != "ga-none" and ga_none and all(x is not None for x in row["within"]):
            diff = statistics.median(row["within"]) - statistics.median(ga_none["within"])
            targets.append({"target": f"{tag}{arm} ahead of ga-none within the same epochs",
                            "measured": f"median best {statistics.median(row['within']):.4f} vs "
                                        f"{statistics.median(ga_none['within']):.4f} ({diff:+.4f})",
                            "met": diff > 0})
    return targets


def confirm(run_json: Path, notes: list[str] | None = None, results_path: Path | None = None,
            label: str = "", merge_json: Path | None = None) -> Path:
    """Add a real search run (``python -m bench.finetune_search --epochs 15 ...``) to the stored section 11:
    the replay says which pruner should pay; real studies, where a sampler learns from what was pruned, say
    whether it does. Its tables are benchmark 9's (:func:`bench.finetune_search.result_tables`); a run
    added again under the same ``label`` replaces its earlier tables and notes."""
    import json

    from bench.common import REPO
    from bench.finetune_search import pruned_budget_text, result_notes, result_tables
    from bench.report import store_section

    run = json.loads(run_json.read_text())
    if merge_json is not None:  # the arms an earlier run has and this one lacks (benchmark 9's merge rules)
        from bench.finetune_search import merge

        run = merge(run, json.loads(merge_json.read_text()))
    results_path = results_path or REPO / "bench" / "results.json"
    sec = json.loads(results_path.read_text())["sections"][PruneReplay.NAME]
    spec = run["spec"]
    tag = f"Real studies{f' ({label})' if label else ''}: "
    sec["tables"] = [t for t in sec["tables"] if not t.get("title", "").startswith(tag)]
    for table in result_tables(run):
        sec["tables"].append({**table, "title": tag + (table.get("title") or "")})
    noise = spec.get("noise") or {}
    margin = ("the seed std of the best value up to each epoch (`noise.per_epoch`)" if noise.get("per_epoch")
              else f"the final value's seed std, {noise.get('std')}, at every epoch")
    sec["setup"] = [x for x in sec["setup"] if not x.startswith(tag)] + [
        f"{tag}`python -m bench.finetune_search --epochs {spec['train']['epochs']} --trials {spec['trials']}"
        f"{' --equal-epochs' if run.get('equal_epochs') else ''}` "
        f"({', '.join(run['arms'])}; seeds {', '.join(map(str, run['seeds']))}; {run['seconds'] / 60:.0f} min on "
        f"{run['device']}{'; arms merged from ' + ', '.join(m['finished'] for m in run['merged']) if run.get('merged') else ''}), "
        f"each a real `hpo worker` study; the reference pruners' margin: {margin}. {pruned_budget_text(run)} "
        "and are compared within the epochs of the unpruned arms."]
    sec["targets"] = [t for t in sec.get("targets", []) if not t["target"].startswith(tag)]
    sec["targets"] += real_targets(run, tag)
    sec["notes"] = [n for n in sec["notes"] if not n.startswith(tag)]
    sec["notes"] += [tag + n for n in (result_notes(run) + list(notes or []))]
    kept = {k: v for k, v in run.items() if k != "runs"}
    kept["runs"] = [{k: v for k, v in r.items() if k != "trials"} for r in run["runs"]]
    sec.setdefault("raw", {}).setdefault("confirm", {})[label] = kept
    return store_section(sec, results_path)


def main(argv: list[str] | None = None) -> int:
    """Replay a ranks JSON without the suite, or add a real run to the stored section (``confirm``)."""
    import argparse
    import json

    from bench.finetune import seed_noise

    p = argparse.ArgumentParser(prog="python -m bench.prune_replay")
    sub = p.add_subparsers(dest="cmd", required=True)
    rp = sub.add_parser("replay", help="replay `python -m bench.finetune ranks --out` curves and print the table")
    rp.add_argument("ranks_json", type=Path)
    rp.add_argument("--orders", type=int, default=ORDERS)
    rp.add_argument("--trials", type=int, default=TRIALS)
    cf = sub.add_parser("confirm", help="add a finetune_search run's tables to section 11 of bench/results.md")
    cf.add_argument("run_json", type=Path)
    cf.add_argument("--note", action="append", default=[])
    cf.add_argument("--label", default="", help="names the run's tables; the same label replaces them")
    cf.add_argument("--merge", type=Path, default=None, metavar="JSON",
                    help="an earlier finetune_search run whose arms this one lacks (e.g. the unpruned ones)")
    args = p.parse_args(argv)
    if args.cmd == "confirm":
        print(f"section 11 updated: {confirm(args.run_json, args.note, label=args.label, merge_json=args.merge)}")
        return 0
    measured = json.loads(args.ranks_json.read_text())
    runs = [r for r in measured["runs"] if not r.get("error")]
    hyps = [r for r in runs if r["kind"] != "seed" or r["seed"] == 0]
    base = next(i for i, r in enumerate(hyps) if r["kind"] == "seed")
    noise, per_epoch = seed_noise(runs)
    rows = summarise(simulate([r["values"] for r in hyps], base, noise, trials=args.trials, orders=args.orders,
                              per_epoch_noise=per_epoch), noise)
    for r in rows:
        print(f"{r['pruner']:<26} saved {r['epochs_saved']:.0%}  same trials {r['diff_same_trials']:+.4f} "
              f"within {r['within_noise_same_trials']:.0%}  same epochs: {r['trials_same_epochs']:.0f} trials "
              f"{r['diff_same_epochs']:+.4f} ahead {r['ahead_same_epochs']:.0%} behind {r['behind_same_epochs']:.0%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
