"""10. Hypervolume against trials: nsga2, tpe and random on the deploy demo (``studies/deploy.yaml``).

Every study run is one ``hpo worker`` process on a fresh SQLite study created from
``studies/deploy.yaml`` (model size x imgsz x lr0/momentum; fitness maximised, CPU latency minimised;
weights <= 100 MB) on the farm twin of ``make demo`` (``hpo data synth --cows 240 --pigs 80 --scale 0.1
--seed 0`` + ``hpo data prepare``), with one sampler and one seed. The three samplers of a seed run side
by side (same machine load for each; on a shared machine the run is niced), seeds one after another.
``--deadline`` stops the studies still running at that time: the trials they finished are counted
and the section lists them as truncated.

Hypervolume is our own exact 2-D sweep (:func:`hypervolume_2d`), not Optuna's private module, over
the feasible complete trials among the first *n* trials that count against the budget (trials refused
untrained as infeasible do not count; the deploy space has none). How the objectives are normalised,
so that studies measured in different processes compare:

- fitness as it is (0.1 mAP50 + 0.9 mAP50-95, in [0, 1]), minimised as ``1 - fitness``;
- latency of a trial = the median, over every study of the run, of the latencies measured for its
  (model, imgsz) configuration (each worker measures its own: batch 1, CPU, 1 thread, median of 20
  after 5 warm-up runs), divided by that median of the slowest configuration;
- reference point (1, 1.1): fitness 0 and 1.1 x the slowest configuration's latency. The largest
  possible hypervolume is 1.1 (fitness 1 at zero latency).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import yaml

from bench.common import REPO, child_env, fmt_num, fmt_stat, fresh_dir, run_measured, say, stat, tail
from bench.context import Context, Section, begin, end

TITLE = "10. Hypervolume against trials on the deploy demo (nsga2, tpe, random)"
DEPLOY_YAML = REPO / "studies" / "deploy.yaml"
SAMPLERS = ("nsga2", "tpe", "random")
REFERENCE = (1.0, 1.1)  # (1 - fitness, latency / slowest configuration's latency)
TWIN = {"cows": 240, "pigs": 80, "scale": 0.1, "seed": 0}  # `make demo`'s twin
QUICK_TWIN = {"cows": 24, "pigs": 8, "scale": 0.1, "seed": 0}


def settings(ctx: Context) -> dict[str, Any]:
    """Sizes. Full: 3 samplers x 3 seeds x 10 trials of the study file's epochs (5: yolov5n-p6 fine-tunes
    the committed checkpoint), 21 minutes on 2 quiet cores; the earlier from-scratch problem needed 10 epochs, 45."""
    if ctx.quick:
        return {"samplers": list(SAMPLERS), "seeds": ctx.seeds or [0], "trials": 2, "epochs": 1, "twin": QUICK_TWIN}
    epochs = int(yaml.safe_load(DEPLOY_YAML.read_text())["train"]["epochs"])
    return {"samplers": list(SAMPLERS), "seeds": ctx.seeds or [0, 1, 2], "trials": 10, "epochs": epochs, "twin": TWIN}


# --- hypervolume -------------------------------------------------------------------------------

def hypervolume_2d(points: Sequence[tuple[float, float]], reference: tuple[float, float]) -> float:
    """Exact hypervolume of 2-D points (both minimised) against ``reference``: the area they dominate.

    Sweep in the first coordinate: each point adds the strip between its second coordinate and the
    best one seen so far. Points not strictly better than the reference in both add nothing.
    """
    inside = sorted((a, b) for a, b in points if a < reference[0] and b < reference[1])
    volume, best_b = 0.0, reference[1]
    for a, b in inside:
        if b < best_b:
            volume += (reference[0] - a) * (best_b - b)
            best_b = b
    return volume


def configuration(params: dict[str, Any], spec: dict[str, Any]) -> str:
    model = params.get("model", spec.get("model"))
    imgsz = params.get("imgsz", spec.get("train", {}).get("imgsz"))
    return f"{model}@{imgsz}"


def latency_table(runs: list[dict[str, Any]], spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per (model, imgsz): every latency measured in the run (one per study that trained it)."""
    per: dict[str, dict[str, Any]] = {}
    for run in runs:
        seen: dict[str, float] = {}
        for t in run.get("trials", []):
            if t.get("latency_ms") is not None:
                seen.setdefault(configuration(t["params"], spec), t["latency_ms"])  # one per worker process
                per.setdefault(configuration(t["params"], spec), {"params": t.get("param_count"),
                                                                  "gflops": t.get("gflops")})
        for key, value in seen.items():
            per[key].setdefault("latencies", []).append(value)
    for entry in per.values():
        entry["median_ms"] = statistics.median(entry["latencies"])
    return per


