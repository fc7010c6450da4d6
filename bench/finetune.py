"""A fine-tuning problem where hyps matter: noise floor vs the spread between good and bad hyps.

The demo trains from scratch and every trial scores ~0 for its first epochs: samplers and pruners
cannot be told apart on it. Here a study fine-tunes the pasture-pretrained yolov5n-p6
(:mod:`bench.pretrain`) on a farm twin (a domain shift: other backgrounds, coats and sizes; in the
chosen problem also night-time infrared frames), as real users fine-tune COCO weights. Before any sampler is compared on it, the problem must show signal:

- **noise floor**: the base hyps trained with several training seeds (``seed=``), std of the objective;
- **spread**: the objective of clearly different hyps (lr0 over four decades, a handful of random
  points of the search space), all with training seed 0; spread = best - worst;
- **per epoch**: the same two at every epoch, and the rank correlation of each epoch's value with
  the final one (what a pruner relies on).

Every *problem* (data size, epochs, image size) tried is kept in :data:`PROBLEMS` in the order it
was tried, and every one is measured and reported, so the record shows why the final one was chosen.

    python -m bench --only pretrain,finetune          # into bench/results.md
    python -m bench.finetune run --spec S --params P --seed N --save-dir D --out O   # one training
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import statistics
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from bench.common import REPO, child_env, fmt_num, run_measured, say, tail
from bench.context import Context, Section, begin, end

FINETUNE_YAML = REPO / "studies" / "finetune.yaml"
RATIO_TARGET = 5.0

#: Problems in the order they were tried; :data:`CHOSEN` is the one benchmark 4 and the demo run.
#: target: the twin fine-tuned on (`hpo data synth` options) and its split (validation: fold 4);
#: base: base hyps that differ from studies/finetune.yaml's (every problem states its warm-up).
PROBLEMS: list[dict[str, Any]] = [
    {"name": "P1", "why": "the demo's farm twin (make demo), mini split, 5 epochs at 128 px",
     "target": {"cows": 240, "pigs": 80, "scale": 0.1, "seed": 0, "style": "farm"}, "split": "mini",
     "train": {"epochs": 5, "imgsz": 128, "batch": 8}, "base": {"warmup_epochs": 3.0}},
    {"name": "P2", "why": "stronger shift: the same farm scenes as night-time IR frames (`--style night`)",
     "target": {"cows": 240, "pigs": 80, "scale": 0.1, "seed": 0, "style": "night"}, "split": "mini",
     "train": {"epochs": 5, "imgsz": 128, "batch": 8}, "base": {"warmup_epochs": 3.0}},
    {"name": "P3", "why": "P2 with a 1-epoch warm-up in the base: 3 of 5 epochs of warm-up (bias lr from 0.1) "
                          "shook the pretrained head, most of P2's seed-to-seed noise",
     "target": {"cows": 240, "pigs": 80, "scale": 0.1, "seed": 0, "style": "night"}, "split": "mini",
     "train": {"epochs": 5, "imgsz": 128, "batch": 8}, "base": {"warmup_epochs": 1.0}},
]

#: The problem benchmark 4 (bench/finetune_search.py) and the demo (studies/demo.yaml) run: P1, the farm
#: twin. P2, the night twin of studies/finetune.yaml, was chosen first (7.9x on the first build of the
#: pretrained weights) and fails the >= 5x test on the committed checkpoint (3.7x: seed std 0.127).
CHOSEN = "P1"


def chosen_problem() -> dict[str, Any]:
    return next(p for p in PROBLEMS if p["name"] == CHOSEN)


NOISE_SEEDS = (0, 1, 2, 3, 4)
LR0_POINTS = (1e-4, 1e-3, 1e-2, 3e-2, 1e-1)
RANDOM_POINTS = 6
RANDOM_SEED = 2026


def finetune_spec_dict(data_yaml: Path, weights: Path, problem: dict[str, Any],
                       study_file: Path = FINETUNE_YAML) -> dict[str, Any]:
    """``study_file`` (studies/finetune.yaml) with this machine's data and weights and the problem's training size."""
    spec = yaml.safe_load(study_file.read_text())
    spec["data"] = str(data_yaml.resolve())
    spec["weights"] = str(weights.resolve())
    spec["train"].update(problem["train"])
    spec["train"]["nbs"] = spec["train"]["batch"]
    spec["base"].update(problem.get("base", {}))
    spec.pop("retrain", None)
    return spec


def ensure_target(workdir: Path, problem: dict[str, Any]) -> Path:
    """The problem's target twin, built once per set of synth options; returns its data yaml."""
    from bench.pretrain import build_data

    t = problem["target"]
    key = hashlib.sha256(json.dumps(t, sort_keys=True).encode()).hexdigest()[:10]
    root = workdir / "finetune" / f"data-{key}"
    done = root / "done.json"
    if not done.is_file():
        recipe = {"synth": t, "prepare": {"folds": 5, "valid_fold": 4, "seed": 42}, "split": "mini"}
        build_data(recipe, root)
        done.write_text(json.dumps(t))
    return root / "yolo" / f"{problem['split']}.yaml"


