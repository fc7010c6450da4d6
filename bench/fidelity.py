"""Near the base hyps, which cheap measurement ranks trials as their full training does?

Benchmark 11 found that, within a search, a 15-epoch training's value at epochs 1-9 does not rank the
GA's children (Spearman with the final value about 0 to +0.4): the improvements show only once the
cosine schedule has lowered the learning rate, so a pruner deciding early decides on noise. A
*short full schedule* (the same hyps trained for ``s`` epochs, warm-up and learning-rate decay
compressed into them) is another cheap fidelity: this measures whether it ranks better.

Hyps: the base and ``--children`` children of it from hpo's GA (its default bounded mutation, as the
sampler proposes them in a study's first generation). Every hyp is trained once per schedule in
``--schedules`` (training seed 0); the base also with seeds 1-4 per schedule (the noise floor). Then:

- Spearman of each short schedule's value with the longest schedule's (promotion's view), and of the
  long training's value at epoch ``s`` with its final (the pruner's view, same epochs spent);
- replayed searches of ``--trials`` hyps drawn from the pool (base first): train all at ``s`` and
  promote the top ``k`` to the long schedule, or stop all but the top ``k`` at epoch ``s`` of the long
  one; epochs spent and best long value against training every hyp long.

    python -m bench.fidelity --jobs 2                                # CPU: 30 children, schedules 2,3,5,15 (~1 h)
    python -m bench.fidelity --device 0 --jobs 12 --deadline 150     # one CUDA GPU (MPS when present)
    python -m bench.fidelity --into-results bench/.work/fidelity.json   # into bench/results.md
    python -m bench.fidelity --quick                                 # smoke (2 children, 1+2 epochs)
    python -m bench --only fidelity                                  # section 12 of bench/results.md

Writes OUT.json (every training) and OUT.md (the tables); trainings are cached under WORKDIR/finetune/runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import REPO, fmt_num, gpu_sharing, say
from hpo.search.noise import seed_noise
from bench.finetune import NOISE_SEEDS, chosen_problem, ensure_target, finetune_spec_dict, run_one, spearman

#: Seed of the GA that proposes the children (the sampler's, not the training's).
CHILDREN_SEED = 11
#: Replayed searches per (schedule, k): random draws of the pool.
REPLAYS = 300
#: ``make bench``'s run: children of the base, schedules (the largest is the reference), hyps per search.
CHILDREN = 30
SCHEDULES = (2, 3, 5, 15)
TRIALS = 12


def children_of_base(spec: dict[str, Any], n: int, seed: int = CHILDREN_SEED) -> list[dict[str, Any]]:
    """``n`` distinct children of the base hyps from hpo's GA sampler (the study file's ``ga:`` settings)."""
    from hpo.search.samplers import create_sampler
    from hpo.spec import parse_spec

    sampler = create_sampler("ga", parse_spec(spec), seed)
    base = {k: spec["base"][k] for k in spec["search_space"]}
    seen = {json.dumps(base, sort_keys=True)}
    children: list[dict[str, Any]] = []
    while len(children) < n:
        child = {k: float(f"{float(v):.5g}") for k, v in sampler.mutate(base).items()}  # type: ignore[attr-defined]
        if (key := json.dumps(child, sort_keys=True)) not in seen:
            seen.add(key)
            children.append(child)
    return children


def plan(spec: dict[str, Any], children: int, schedules: list[int]) -> list[dict[str, Any]]:
    """Every training: the base over its seeds, then hyp by hyp (a run cut short keeps whole hyps), longest
    schedule first."""
    base = {k: spec["base"][k] for k in spec["search_space"]}
    hyps = [("base", base)] + [(f"child{i}", c) for i, c in enumerate(children_of_base(spec, children))]
    runs = []
    for name, params in hyps:
        for s in sorted(schedules, reverse=True):
            runs.append({"hyp": name, "params": params, "epochs": s, "seed": 0})
            if name == "base":  # the noise floor first: a run cut short still has it
                runs += [{"hyp": "base", "params": base, "epochs": s, "seed": seed} for seed in NOISE_SEEDS if seed]
    return runs


def analyse(runs: list[dict[str, Any]], schedules: list[int], trials: int, replays: int = REPLAYS,
            seed: int = 0) -> dict[str, Any]:
    """Noise, rank correlations and replayed promotion/pruning searches (see the module docstring)."""
    long = max(schedules)
    ok = [r for r in runs if not r.get("error") and len(r.get("values") or []) == r["epochs"]]
    by = {(r["hyp"], r["epochs"]): r for r in ok if r["seed"] == 0}
    hyps = sorted({h for h, s in by if s == long and all((h, x) in by for x in schedules)},
                  key=lambda h: (h != "base", int(h[5:]) if h.startswith("child") else 0))
    final = {(h, s): max(by[(h, s)]["values"]) for h in hyps for s in schedules}
    long_curve = {h: by[(h, long)]["values"] for h in hyps}
    noise = {s: seed_noise([r["values"] for r in ok if r["hyp"] == "base" and r["epochs"] == s])[0]
             for s in schedules}
    rows = []
    finals_long = [final[(h, long)] for h in hyps]
    for s in sorted(schedules):
        row: dict[str, Any] = {"epochs": s, "noise_std": noise[s],
                               "spread": (max(final[(h, s)] for h in hyps) - min(final[(h, s)] for h in hyps))
                               if hyps else float("nan")}
        if s != long and len(hyps) > 2:
            row["rho_short_schedule"] = spearman([final[(h, s)] for h in hyps], finals_long)
            row["rho_long_at_epoch"] = spearman([max(long_curve[h][:s]) for h in hyps], finals_long)
        rows.append(row)
    replay = _replay(hyps, final, long_curve, schedules, trials, replays, noise[long], seed) if len(hyps) > trials else []
    return {"hyps": hyps, "n_hyps": len(hyps), "long": long, "noise": {str(k): v for k, v in noise.items()},
            "rows": rows, "replay": replay, "trials": trials,
            "failed": [f"{r['hyp']}@{r['epochs']}/s{r['seed']}: {r['error']}" for r in runs if r.get("error")]}


def _replay(hyps: list[str], final: dict[tuple[str, int], float], long_curve: dict[str, list[float]],
            schedules: list[int], trials: int, replays: int, noise_long: float, seed: int) -> list[dict[str, Any]]:
    """Searches of ``trials`` hyps (base first, the rest drawn): promote / prune the top k after ``s`` epochs."""
    rng = np.random.default_rng(seed)
    long = max(schedules)
    draws = []
    others = [h for h in hyps if h != "base"]
    for _ in range(replays):
        pick = ["base"] + list(rng.choice(others, size=trials - 1, replace=False))
        draws.append(pick)
    rows = []
    for s in sorted(x for x in schedules if x != long):
        for k in sorted(k for k in {1, 2, 3, trials // 3} if 1 <= k < trials):
            for mode in ("promote", "prune"):
                saved, gap, within = [], [], []
                for pick in draws:
                    full_best = max(final[(h, long)] for h in pick)
                    if mode == "promote":  # short full schedules, the top k retrained long
                        score = {h: final[(h, s)] for h in pick}
                        cost = trials * s + k * long
                    else:  # one long training each, all but the top k stopped at epoch s
                        score = {h: max(long_curve[h][:s]) for h in pick}
                        cost = trials * s + k * (long - s)
                    top = sorted(pick, key=lambda h: -score[h])[:k]
                    best = max(final[(h, long)] for h in top)
                    saved.append(1 - cost / (trials * long))
                    gap.append(best - full_best)
                    within.append(best >= full_best - noise_long)
                rows.append({"mode": mode, "epochs": s, "k": k, "saved": float(np.median(saved)),
                             "gap_median": float(np.median(gap)), "gap_p10": float(np.percentile(gap, 10)),
                             "within_noise": float(np.mean(within))})
    return rows


def render(result: dict[str, Any]) -> str:
    """The tables as markdown."""
    a = result["analysis"]
    long = a["long"]
    lines = [f"# Fidelity near the base: {a['n_hyps']} hyps (the base and GA children), {device_text(result['device'])}",
             "", f"Trainings: {len(result['runs'])} of {result.get('planned', len(result['runs']))} planned, "
             f"{result['seconds']:.0f} s; failed: {len(a['failed'])}", "",
             f"| schedule (epochs) | seed std of the value | hyp spread | ρ of the short schedule with the {long}-epoch "
             f"value | ρ of the {long}-epoch training's best up to that epoch with its final |",
             "|---|---|---|---|---|"]
    for r in a["rows"]:
        lines.append(f"| {r['epochs']} | {fmt_num(r['noise_std'], 4)} | {fmt_num(r['spread'], 4)} | "
                     f"{fmt_num(r.get('rho_short_schedule'), 2)} | {fmt_num(r.get('rho_long_at_epoch'), 2)} |")
    if a["replay"]:
        lines += ["", f"Replayed searches of {a['trials']} hyps ({REPLAYS} draws, base first): keep the top k after "
                  f"s epochs; 'promote' retrains them for {long} epochs from scratch, 'prune' lets them go on. "
                  f"Within noise: best no more than the {long}-epoch seed std "
                  f"({fmt_num(float(a['noise'][str(long)]), 4)}) below training every hyp {long} epochs.", "",
                  "| mode | s | k | epochs saved | best − all long (median) | 10th percentile | within noise |",
                  "|---|---|---|---|---|---|---|"]
        for r in a["replay"]:
            lines.append(f"| {r['mode']} | {r['epochs']} | {r['k']} | {r['saved']:.0%} | {r['gap_median']:+.4f} | "
                         f"{r['gap_p10']:+.4f} | {r['within_noise']:.0%} |")
    if a["failed"]:
        lines += ["", "Failed: " + "; ".join(a["failed"][:5])]
    return "\n".join(lines) + "\n"


def run(*, children: int, schedules: list[int], device: str, jobs: int, workdir: Path, out: Path,
        trials: int, quick: bool = False, deadline: float | None = None) -> dict[str, Any]:
    """Train what is missing (cached), analyse, write OUT.json/.md after every training."""
    from hpo.offline import configure_offline

    configure_offline()
    from bench.pretrain import COMMITTED

    problem = chosen_problem()
    specs = {}
    for s in schedules:
        p = {**problem, "train": {**problem["train"], "epochs": s}}
        specs[s] = finetune_spec_dict(ensure_target(workdir, p), COMMITTED, p)
        specs[s]["prune_after"] = 1  # no pruner here; the spec only needs it within the epochs
        if device != "cpu":
            specs[s]["train"]["workers"] = 2
    runs = plan(specs[max(schedules)], children, schedules)
    if quick:
        runs = [r for r in runs if r["seed"] in (0, 1)]
    say(f"fidelity: {len(runs)} trainings ({children} children + base, schedules {schedules}), device {device}, "
        f"{jobs} at a time")
    env: dict[str, str] = {}  # MPS's pipe, when trainings share a GPU
    started = time.perf_counter()
    stop_at = time.time() + deadline if deadline else None
    done: list[dict[str, Any]] = []

    def one(r: dict[str, Any]) -> dict[str, Any]:
        if stop_at and time.time() > stop_at:
            return {**r, "skipped": "deadline"}
        # 1 torch thread per training on CPU, 2 beside a GPU (many trainings share its host's cores)
        res = run_one(workdir, specs[r["epochs"]], r, 1 if device == "cpu" else 2, device, env=env)
        return {**r, **{k: res.get(k) for k in ("values", "error", "key", "cached", "train_seconds")}}

    def write() -> dict[str, Any]:
        result = {"device": device, "seconds": round(time.perf_counter() - started, 1), "schedules": schedules,
                  "children": children, "planned": len(runs), "runs": done,
                  "analysis": analyse(done, schedules, trials)}
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".json").write_text(json.dumps(result, indent=1, default=str) + "\n")
        out.with_suffix(".md").write_text(render(result))
        return result

    with gpu_sharing(device != "cpu", jobs, workdir, env), ThreadPoolExecutor(max(1, jobs)) as pool:
        for res in pool.map(one, runs):
            if not res.get("skipped"):
                done.append(res)
            if len(done) % max(1, jobs) == 0:
                write()
    return write()


def device_text(device: str) -> str:
    return "CPU, 1 thread per training, 2 side by side" if device == "cpu" else f"CUDA GPU {device}"


def fill_section(sec: Any, result: dict[str, Any], *, quick: bool = False) -> None:
    """A run as a bench section: setup, the two tables, the target, notes, raw numbers."""
    a = result["analysis"]
    long = a["long"]
    shorts = [s for s in result["schedules"] if s != long]
    noise_long = float(a["noise"][str(long)])
    sec.setup = [
        f"Problem P1 (section 8: the pasture-pretrained yolov5n-p6 fine-tuned on the farm twin, 128 px, batch 8). "
        f"Hyps: the base and {a['n_hyps'] - 1} children of it from hpo's GA (bounded mutation, its default; "
        f"sampler seed {CHILDREN_SEED}), as a study's first generation proposes them: the neighbourhood where "
        "benchmark 11 found that a 15-epoch training's first epochs do not rank trials.",
        f"Each hyp trained once per schedule of {', '.join(map(str, result['schedules']))} epochs (training seed 0; "
        "warm-up and cosine learning-rate decay run within the schedule), the base also with seeds 1-4 "
        f"(noise floor). {device_text(result['device'])}; {len(result['runs'])} trainings in "
        f"{result['seconds'] / 60:.0f} min.",
        f"Replay: {REPLAYS} searches of {a['trials']} hyps drawn from the pool (base first). 'promote': every hyp "
        f"trained s epochs, the top k trained again for {long} epochs (cost {a['trials']}·s + k·{long}); 'prune': "
        f"every hyp starts its {long}-epoch training, all but the top k by their best up to epoch s are stopped "
        f"there (cost {a['trials']}·s + k·({long} − s)). Against: every hyp trained {long} epochs. 'Within noise': "
        f"best no more than the {long}-epoch seed std ({fmt_num(noise_long, 4)}) below.",
    ]
    sec.table(f"Do short schedules rank the hyps? {a['n_hyps']} hyps, Spearman ρ with the {long}-epoch value",
              ["epochs", "seed std of the value", "hyp spread", f"short full schedule: ρ with the {long}-epoch value",
               f"{long}-epoch training's best up to that epoch: ρ with its final"],
              [[r["epochs"], fmt_num(r["noise_std"], 4), fmt_num(r["spread"], 4),
                fmt_num(r.get("rho_short_schedule"), 2), fmt_num(r.get("rho_long_at_epoch"), 2)] for r in a["rows"]])
    if a["replay"]:
        sec.table(f"Replayed searches ({REPLAYS} draws of {a['trials']} hyps; medians)",
                  ["mode", "s", "k", "epochs saved", "best − all long", "10th percentile", "within noise"],
                  [[r["mode"], r["epochs"], r["k"], f"{r['saved']:.0%}", f"{r['gap_median']:+.4f}",
                    f"{r['gap_p10']:+.4f}", f"{r['within_noise']:.0%}"] for r in a["replay"]])
    def row_text(r: dict[str, Any]) -> str:
        return f"{r['mode']} s={r['epochs']} k={r['k']}: {r['saved']:.0%} saved, within noise in {r['within_noise']:.0%}"

    hits = [r for r in a["replay"] if r["saved"] >= 0.6 and r["within_noise"] >= 0.9]
    saving = [r for r in a["replay"] if r["saved"] >= 0.6]
    safe = [r for r in a["replay"] if r["within_noise"] >= 0.9]
    closest = ([max(saving, key=lambda r: r["within_noise"])] if saving else []) + (
        [max(safe, key=lambda r: r["saved"])] if safe else [])
    sec.target("near the base, a cheap fidelity (short schedule or first epochs) saves ≥ 60 % of the epochs with "
               "the best within noise in ≥ 90 % of replayed searches",
               ", ".join(map(row_text, hits)) or ("closest: " + "; ".join(map(row_text, closest)) if closest
                                                   else "no row"),
               None if quick else bool(hits))
    rows = {r["epochs"]: r for r in a["rows"]}
    for s in shorts:
        r = rows[s]
        if r.get("rho_short_schedule") is None:
            continue
        sec.notes.append(f"{s} epochs: a {s}-epoch full schedule ranks the hyps with ρ {r['rho_short_schedule']:+.2f} "
                         f"against the {long}-epoch value, the first {s} epochs of the {long}-epoch training with "
                         f"ρ {r['rho_long_at_epoch']:+.2f}; seed std {fmt_num(r['noise_std'], 4)} against "
                         f"{fmt_num(noise_long, 4)} at {long} epochs.")
    sec.raw = {k: v for k, v in result.items() if k != "runs"}
    sec.raw["runs"] = [{k: r.get(k) for k in ("hyp", "params", "epochs", "seed", "values", "train_seconds", "error")}
                       for r in result["runs"]]


class Fidelity:
    """``make bench`` section: the run above on this machine's CPU (about an hour), or ``--into-results`` of one."""

    NAME = "fidelity"
    TITLE = "12. Fidelity near the base: short full schedules against a long training's first epochs"

    @staticmethod
    def run(ctx: Any) -> Any:
        from bench.context import begin, end

        sec, t0 = begin(Fidelity.NAME, Fidelity.TITLE)
        quick = bool(ctx.quick)
        result = run(children=2 if quick else CHILDREN, schedules=[1, 2] if quick else list(SCHEDULES),
                     device="cpu", jobs=ctx.jobs, workdir=ctx.workdir, out=ctx.workdir / "fidelity",
                     trials=2 if quick else TRIALS, quick=quick)
        fill_section(sec, result, quick=quick)
        return end(sec, t0)