def curve(run: dict[str, Any], latency: dict[str, dict[str, Any]], spec: dict[str, Any],
          slowest: float) -> list[float]:
    """Hypervolume after each trial that counts against the budget (trial order)."""
    points: list[tuple[float, float]] = []
    out = []
    for t in sorted(run["trials"], key=lambda t: t["number"]):
        if not t["counts"]:
            continue
        if t["state"] == "COMPLETE" and t["feasible"] is not False and t["values"]:
            lat = latency[configuration(t["params"], spec)]["median_ms"] / slowest
            points.append((1.0 - t["values"][0], lat))
        out.append(round(hypervolume_2d(points, REFERENCE), 6))
    return out


# --- one study ---------------------------------------------------------------------------------

def ensure_twin(workdir: Path, twin: dict[str, Any]) -> Path:
    """`hpo data synth` + `hpo data prepare` (as `make demo` does, with these sizes); the mini set's yaml."""
    root = workdir / "hypervolume" / "data-{cows}-{pigs}-{scale}-{seed}".format(**twin)
    marker, data = root / "twin.json", root / "data"
    if marker.is_file() and (data / "mini.yaml").is_file() and json.loads(marker.read_text()) == twin:
        return data / "mini.yaml"
    fresh_dir(root)
    for cmd in (["synth", str(root / "raw"), *(x for k in ("cows", "pigs", "scale", "seed")
                                                for x in (f"--{k}", str(twin[k])))],
                ["prepare", str(root / "raw"), str(data)]):
        log = root / f"{cmd[0]}.log"
        r = run_measured([sys.executable, "-m", "hpo", "data", *cmd], env=child_env(1), log=log, timeout=1800)
        if r["rc"] != 0:
            raise RuntimeError(f"hpo data {cmd[0]} failed (exit {r['rc']}): {tail(log)}")
    marker.write_text(json.dumps(twin))
    return data / "mini.yaml"


def deploy_spec(data: Path, cfg: dict[str, Any]) -> dict[str, Any]:
    spec = yaml.safe_load(DEPLOY_YAML.read_text())
    spec["data"] = str(data.resolve())
    spec["train"]["epochs"] = cfg["epochs"]
    spec["trials"] = cfg["trials"]
    spec.pop("retrain", None)
    return spec


def study_run(workdir: Path, spec: dict[str, Any], sampler: str, seed: int,
              deadline: float | None = None) -> dict[str, Any]:
    """One fresh study, one ``hpo worker``: its trials as the hypervolume needs them (killed at
    ``deadline``, time.time(), keeping the trials it finished)."""
    from hpo.spec import parse_spec
    from hpo.storage import open_storage
    from hpo.study import create_or_join

    key = f"{sampler}-s{seed}"
    d = fresh_dir(workdir / "hypervolume" / "studies" / key)
    url = f"sqlite:///{d / 'hpo.db'}"
    storage = open_storage(url)
    create_or_join(storage, parse_spec(spec), sampler=sampler, pruner="none", budget=spec["trials"])
    storage.engine.dispose()
    cmd = [sys.executable, "-m", "hpo", "worker", "--study", spec["name"], "--storage", url, "--seed", str(seed),
           "--worker-index", "0", "--device", "cpu", "--runs-dir", str(d / "runs"), "--keep", "1",
           "--artifacts", "off", "--verbose"]
    timeout = 3 * 3600 if deadline is None else max(5.0, deadline - time.time())
    r = run_measured(cmd, env=child_env(1), cwd=REPO, log=d / "worker.log", timeout=timeout)
    truncated = r["rc"] == 124
    if r["rc"] != 0 and not truncated:
        raise RuntimeError(f"hpo worker for {key} failed (exit {r['rc']}): {tail(d / 'worker.log')}")
    trials = read_trials(url, spec["name"])
    say(f"study {key}: {sum(t['state'] == 'COMPLETE' for t in trials)} complete, {r['seconds']:.0f} s"
        + (" (stopped at the deadline)" if truncated else ""))
    return {"key": key, "sampler": sampler, "seed": seed, "wall_s": round(r["seconds"], 1), "trials": trials,
            "truncated": truncated}


