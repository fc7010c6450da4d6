"""Trials per GPU-hour on a lent GPU machine: one record per arm there, one results section here.

``bench/gpu_smoke.sh`` launches the same few trials several ways (workers per GPU, CUDA MPS,
``val_fraction``, ``compile``) and, after each launch, calls ``arm`` to append one JSON line to
``$OUT/packing.jsonl``: the launch's wall time and trials, what it chose (workers per GPU, MPS) from
its ``--json`` summary, and the GPU's busy share and peak memory over the launch from ``nvidia-smi
dmon`` (``-o T``, so its lines carry the time of day). Back on this machine, ``into-results`` turns
those lines into the ``gpu`` section of bench/results.json and results.md, kept by every later
``make bench`` (an imported section, see ``bench.__main__.IMPORTED``).

    python -m bench.gpu_record arm --out OUT --arm wpg1 --label "..." --shape "..." --start T0 --end T1 \\
        --summary OUT/pack_wpg1.json --dmon OUT/dmon.log                   # on the GPU machine
    python -m bench.gpu_record into-results packing.jsonl [--note TEXT]     # here

``arm`` needs only the standard library: it runs wherever the smoke script does.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

#: The arm every other arm of the same card and shape is compared with: one training at a time.
BASELINE_ARM = "wpg1"


def dmon_window(dmon: Path, start: float, end: float) -> dict[str, Any]:
    """GPU busy share (``sm`` %, mean over samples) and peak framebuffer memory between two epoch times.

    ``nvidia-smi dmon -s um -o T`` prints ``HH:MM:SS gpu sm mem enc dec jpg ofa fb bar1 ccpm`` (columns
    named in its ``#`` header); a run shorter than a day is placed by the start's date.
    """
    if not dmon.is_file():
        return {}
    names: list[str] = []
    busy: list[float] = []
    peak_mb = 0.0
    day = time.strftime("%Y-%m-%d", time.localtime(start))
    for line in dmon.read_text(errors="replace").splitlines():
        parts = line.lstrip("#").split()
        if line.startswith("#"):
            if not names and parts:
                names = [p.lower() for p in parts]
            continue
        if not names or len(parts) != len(names):
            continue
        row = dict(zip(names, parts))
        try:
            stamp = time.mktime(time.strptime(f"{day} {row['time']}", "%Y-%m-%d %H:%M:%S"))
        except (KeyError, ValueError):
            continue
        if stamp < int(start) or stamp > end:
            continue
        if row.get("sm", "-").isdigit():
            busy.append(float(row["sm"]))
        if row.get("fb", "-").isdigit():
            peak_mb = max(peak_mb, float(row["fb"]))
    return {"gpu_busy_pct": round(statistics.fmean(busy), 1) if busy else None, "samples": len(busy),
            "peak_memory_gib": round(peak_mb / 1024, 1) if peak_mb else None}


def arm_record(*, arm: str, label: str, shape: str, card: str, start: float, end: float, rc: int,
               summary: dict[str, Any] | None, dmon: Path | None, trials: int | None = None) -> dict[str, Any]:
    """One arm's line: what the launch did (from its ``--json`` summary) and what the GPU showed."""
    gpu = (summary or {}).get("gpu") or {}
    mps = gpu.get("mps") or {}
    finished = (summary or {}).get("trials", {}).get("finished", trials)
    wall = end - start
    record = {"card": card, "shape": shape, "arm": arm, "label": label, "rc": rc, "trials": finished,
              "wall_s": round(wall, 1), "trials_per_hour": round(finished / wall * 3600, 1) if finished else None,
              "workers_per_gpu": gpu.get("workers_per_gpu"),
              "mps": "started" if mps.get("started") else "used" if mps.get("used") else "off",
              "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(start))}
    record.update(dmon_window(dmon, start, end) if dmon else {})
    return record


def describe(record: dict[str, Any]) -> str:
    """The record as one human line (packing.txt and the smoke script's output)."""
    if not record.get("trials"):
        return f"{record['card']} | {record['label']}: launch exited {record['rc']} without finished trials"
    busy = record.get("gpu_busy_pct")
    return (f"{record['card']} | {record['label']}: {record['trials']} trials in {record['wall_s']:.0f} s = "
            f"{record['trials_per_hour']:.0f} trials/h; workers per GPU {record['workers_per_gpu']}; "
            f"MPS {record['mps']}; GPU busy {'?' if busy is None else f'{busy:.0f} %'}, peak "
            f"{record.get('peak_memory_gib') or '?'} GiB; rc {record['rc']}")


def section(records: list[dict[str, Any]], notes: list[str] | None = None) -> dict[str, Any]:
    """The results section: per card and shape, each arm's trials per hour and its ratio to one at a time."""
    from bench.context import Section

    if not records:
        raise ValueError("no arm records")
    sec = Section(name="gpu", title="13. GPU trials per hour (lent GPU machine)", started=records[0]["started"],
                  seconds=round(sum(r["wall_s"] for r in records), 1))
    sec.setup = [
        "Run by `bench/gpu_smoke.sh` (`SMOKE_PARTS=packing`) on a lent GPU machine, not by `make bench`; imported "
        "with `python -m bench.gpu_record into-results`.",
        "Each arm is a fresh study of the same 4 trials (random sampler, seed 0, no pruning: every trial trains "
        "every epoch) launched with `hpo launch --gpus 0 --seed 0` and the arm's options; its wall time is the "
        "whole launch, what a user waits for (worker start-up, dataset caching, the trials' final validation).",
        "GPU busy: mean of `nvidia-smi dmon`'s SM % over the launch (2 s samples); peak memory: its largest "
        "framebuffer use. One launch per arm: a single run, no spread.",
    ]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["card"], r["shape"]), []).append(r)
    for (card, shape), rows in groups.items():
        base = next((r for r in rows if r["arm"] == BASELINE_ARM and r.get("trials_per_hour")), None)
        table = []
        for r in rows:
            ratio = (f"{r['trials_per_hour'] / base['trials_per_hour']:.2f}x"
                     if base and r.get("trials_per_hour") else "–")
            wpg = r.get("workers_per_gpu")
            wpg = ", ".join(str(v) for v in wpg.values()) if isinstance(wpg, dict) else wpg
            table.append([r["label"], str(r.get("trials")), f"{r['wall_s']:.0f}",
                          "–" if not r.get("trials_per_hour") else f"{r['trials_per_hour']:.0f}", ratio, str(wpg),
                          r["mps"], "–" if r.get("gpu_busy_pct") is None else f"{r['gpu_busy_pct']:.0f}",
                          "–" if r.get("peak_memory_gib") is None else f"{r['peak_memory_gib']:.1f}"])
        sec.table(f"{card}: {shape}",
                  ["arm", "trials", "wall s", "trials/h", f"vs {BASELINE_ARM}", "workers/GPU", "MPS", "GPU busy %",
                   "peak GiB"], table)
    sec.notes.extend(notes or [])
    sec.raw = {"records": records}
    return sec.to_dict()