def random_points(spec: dict[str, Any], n: int, seed: int) -> list[dict[str, float]]:
    """``n`` uniform (log-uniform where ``log``) points of the search space, rounded to 5 digits."""
    import numpy as np

    rng = np.random.default_rng(seed)
    points = []
    for _ in range(n):
        point = {}
        for name, p in spec["search_space"].items():
            lo, hi = float(p["low"]), float(p["high"])
            v = math.exp(rng.uniform(math.log(lo), math.log(hi))) if p.get("log") else rng.uniform(lo, hi)
            point[name] = float(f"{v:.5g}")
        points.append(point)
    return points


def plan_runs(spec: dict[str, Any], random_count: int = RANDOM_POINTS) -> list[dict[str, Any]]:
    """Every training of one problem: (kind, params, seed)."""
    base = dict(spec["base"])
    runs = [{"kind": "seed", "params": base, "seed": s} for s in NOISE_SEEDS]
    runs += [{"kind": "lr0", "params": {**base, "lr0": lr}, "seed": 0} for lr in LR0_POINTS if lr != base["lr0"]]
    runs += [{"kind": "random", "params": p, "seed": 0} for p in random_points(spec, random_count, RANDOM_SEED)]
    return runs


def run_key(spec: dict[str, Any], params: dict[str, Any], seed: int, device: str = "cpu") -> str:
    """Cache key of one training: what it trains with (weights by content), hyps and seed.

    Only what reaches Ultralytics counts: not the study's name, pruner or description, nor base
    values of searched hyps (a training with explicit ``params`` never sees them), so problems that
    differ only in their base share the trainings of identical points.
    """
    trains_with = {"model": spec["model"], "data": spec["data"], "train": spec["train"],
                   "weights": hashlib.sha256(Path(spec["weights"]).read_bytes()).hexdigest(),
                   "base": {k: v for k, v in spec["base"].items() if k not in spec["search_space"]}}
    key: dict[str, Any] = {"spec": trains_with, "params": params, "seed": seed}
    if device != "cpu":  # a GPU's numbers differ from the CPU's: cached apart (CPU keys unchanged)
        key["device"] = device
    blob = json.dumps(key, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def run_one(workdir: Path, spec: dict[str, Any], run: dict[str, Any], threads: int | None,
            device: str = "cpu", env: dict[str, str] | None = None) -> dict[str, Any]:
    """One fine-tuning in its own process (cached by spec, params, seed and device); per-epoch objective.

    ``threads``: torch threads of the training (None: torch's default); ``env``: more environment."""
    key = run_key(spec, run["params"], run["seed"], device)
    d = workdir / "finetune" / "runs" / key
    out = d / "out.json"
    if out.is_file():
        return {**run, **json.loads(out.read_text()), "key": key, "cached": True}
    d.mkdir(parents=True, exist_ok=True)
    (d / "spec.json").write_text(json.dumps(spec))
    (d / "params.json").write_text(json.dumps(run["params"]))
    (d / "seed.json").write_text(json.dumps(run["seed"]))
    cmd = [sys.executable, "-m", "bench.finetune", "run", "--spec", str(d / "spec.json"), "--params",
           str(d / "params.json"), "--seed", str(run["seed"]), "--save-dir", str(d / "train"), "--out", str(out),
           "--device", device]
    env = {**child_env(threads), **(env or {})}
    if device != "cpu":
        env.pop("CUDA_VISIBLE_DEVICES", None)
    r = run_measured(cmd, env=env, cwd=REPO, log=d / "log.txt", timeout=3600)
    if r["rc"] != 0:
        return {**run, "key": key, "error": f"exit {r['rc']}: {tail(d / 'log.txt', 8)}"}
    return {**run, **json.loads(out.read_text()), "key": key, "wall_s": round(r["seconds"], 1)}


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else float("nan")


def spearman(a: list[float], b: list[float]) -> float:
    def ranks(v: list[float]) -> list[float]:
        order = sorted(range(len(v)), key=v.__getitem__)
        r = [0.0] * len(v)
        i = 0
        while i < len(order):  # average ranks for ties
            j = i
            while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2
            i = j + 1
        return r

    ra, rb = ranks(a), ranks(b)
    ma, mb = statistics.fmean(ra), statistics.fmean(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    den = math.sqrt(sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb))
    return cov / den if den else float("nan")


def analyse(runs: list[dict[str, Any]], epochs: int) -> dict[str, Any]:
    """Noise floor, spread, their ratio, overall and per epoch."""
    ok = [r for r in runs if not r.get("error") and len(r.get("values", [])) == epochs]
    seeds = [r for r in ok if r["kind"] == "seed"]
    hyps = [r for r in ok if r["kind"] != "seed" or r["seed"] == 0]  # base (seed 0), lr0 and random points
    final_noise, best_so_far_noise = seed_noise(seeds)
    per_epoch = []
    for e in range(epochs):
        noise = _std([r["values"][e] for r in seeds])
        best_noise = best_so_far_noise[e] if best_so_far_noise else float("nan")  # what the reference pruners compare
        vals = [r["values"][e] for r in hyps]
        spread = max(vals) - min(vals) if vals else float("nan")
        per_epoch.append({"epoch": e + 1, "noise_std": noise, "best_so_far_std": best_noise, "spread": spread,
                          "ratio": spread / noise if noise and noise > 0 else float("inf"),
                          "spearman_vs_final": spearman(vals, [max(r["values"]) for r in hyps])})
    finals_seed = [max(r["values"]) for r in seeds]
    finals = [max(r["values"]) for r in hyps]
    noise = final_noise
    spread = max(finals) - min(finals) if finals else float("nan")
    hyp_std = _std(finals)
    return {"n_seed_runs": len(seeds), "n_hyp_runs": len(hyps), "noise_std": noise, "hyp_std": hyp_std,
            "std_ratio": hyp_std / noise if noise and noise > 0 else float("inf"),
            "noise_mean": statistics.fmean(finals_seed) if finals_seed else float("nan"),
            "spread": spread, "best": max(finals) if finals else None, "worst": min(finals) if finals else None,
            "ratio": spread / noise if noise and noise > 0 else float("inf"), "per_epoch": per_epoch,
            "failed": [r.get("error") for r in runs if r.get("error")]}


def zero_shot(weights: Path, data: Path, imgsz: int) -> dict[str, float]:
    """The pretrained model on the target's validation set, before any fine-tuning (domain shift)."""
    from hpo.search.objective import yolov5_fitness
    from hpo.offline import import_ultralytics

    import_ultralytics()
    from ultralytics import YOLO

    m = YOLO(str(weights)).val(data=str(data), imgsz=imgsz, batch=16, device="cpu", plots=False,
                               verbose=False, workers=0)
    return {"map50": float(m.box.map50), "map50-95": float(m.box.map),
            "fitness": yolov5_fitness(float(m.box.map50), float(m.box.map))}


def measure_problem(ctx: Context, problem: dict[str, Any], weights: Path, threads: int) -> dict[str, Any]:
    if ctx.quick:  # smoke sizes: 2 epochs, 3 trainings
        problem = {**problem, "train": {**problem["train"], "epochs": 2}}
    data = ensure_target(ctx.workdir, problem)
    spec = finetune_spec_dict(data, weights, problem)
    runs = plan_runs(spec)
    if ctx.quick:
        runs = [r for r in runs if r["kind"] == "seed"][:2] + [r for r in runs if r["kind"] == "lr0"][:1]
    say(f"finetune {problem['name']}: {len(runs)} trainings, {ctx.jobs} at a time")
    with ThreadPoolExecutor(max(1, ctx.jobs)) as pool:
        results = list(pool.map(lambda r: run_one(ctx.workdir, spec, r, threads), runs))
    epochs = spec["train"]["epochs"]
    out = {"problem": problem, "spec": spec, "runs": results, "analysis": analyse(results, epochs)}
    try:
        out["zero_shot"] = zero_shot(weights, data, spec["train"]["imgsz"])
    except Exception as exc:  # noqa: BLE001 - reported
        out["zero_shot_error"] = f"{type(exc).__name__}: {exc}"
    a = out["analysis"]
    say(f"finetune {problem['name']}: noise std {fmt_num(a['noise_std'], 4)}, spread {fmt_num(a['spread'], 4)}, "
        f"ratio {a['ratio']:.1f}")
    return out


# --- the bench section --------------------------------------------------------------------------

def _pretrained(ctx: Context) -> dict[str, Any]:
    """The pretraining record of this bench run: built (or read from its cache) once, shared by sections 7-8."""
    from bench.pretrain import pretrain

    if "pretrained" not in ctx.shared:
        root = ctx.workdir / "pretrained" if ctx.quick else REPO / "bench" / ".work" / "pretrained"
        ctx.shared["pretrained"] = pretrain(quick=ctx.quick, root=root, log=say)
    return ctx.shared["pretrained"]


class Pretrain:
    NAME = "pretrain"
    TITLE = "7. Pretraining recipe (offline stand-in for COCO weights)"

    @staticmethod
    def run(ctx: Context) -> Section:
        sec, t0 = begin(Pretrain.NAME, Pretrain.TITLE)
        rec = _pretrained(ctx)
        r, t = rec["recipe"], rec["recipe"]["train"]
        s = r["synth"]
        sec.setup = [
            f"`hpo data synth --cows {s['cows']} --pigs {s['pigs']} --scale {s['scale']} --seed {s['seed']} "
            f"--style {s['style']}` + `hpo data prepare` (5 folds; `{r['split']}.yaml`: 4 folds train, fold 4 "
            "validation): another seed, another look and 2.5x the images of the twins the fine-tuning problems use.",
            f"`{r['model']}` from scratch, {t['epochs']} epochs, imgsz {t['imgsz']}, batch {t['batch']}, SGD "
            f"lr0 {t['lr0']} cosine to lrf {t['lrf']}, momentum {t['momentum']}, warmup {t['warmup_epochs']} "
            f"epoch, mosaic off for the last {t['close_mosaic']}, seed {t['seed']}, deterministic, CPU, "
            f"{rec['threads']} torch threads. `python -m bench.pretrain` (cached by key `{rec['key']}`).",
        ]
        rows = [[e["epoch"], fmt_num(e["map50"], 3), fmt_num(e["map50-95"], 3), fmt_num(e["fitness"], 3),
                 f"{e['seconds']:.0f}"] for e in rec["epochs"]]
        sec.table("Per epoch on the pasture twin's validation fold",
                  ["epoch", "mAP50", "mAP50-95", "fitness", "elapsed s"], rows)
        f = rec["final"]
        sec.table("Result", ["", ""], [
            ["best.pt on the pasture validation fold: mAP50 / mAP50-95",
             f"{fmt_num(f.get('map50'), 3)} / {fmt_num(f.get('map50-95'), 3)}"],
            ["data generation + prepare", f"{rec['data_seconds']:.1f} s"],
            ["training (model.train)", f"{rec['train_seconds'] / 60:.1f} min"],
            ["weights", f"`{Path(rec['weights']).relative_to(REPO) if Path(rec['weights']).is_relative_to(REPO) else rec['weights']}` "
                        f"(sha256 {rec['weights_sha256'][:12]}…)"],
        ])
        if rec.get("cached"):
            sec.notes.append("Weights reused from the cache; the timings are those of the run that built them.")
        sec.raw = {k: v for k, v in rec.items()}
        return end(sec, t0)


class Finetune:
    NAME = "finetune"
    TITLE = "8. Fine-tuning problem: noise floor vs hyp spread"

    @staticmethod
    def run(ctx: Context) -> Section:
        sec, t0 = begin(Finetune.NAME, Finetune.TITLE)
        rec = _pretrained(ctx)
        weights = Path(rec["weights"])
        threads = 1  # per training; Ultralytics uses cores - 1 on CPU anyway
        problems = [chosen_problem()] if ctx.quick else PROBLEMS
        measured = [measure_problem(ctx, p, weights, threads) for p in problems]
        last = next(m for m in measured if m["problem"]["name"] == CHOSEN)
        sp = last["spec"]
        space = ", ".join(f"{k} [{v['low']}, {v['high']}{', log' if v.get('log') else ''}]"
                          for k, v in sp["search_space"].items())
        sec.setup = [
            f"Study `studies/finetune.yaml`: `{sp['model']}` initialised from the pretraining recipe's weights "
            "(section 7), fine-tuned on each problem's target twin (`hpo data synth --cows 240 --pigs 80 --scale 0.1 "
            f"--seed 0 --style STYLE`, mini split: 128 images, 64 validation); chosen problem: {CHOSEN}, the one "
            "benchmark 4 (section 9) and the demo (`studies/demo.yaml`, the same space and base) run. SGD, "
            "cosine LR, objective 0.1 mAP50 + 0.9 mAP50-95 at the best epoch (the demo's).",
            f"Search space: {space}. Base (YOLOv5 defaults): "
            + ", ".join(f"{k} {v}" for k, v in sp["base"].items()) + ".",
            f"Noise floor: the base hyps with training seeds {', '.join(map(str, NOISE_SEEDS))} (`seed=`; data, "
            "split and weights fixed); std = sample standard deviation of the objective.",
            f"Spread: base (seed 0), lr0 in {{{', '.join(f'{x:g}' for x in LR0_POINTS)}}} with the rest at base, "
            f"and {RANDOM_POINTS} uniform random points of the space (log-uniform lr0; numpy seed {RANDOM_SEED}), "
            "all with training seed 0; spread = best - worst objective.",
            f"Every training is its own process (real Ultralytics, CPU, {threads} thread), {ctx.jobs} side by side.",
        ]
        rows = []
        for m in measured:
            a, p = m["analysis"], m["problem"]
            t = m["spec"]["train"]
            rows.append([p["name"], p["why"], f"{t['epochs']} ep, {t['imgsz']} px, {p['split']}",
                         fmt_num(m.get("zero_shot", {}).get("fitness"), 3), fmt_num(a["noise_mean"], 4),
                         fmt_num(a["noise_std"], 4), fmt_num(a["worst"], 4), fmt_num(a["best"], 4),
                         fmt_num(a["spread"], 4), f"**{a['ratio']:.1f}**", f"{a['std_ratio']:.1f}"])
        sec.table("Every problem tried (objective = fitness at the best epoch)",
                  ["problem", "what", "training", "zero-shot", "base mean (seeds)", "seed std", "worst hyps",
                   "best hyps", "spread", "spread / seed std", "hyp std / seed std"], rows)
        for m in measured:
            name = m["problem"]["name"] + (" (chosen)" if m is last else "")
            sec.table(f"{name}: per epoch (the first epochs must already separate)",
                      ["epoch", "seed std", "hyp spread", "spread / std", "Spearman ρ with final"],
                      [[e["epoch"], fmt_num(e["noise_std"], 4), fmt_num(e["spread"], 4), f"{e['ratio']:.1f}",
                        f"{e['spearman_vs_final']:.2f}"] for e in m["analysis"]["per_epoch"]])
            curve_rows = []
            for r in m["runs"]:
                if r.get("error"):
                    continue
                label = {"seed": f"base, seed {r['seed']}", "lr0": f"lr0 {r['params']['lr0']:g}"}.get(
                    r["kind"], "random: " + ", ".join(f"{k} {v:.2g}" for k, v in r["params"].items()))
                curve_rows.append([label, *[fmt_num(v, 3) for v in r["values"]], fmt_num(max(r["values"]), 4)])
            sec.table(f"{name}: objective per epoch of every training",
                      ["run", *[f"ep {i + 1}" for i in range(m["spec"]["train"]["epochs"])], "best"], curve_rows)
        a = last["analysis"]
        sec.target(f"spread between good and bad hyps ≥ {RATIO_TARGET:g}× the seed-to-seed std",
                   f"{a['ratio']:.1f}× (spread {fmt_num(a['spread'], 4)}, std {fmt_num(a['noise_std'], 4)}, "
                   f"problem {last['problem']['name']})", None if ctx.quick else a["ratio"] >= RATIO_TARGET,
                   "quick mode: 2 seeds" if ctx.quick else "")
        done = list({r["key"]: r for m in measured for r in m["runs"] if not r.get("error")}.values())
        cached = [r for r in done if r.get("cached")]
        if cached:
            sec.notes.append(f"{len(cached)} of the {len(done)} distinct trainings were reused from the cache "
                             "(`bench/.work/finetune/runs/`, keyed by what reaches Ultralytics: weights by content, "
                             "data, fixed arguments, hyps, seed; problems share identical trainings); the section's "
                             f"time does not include them. model.train() time of all {len(done)} when they ran: "
                             f"{sum(r.get('train_seconds', 0) for r in done) / 60:.0f} min, 2 side by side on the "
                             "shared cores.")
        for m in measured:
            for err in m["analysis"]["failed"]:
                sec.notes.append(f"{m['problem']['name']}: a training failed: {err[:300]}")
        sec.raw = {"problems": measured, "pretrained_key": rec["key"]}
        return end(sec, t0)


# --- one training (subprocess entry) -------------------------------------------------------------

def _run(args: argparse.Namespace) -> int:
    import os
    import time

    import torch

    if "OMP_NUM_THREADS" in os.environ:
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    from hpo.spec import parse_spec
    from hpo.search.trial_runner import TrialRunner

    spec = parse_spec(json.loads(Path(args.spec).read_text()))
    params = json.loads(Path(args.params).read_text())
    save_dir = Path(args.save_dir).resolve()
    runner = TrialRunner(spec, runs_dir=save_dir.parent, device=args.device)
    start = time.perf_counter()
    record = runner.train(params, save_dir, overrides={"seed": args.seed})
    Path(args.out).write_text(json.dumps({
        "values": record.values, "epoch_metrics": record.epoch_metrics, "final_metrics": record.final_metrics,
        "train_seconds": round(time.perf_counter() - start, 1)}, default=str))
    return 0


def seed_noise(runs: list[dict[str, Any]]) -> tuple[float, list[float]]:
    """The base hyps' seed-to-seed std of the final value, and of the best value up to each epoch (a spec's
    ``noise.std`` and ``noise.per_epoch``), from a problem's ``seed`` runs: ``hpo noise``'s own statistic."""
    from hpo.search.noise import seed_noise as of_curves

    return of_curves([r["values"] for r in runs if r.get("kind") == "seed" and not r.get("error") and r.get("values")])


def ranks(*, epochs: int, random_count: int, jobs: int, workdir: Path, out: Path | None = None,
          quick: bool = False) -> dict[str, Any]:
    """The chosen problem with longer trials: from which epoch do intermediate values rank hyps (a pruner's need)?

    The same trainings as section 8 (base hyps over 5 seeds, lr0 points, ``random_count`` random points),
    fine-tuning the committed checkpoint for ``epochs`` epochs; per epoch the seed std, the hyp spread and
    the Spearman correlation with the final value. Benchmark 11 (:mod:`bench.prune_replay`) replays them.
    """
    from bench.pretrain import COMMITTED

    problem = chosen_problem()
    problem = {**problem, "train": {**problem["train"], "epochs": epochs}}
    spec = finetune_spec_dict(ensure_target(workdir, problem), COMMITTED, problem)
    runs = plan_runs(spec, random_count)
    if quick:  # smoke sizes: 2 seeds, one lr0 point, one random point
        runs = [r for r in runs if r["kind"] == "seed"][:2] + [r for r in runs if r["kind"] != "seed"][:2]
    say(f"ranks {problem['name']} at {epochs} epochs: {len(runs)} trainings, {jobs} at a time")
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        results = list(pool.map(lambda r: run_one(workdir, spec, r, 1), runs))
    result = {"problem": problem, "runs": results, "analysis": analyse(results, epochs)}
    a = result["analysis"]
    say(f"{a['n_hyp_runs']} hyps, {a['n_seed_runs']} seeds; final: noise std {fmt_num(a['noise_std'], 4)}, "
        f"spread {fmt_num(a['spread'], 4)}; failed {len(a['failed'])}")
    say("epoch  seed std  hyp spread  spread/std  Spearman with final")
    for e in a["per_epoch"]:
        say(f"{e['epoch']:>5}  {e['noise_std']:.4f}    {e['spread']:.4f}      {e['ratio']:>5.1f}       "
            f"{e['spearman_vs_final']:+.2f}")
    if out:
        out.write_text(json.dumps(result, indent=1, default=str))
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.finetune")
    sub = p.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="one fine-tuning with the given hyps and training seed")
    run.add_argument("--spec", required=True)
    run.add_argument("--params", required=True)
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--save-dir", required=True)
    run.add_argument("--out", required=True)
    run.add_argument("--device", default="cpu", help="cpu or a CUDA device index")
    rk = sub.add_parser("ranks", help="the chosen problem with longer trials: does epoch k rank the hyps?")
    rk.add_argument("--epochs", type=int, default=15)
    rk.add_argument("--random-points", type=int, default=12)
    rk.add_argument("--jobs", type=int, default=2)
    rk.add_argument("--workdir", type=Path, default=REPO / "bench" / ".work")
    rk.add_argument("--out", type=Path, default=None, help="JSON of every training and the analysis")
    args = p.parse_args(argv)
    if args.cmd == "ranks":
        ranks(epochs=args.epochs, random_count=args.random_points, jobs=args.jobs, workdir=args.workdir,
              out=args.out)
        return 0
    return _run(args)


if __name__ == "__main__":
    sys.exit(main())
