"""``python -m bench``: run the benchmark suite and write bench/results.md + bench/results.json.

    python -m bench                          # everything: several hours on 2 CPU cores
    python -m bench --only overhead,scaling  # a subset: the other sections of results.json are kept
    python -m bench --quick                  # smoke run (a few minutes), to bench/.work/quick/

Benchmarks: overhead, scaling, pruning, search, trial, dataprep, pretrain, finetune, finetune_search,
hypervolume, prune_replay, fidelity (see bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
import uuid
from pathlib import Path

from bench.common import DEFAULT_PG, DEFAULT_WORKDIR, PG_ENV, REPO, StorageFactory, load_average, \
    machine_info, say, versions, write_json
from bench.context import Context, Section

ORDER = ("overhead", "scaling", "pruning", "search", "trial", "dataprep", "pretrain", "finetune", "finetune_search",
         "hypervolume", "prune_replay", "fidelity")
#: Sections measured away from ``make bench`` (a lent GPU machine: bench/gpu_record.py) and imported into
#: results.json: every run here keeps them (unless ``--fresh``), a full run too.
IMPORTED = ("gpu",)


def _modules() -> dict[str, object]:
    from bench import dataprep, fidelity, finetune, finetune_search, hypervolume, overhead, prune_replay, scaling, \
        training, trial

    return {"overhead": overhead, "scaling": scaling, "pruning": training.Pruning,
            "search": training.Search, "trial": trial, "dataprep": dataprep,
            "pretrain": finetune.Pretrain, "finetune": finetune.Finetune,
            "finetune_search": finetune_search.FinetuneSearch, "hypervolume": hypervolume,
            "prune_replay": prune_replay.PruneReplay, "fidelity": fidelity.Fidelity}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke-test sizes and one repeat (a few minutes)")
    p.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(ORDER)}")
    p.add_argument("--out", type=Path, default=None,
                   help="results markdown (default bench/results.md, or bench/.work/quick/results.md "
                        "with --quick); the JSON goes next to it")
    p.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="scratch folder (data, databases, runs)")
    p.add_argument("--storages", default="sqlite,postgresql",
                   help="storages of the overhead benchmark (scaling always uses PostgreSQL)")
    p.add_argument("--pg-url", default=os.environ.get(PG_ENV, DEFAULT_PG),
                   help=f"PostgreSQL server (SQLAlchemy URL; each run gets its own database; env {PG_ENV})")
    p.add_argument("--jobs", type=int, default=None,
                   help="trainings run side by side in the training benchmarks (default: 2 on >= 2 cores)")
    p.add_argument("--repeats", type=int, default=None, help="override every benchmark's repeat count")
    p.add_argument("--seeds", default=None, help="override the seeds of the training benchmarks, e.g. 0,1,2")
    p.add_argument("--tuner-repeats", type=int, default=None,
                   help="runs of Ultralytics' tuner in benchmark 4 (default 1; about 10 min of training each)")
    p.add_argument("--fresh", action="store_true", help="do not merge with an existing results.json")
    p.add_argument("--deadline", type=float, default=None,
                   help="minutes after which the hypervolume benchmark stops its studies (the trials finished by "
                        "then are counted and the section says so)")
    args = p.parse_args(argv)
    only = [x.strip() for x in args.only.split(",") if x.strip()]
    unknown = [x for x in only if x not in ORDER]
    if unknown:
        p.error(f"unknown benchmark {unknown[0]!r} (choose from {', '.join(ORDER)})")
    args.only = only or list(ORDER)
    storages = [x.strip() for x in args.storages.split(",") if x.strip()]
    bad = [x for x in storages if x not in ("sqlite", "postgresql")]
    if bad:
        p.error(f"unknown storage {bad[0]!r} (sqlite, postgresql)")
    args.storages = storages
    if args.out is None:
        args.out = (args.workdir / "quick" / "results.md") if args.quick else REPO / "bench" / "results.md"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HPO_YOLO_CONFIG_DIR", str(workdir / "ultralytics-config"))
    from hpo.offline import configure_offline

    configure_offline()
    os.environ.pop("HPO_STORAGE", None)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    from bench.common import pg_available

    needs_pg = "scaling" in args.only or ("overhead" in args.only and "postgresql" in args.storages)
    pg_missing = pg_available(args.pg_url) if needs_pg else None
    storages = list(args.storages)
    if pg_missing and "postgresql" in storages:
        say(f"PostgreSQL not reachable ({pg_missing}): its figures are left out")
        storages.remove("postgresql")
    cores = os.cpu_count() or 1
    ctx = Context(quick=args.quick, workdir=workdir, factory=StorageFactory(workdir, args.pg_url),
                  storages=storages, pg_missing=pg_missing,
                  jobs=args.jobs or (2 if cores >= 2 else 1), repeats=args.repeats,
                  seeds=[int(s) for s in args.seeds.split(",")] if args.seeds else None)
    ctx.shared["out_dir"] = args.out.parent.resolve()
    ctx.shared["selected"] = list(args.only)
    ctx.shared["tuner_repeats"] = args.tuner_repeats
    ctx.shared["deadline"] = time.time() + 60 * args.deadline if args.deadline else None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    run_id = uuid.uuid4().hex[:8]
    json_path = args.out.with_suffix(".json")
    previous = {} if args.fresh else kept_results(json_path, args.only, quick=args.quick)

    say(f"benchmarks: {', '.join(args.only)}{' (quick)' if args.quick else ''}; storages "
        f"{', '.join(storages) or 'none'}; {ctx.jobs} training job(s) side by side; results -> {args.out}")
    load_start = load_average()
    modules = _modules()
    sections: dict[str, dict] = {}
    try:
        for name in ORDER:
            if name not in args.only:
                continue
            try:
                sec: Section = modules[name].run(ctx)  # type: ignore[attr-defined]
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # noqa: BLE001 - one broken benchmark must not lose the others
                say(f"{name} failed: {exc}")
                traceback.print_exc()
                sec = Section(name=name, title=getattr(modules[name], "TITLE", name),
                              started=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                              error=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:500])
            d = sec.to_dict()
            d["run_id"] = run_id
            sections[name] = d
            _write(args, previous, sections, ctx, run_id, started, load_start)  # partial results survive
    finally:
        from bench.training import shutdown

        shutdown(ctx)
        ctx.factory.drop_all()
    path = _write(args, previous, sections, ctx, run_id, started, load_start)
    say(f"wrote {path} and {path.with_suffix('.json')}")
    return 1 if any(s.get("error") for s in sections.values()) else 0


def kept_results(json_path: Path, only: list[str], *, quick: bool) -> dict:
    """The earlier results a run keeps: a subset run keeps every other section, a full run the imported ones.

    Results of the other mode (``--quick`` or not) are never mixed in.
    """
    try:
        previous = json.loads(json_path.read_text())
    except (OSError, ValueError):
        return {}
    if bool(previous.get("quick")) != quick:
        return {}
    if set(only) == set(ORDER):
        previous["sections"] = {k: v for k, v in previous.get("sections", {}).items() if k in IMPORTED}
    return previous


def _write(args: argparse.Namespace, previous: dict, sections: dict, ctx: Context, run_id: str,
           started: float, load_start: list[float] | None) -> Path:
    from bench.report import render

    merged = {name: (sections.get(name) or previous.get("sections", {}).get(name))
              for name in ORDER + IMPORTED if name in sections or name in previous.get("sections", {})}
    cmd = "python -m bench" + ("" if len(sys.argv) <= 1 else " " + " ".join(sys.argv[1:]))
    results = {
        "run_id": run_id,
        "command": cmd,
        "quick": args.quick,
        "finished": time.strftime("%Y-%m-%d %H:%M %Z"),
        "seconds": round(time.perf_counter() - started, 1),
        "load_start": load_start,
        "load_end": load_average(),
        "machine": machine_info(),
        "versions": versions(args.pg_url if "postgresql" in ctx.storages or "scaling" in sections else None),
        "settings": {"jobs": ctx.jobs, "storages": ctx.storages, "workdir": str(ctx.workdir)},
        "sections": merged,
    }
    write_json(args.out.with_suffix(".json"), results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(results))
    return args.out


if __name__ == "__main__":
    sys.exit(main())