def _arm(args: argparse.Namespace) -> int:
    summary = None
    if args.summary and args.summary.is_file():
        try:
            summary = json.loads(args.summary.read_text())
        except ValueError:
            summary = None
    record = arm_record(arm=args.arm, label=args.label, shape=args.shape, card=args.card, start=args.start,
                        end=args.end, rc=args.rc, summary=summary, dmon=args.dmon)
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "packing.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
    line = describe(record)
    with open(args.out / "packing.txt", "a", encoding="utf-8") as f:
        f.write(line + "\n")
    print(line)
    return 0


def _into_results(args: argparse.Namespace) -> int:
    from bench.report import store_section

    records = [json.loads(line) for line in args.records.read_text().splitlines() if line.strip()]
    path = store_section(section(records, notes=args.note), args.results)
    print(f"section 'gpu' ({len(records)} arms) written into {path} and {path.with_suffix('.md').name}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.gpu_record", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("arm", help="append one arm's record to OUT/packing.jsonl (and a line to packing.txt)")
    a.add_argument("--out", type=Path, required=True)
    a.add_argument("--arm", required=True)
    a.add_argument("--label", required=True)
    a.add_argument("--shape", required=True, help="model, image size, batch, epochs, data: what every arm trains")
    a.add_argument("--card", default="unknown GPU")
    a.add_argument("--start", type=float, required=True, help="launch start, seconds since the epoch")
    a.add_argument("--end", type=float, required=True)
    a.add_argument("--rc", type=int, default=0)
    a.add_argument("--summary", type=Path, help="the launch's --json output")
    a.add_argument("--dmon", type=Path, help="nvidia-smi dmon -s um -o T log")
    a.set_defaults(func=_arm)
    r = sub.add_parser("into-results", help="records (packing.jsonl) -> the gpu section of bench/results.json/.md")
    r.add_argument("records", type=Path)
    r.add_argument("--note", action="append", default=[])
    r.add_argument("--results", type=Path, default=None, help="results JSON (default bench/results.json)")
    r.set_defaults(func=_into_results)
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