def read_trials(url: str, name: str) -> list[dict[str, Any]]:
    import optuna

    from hpo import attrs
    from hpo.storage import open_storage

    storage = open_storage(url)
    try:
        study = optuna.load_study(study_name=name, storage=storage)
        out = []
        for t in study.get_trials(deepcopy=False):
            untrained = bool(t.user_attrs.get(attrs.UNTRAINED))
            out.append({"number": t.number, "state": t.state.name, "values": t.values, "params": t.params,
                        "feasible": t.user_attrs.get(attrs.FEASIBLE), "untrained": untrained,
                        "counts": t.state.name in ("COMPLETE", "PRUNED") and not untrained,
                        "latency_ms": t.user_attrs.get(attrs.LATENCY_MS), "param_count": t.user_attrs.get(attrs.PARAMS),
                        "gflops": t.user_attrs.get(attrs.GFLOPS), "train_seconds": t.user_attrs.get(attrs.TRAIN_SECONDS)})
        return out
    finally:
        storage.engine.dispose()


# --- the section -------------------------------------------------------------------------------

def run(ctx: Context) -> Section:
    sec, t0 = begin("hypervolume", TITLE)
    cfg = settings(ctx)
    data = ensure_twin(ctx.workdir, cfg["twin"])
    spec = deploy_spec(data, cfg)
    runs: list[dict[str, Any]] = []
    deadline = ctx.shared.get("deadline")
    skipped: list[int] = []

    def guarded(sampler: str, seed: int) -> dict[str, Any]:
        try:
            return study_run(ctx.workdir, spec, sampler, seed, deadline)
        except Exception as exc:  # noqa: BLE001 - one failed study must not lose the others
            say(f"study {sampler}-s{seed} failed: {exc}")
            return {"key": f"{sampler}-s{seed}", "sampler": sampler, "seed": seed, "error": str(exc)[:500]}

    for seed in cfg["seeds"]:  # a seed's samplers side by side: the same machine load for each
        if deadline is not None and time.time() > deadline - 60:
            skipped.append(seed)
            continue
        with ThreadPoolExecutor(len(cfg["samplers"])) as pool:
            runs += list(pool.map(lambda s: guarded(s, seed), cfg["samplers"]))
    summarise(sec, runs, spec, cfg, ctx)
    if skipped:
        sec.notes.append(f"Seeds {', '.join(map(str, skipped))} not run: the deadline had passed.")
    return end(sec, t0)


def summarise(sec: Section, runs: list[dict[str, Any]], spec: dict[str, Any], cfg: dict[str, Any],
              ctx: Context) -> None:
    from hpo.search.samplers import nsga2_population

    ok = [r for r in runs if not r.get("error")]
    latency = latency_table(ok, spec)
    slowest = max((v["median_ms"] for v in latency.values()), default=1.0)
    for r in ok:
        r["hv"] = curve(r, latency, spec, slowest)
    budget = cfg["trials"]
    marks = sorted({max(1, round(budget * f)) for f in (0.2, 0.4, 0.6, 0.8, 1.0)})
    pooled = [(1.0 - t["values"][0], latency[configuration(t["params"], spec)]["median_ms"] / slowest)
              for r in ok for t in r["trials"] if t["counts"] and t["state"] == "COMPLETE" and t["feasible"] is not False]
    space = ", ".join(f"{k}: {v.get('choices') or [v.get('low'), v.get('high')]}" for k, v in spec["search_space"].items())
    sec.setup = [
        f"`studies/deploy.yaml` on the farm twin (`hpo data synth --cows {cfg['twin']['cows']} --pigs "
        f"{cfg['twin']['pigs']} --scale {cfg['twin']['scale']} --seed {cfg['twin']['seed']}` + `hpo data prepare`, "
        f"mini set), {cfg['trials']} trials per study of {cfg['epochs']} epoch(s) each ({_epochs_note(cfg['epochs'])}), "
        f"search space {space}; {_weights_note(spec)}.",
        f"Samplers {', '.join(cfg['samplers'])} (hpo's settings: NSGA-II population "
        f"{nsga2_population(cfg['trials'])}, TPE multivariate with 5 "
        f"start-up trials), seeds {', '.join(map(str, cfg['seeds']))}; every study enqueues the base hyps as "
        "trial 0; one `hpo worker` per study (1 torch thread, CPU), a seed's three studies side by side.",
        "Hypervolume: own exact 2-D sweep (`bench/hypervolume.py: hypervolume_2d`, no private Optuna name) of the "
        "feasible complete trials among the first n trials that count against the budget.",
        "Normalisation: minimise (1 − fitness, latency / slowest latency); a trial's latency is the median, over "
        "all studies of the run, of its (model, imgsz) configuration's measured latencies (each worker measures "
        "its own), so measurement noise between processes does not move the fronts. Reference point (1, 1.1): "
        "fitness 0 and 1.1 × the slowest configuration. Largest possible value 1.1.",
    ]
    rows = []
    for sampler in cfg["samplers"]:
        mine = [r for r in ok if r["sampler"] == sampler]
        if not mine:
            continue
        cells = [fmt_stat(stat([r["hv"][m - 1] if len(r["hv"]) >= m else None for r in mine]), 3) for m in marks]
        front_sizes = [len(_front([(1.0 - t["values"][0], latency[configuration(t["params"], spec)]["median_ms"])
                                   for t in r["trials"] if t["counts"] and t["state"] == "COMPLETE"
                                   and t["feasible"] is not False])) for r in mine]
        rows.append([sampler, len(mine), *cells, fmt_stat(stat(front_sizes), 0),
                     fmt_stat(stat([r["wall_s"] / 60 for r in mine]), 1)])
    rows.append(["all studies pooled", len(ok), *(["–"] * (len(marks) - 1)),
                 fmt_num(hypervolume_2d(pooled, REFERENCE), 3), str(len(_front(pooled))), "–"])
    sec.table("Hypervolume of the feasible front after n trials: median [min–max] over seeds",
              ["sampler", "studies", *(f"n = {m}" for m in marks), "front size at the end", "wall (min)"], rows)
    sec.table("Latency per configuration (the normalisation's input): median [min–max] over the studies that "
              "measured it", ["model @ imgsz", "latency ms", "normalised", "params", "GFLOPs"],
              [[k, fmt_stat(stat(v["latencies"]), 3), fmt_num(v["median_ms"] / slowest, 3),
                f"{v['params']:,}" if v.get("params") else "-", fmt_num(v.get("gflops"), 3)]
               for k, v in sorted(latency.items(), key=lambda kv: kv[1]["median_ms"])])
    cut = [f"{r['key']} ({sum(t['counts'] for t in r['trials'])} of {budget} trials)" for r in ok if r.get("truncated")]
    if cut:
        sec.notes.append("Stopped at the deadline, the trials finished by then counted: " + ", ".join(cut) + ".")
    failed = [f"{r['key']}: {r['error']}" for r in runs if r.get("error")]
    if failed:
        sec.notes += ["Failed studies: " + "; ".join(failed)]
    sec.raw = {"settings": {k: v for k, v in cfg.items()}, "reference": REFERENCE, "slowest_ms": slowest,
               "latency": latency, "marks": marks, "runs": runs}
    figure = _plot(ctx, ok, cfg["samplers"], budget)
    if figure:
        sec.figures.append(figure)


