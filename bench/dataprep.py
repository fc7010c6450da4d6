"""6. Data preparation: ``hpo data prepare`` on the full-size synthetic twin, time and peak memory."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench.common import child_env, fmt_stat, run_measured, say, stat, tail
from bench.context import Context, Section, begin, end

NAME = "dataprep"
TITLE = "6. Data preparation (hpo data prepare)"
TARGET_SECONDS = 60.0
REAL = {"cows": 12152, "pigs": 4303}


def settings(ctx: Context) -> dict[str, Any]:
    if ctx.quick:
        return {"cows": 600, "pigs": 212, "scale": 0.05, "seed": 0, "repeats": ctx.reps(3, 1)}
    return {**REAL, "scale": 0.05, "seed": 0, "repeats": ctx.reps(3)}


def ensure_twin(root: Path, cows: int, pigs: int, scale: float, seed: int) -> tuple[Path, float | None]:
    """The synthetic raw data in ``root/raw`` (generated once, reused while its arguments match)."""
    raw = root / "raw"
    marker = root / "synth.json"
    want = {"cows": cows, "pigs": pigs, "scale": scale, "seed": seed}
    if marker.is_file() and raw.is_dir():
        try:
            if json.loads(marker.read_text()) == want:
                return raw, None
        except ValueError:
            pass
    import shutil

    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    say(f"synthesising the twin: {cows} cow + {pigs} pig images at scale {scale} in {raw}")
    log = root / "synth.log"
    r = run_measured([sys.executable, "-m", "hpo", "data", "synth", str(raw), "--cows", str(cows),
                      "--pigs", str(pigs), "--scale", str(scale), "--seed", str(seed)],
                     env=child_env(), log=log, timeout=3600)
    if r["rc"] != 0:
        raise RuntimeError(f"hpo data synth failed (exit {r['rc']}): {tail(log)}")
    marker.write_text(json.dumps(want))
    return raw, r["seconds"]


def run(ctx: Context) -> Section:
    sec, t0 = begin(NAME, TITLE)
    cfg = settings(ctx)
    root = ctx.workdir / ("twin-quick" if ctx.quick else "twin-full")
    raw, synth_seconds = ensure_twin(root, cfg["cows"], cfg["pigs"], cfg["scale"], cfg["seed"])
    pairs = cfg["cows"] + cfg["pigs"]
    out = root / "data"
    sec.setup = [
        f"Raw data: `hpo data synth RAW --cows {cfg['cows']} --pigs {cfg['pigs']} --scale {cfg['scale']} "
        f"--seed {cfg['seed']}` ({pairs:,} jpg/json pairs as extracted AI Hub folders: the real set's "
        "layout, names, image sizes × scale, label format and box statistics, with its quirks: images "
        "without boxes, boxes a few pixels outside the image).",
        "Measured: `hpo data prepare RAW OUT --json` as a subprocess (interpreter start and imports "
        "included): wall time, and peak resident memory of that process (`ru_maxrss` from `wait4`). "
        "The command's own timer (`seconds` in its JSON: the work without interpreter start-up) is shown too. "
        f"{cfg['repeats']} run(s), each replacing the previous output.",
        "Prepare parses every JSON, reads each JPEG's header and tail (no decoding), runs the "
        "multilabel-stratified 5-fold split and links images into the four splits.",
    ]
    if ctx.quick:
        sec.notes.append("Quick mode: a small twin, not the 16,455 pairs of the target.")
    if synth_seconds is not None:
        sec.notes.append(f"Generating the twin took {synth_seconds:.0f} s in this run (not part of the figure).")
    runs = []
    for i in range(cfg["repeats"]):
        log = root / f"prepare_{i}.log"
        r = run_measured([sys.executable, "-m", "hpo", "data", "prepare", str(raw), str(out), "--json"],
                         env=child_env(), log=log, timeout=3600)
        if r["rc"] != 0:
            raise RuntimeError(f"hpo data prepare failed (exit {r['rc']}): {tail(log)}")
        report = json.loads(r["stdout"])
        runs.append({"wall_s": r["seconds"], "own_s": report.get("seconds"), "maxrss_mib": r["maxrss_mib"],
                     "images": report.get("splits", {}).get("full", {}).get("images"),
                     "skipped": len(report.get("skipped", []))})
        say(f"prepare run {i + 1}: {r['seconds']:.1f} s wall, peak {r['maxrss_mib']} MiB")
    walls = stat([r["wall_s"] for r in runs])
    own = stat([r["own_s"] for r in runs])
    peak = stat([r["maxrss_mib"] for r in runs])
    images = runs[0]["images"]
    sec.table("hpo data prepare", ["pairs", "usable images", "skipped files", "wall time (s)",
                                   "prepare's own timer (s)", "peak memory (MiB)", "pairs / s"],
              [[f"{pairs:,}", f"{images:,}" if images else "-", runs[0]["skipped"], fmt_stat(walls, 1),
                fmt_stat(own, 1), fmt_stat(peak, 0), f"{pairs / walls['median']:,.0f}"]])
    met = walls["median"] < TARGET_SECONDS if not ctx.quick else None
    sec.target(f"prepare of the full twin (16,455 pairs) well under {TARGET_SECONDS:.0f} s on 2 cores",
               f"{fmt_stat(walls, 1)} s (peak memory {fmt_stat(peak, 0)} MiB)", met,
               "quick mode: small twin" if ctx.quick else "")
    sec.raw = {"settings": cfg, "runs": runs, "wall_s": walls, "own_s": own, "peak_mib": peak,
               "synth_seconds": synth_seconds}
    return end(sec, t0)