def into_results(result: dict[str, Any], notes: list[str] | None = None) -> int:
    """Write a finished run (OUT.json) into bench/results.json as the ``fidelity`` section; re-render results.md."""
    from bench.report import import_run

    import_run(Fidelity.NAME, Fidelity.TITLE, started=time.strftime("%Y-%m-%d %H:%M %Z"), seconds=result["seconds"],
               module="bench.fidelity", notes=notes, fill=lambda sec: fill_section(sec, result))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.fidelity", description=__doc__.split("\n\n")[0])
    p.add_argument("--children", type=int, default=CHILDREN, help="children of the base from hpo's GA")
    p.add_argument("--schedules", default=",".join(map(str, SCHEDULES)),
                   help="epochs per training, comma-separated; the largest is the long (reference) one")
    p.add_argument("--trials", type=int, default=TRIALS, help="hyps per replayed search")
    p.add_argument("--device", default="cpu", help="cpu or a CUDA device index")
    p.add_argument("--jobs", type=int, default=2, help="trainings side by side")
    p.add_argument("--deadline", type=float, default=None, metavar="SECONDS",
                   help="start no training after this many seconds (a lent GPU's time limit)")
    p.add_argument("--quick", action="store_true", help="smoke: 2 children, schedules 1,2, base seeds 0-1")
    p.add_argument("--workdir", type=Path, default=REPO / "bench" / ".work")
    p.add_argument("--out", type=Path, default=None, help="results prefix (default WORKDIR/fidelity)")
    p.add_argument("--into-results", type=Path, default=None, metavar="JSON",
                   help="write a finished run's OUT.json into bench/results.json/.md instead of running")
    p.add_argument("--note", action="append", default=[], help="with --into-results: a note under the section")
    args = p.parse_args(argv)
    if args.into_results:
        return into_results(json.loads(args.into_results.read_text()), args.note)
    schedules = [1, 2] if args.quick else sorted({int(x) for x in args.schedules.split(",")})
    children = 2 if args.quick else args.children
    out = (args.out or args.workdir / ("fidelity_quick" if args.quick else "fidelity")).resolve()
    result = run(children=children, schedules=schedules, device=args.device, jobs=args.jobs,
                 workdir=args.workdir.resolve(), out=out, trials=min(args.trials, children), quick=args.quick,
                 deadline=args.deadline)
    print(render(result))
    return 1 if result["analysis"]["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