def _weights_note(spec: dict[str, Any]) -> str:
    """Which model sizes start from which weights."""
    weights = spec.get("weights")
    models = spec["search_space"]["model"]["choices"] if "model" in spec["search_space"] else [spec.get("model")]
    if not weights:
        return "every model from scratch"
    named = weights if isinstance(weights, dict) else {m: weights for m in models}
    return ", ".join(f"{m} {'fine-tunes ' + str(named[m]) if named.get(m) else 'from scratch'}" for m in models)


def _epochs_note(epochs: int) -> str:
    """Why the epochs differ from the study file's, if they do."""
    stated = int(yaml.safe_load(DEPLOY_YAML.read_text())["train"]["epochs"])
    if epochs > stated:
        return f"the study file says {stated}: from scratch the twin's fitness is still ~0 after 5 epochs"
    if epochs < stated:
        return f"the study file says {stated}: fewer, to fit the time"
    return "as the study file says"


def _front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points of a 2-D minimisation no other point dominates."""
    return [p for p in points if not any(q != p and q[0] <= p[0] and q[1] <= p[1] for q in points)]


def _plot(ctx: Context, runs: list[dict[str, Any]], samplers: list[str], budget: int) -> str | None:
    """Median hypervolume against trials per sampler, min–max shaded; next to results.md."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    out_dir = ctx.shared.get("out_dir") or (REPO / "bench")
    name = "hypervolume.png"
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for sampler in samplers:
        curves = [r["hv"][:budget] for r in runs if r["sampler"] == sampler and r["hv"]]
        if not curves:
            continue
        cols = list(zip(*curves))  # up to the shortest study (a deadline may have cut some)
        xs = list(range(1, len(cols) + 1))
        ax.plot(xs, [statistics.median(c) for c in cols], marker="o", label=f"{sampler} ({len(curves)} seeds)")
        ax.fill_between(xs, [min(c) for c in cols], [max(c) for c in cols], alpha=0.15)
    ax.set_xlim(0.5, budget + 0.5)
    ax.set_xlabel("trials (counted against the budget)")
    ax.set_ylabel("hypervolume (ref. (1, 1.1), max 1.1)")
    ax.set_title("deploy demo: hypervolume of the feasible front")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    fig.savefig(Path(out_dir) / name, dpi=110)
    plt.close(fig)
    return name
