"""5. Trial overhead: one trial through ``hpo worker`` vs the same ``model.train()`` outside hpo."""

from __future__ import annotations

import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.common import REPO, child_env, fmt_stat, fresh_dir, ratios, run_measured, say, stat, tail
from bench.context import Context, Section, begin, end
from bench.demo import demo_spec_dict, ensure_demo_data, read_study, warm_label_cache

NAME = "trial"
TITLE = "5. Trial overhead vs plain training"
TARGET = 1.05


def run(ctx: Context) -> Section:
    sec, t0 = begin(NAME, TITLE)
    data = ensure_demo_data(ctx.workdir)
    cores = os.cpu_count() or 1
    threads = max(1, cores // ctx.jobs)
    warm_label_cache(ctx.workdir, data, threads)
    epochs = 2 if ctx.quick else None
    repeats = ctx.reps(3, 1)
    spec = demo_spec_dict(data, epochs=epochs, trials=1, name="trial-overhead")
    n_epochs = spec["train"]["epochs"]
    side = ctx.jobs >= 2
    sec.setup = [
        f"The demo study's first trial (its base hyps lr0 0.01, lrf 0.1, momentum 0.937; yolov5n-p6 from "
        f"scratch, {n_epochs} epochs at 128 px on the demo twin's mini set, CPU, {threads} thread(s)).",
        "**hpo**: `python -m hpo worker --study … --storage sqlite:///… --device cpu` on a study created "
        "with a budget of 1 (fresh SQLite file): the real worker process, its Worker loop, TrialRunner, "
        "per-epoch report / pruning check / metrics attribute, heartbeats, artifact upload, keep policy.",
        "**plain**: `python -m bench.demo plain`: `YOLO(model).train(**args)` with "
        "`args = TrialRunner.train_args(base hyps, save_dir)`, i.e. identical arguments, no callbacks, "
        "no storage.",
        "Figures: wall time of each process (interpreter start to exit, imports included) and the time "
        "of `model.train()` alone (hpo's `train_seconds` trial attribute, the same clock in the plain run). "
        + (f"The two arms of a repeat run side by side ({threads} thread each) so that both see the same "
           "machine; " if side else "The two arms of a repeat run back to back, alternating order; ")
        + f"{repeats} repeat(s), ratio per repeat. Ultralytics' label cache is built beforehand.",
    ]
    runs: list[dict[str, Any]] = []
    for rep in range(repeats):
        d = fresh_dir(ctx.workdir / "trial" / f"rep{rep}")
        spec_file = d / "spec.json"
        spec_file.write_text(json.dumps(spec))
        url = f"sqlite:///{d / 'hpo.db'}"
        from hpo.spec import parse_spec
        from hpo.storage import open_storage
        from hpo.study import create_or_join

        storage = open_storage(url)
        create_or_join(storage, parse_spec(spec), budget=1)
        storage.engine.dispose()
        cmds = {
            "hpo": [sys.executable, "-m", "hpo", "worker", "--study", spec["name"], "--storage", url, "--seed", "0",
                    "--worker-index", "0", "--device", "cpu", "--runs-dir", str(d / "runs"), "--keep", "3"],
            "plain": [sys.executable, "-m", "bench.demo", "plain", "--spec", str(spec_file), "--save-dir",
                      str(d / "plain" / "run"), "--out", str(d / "plain.json")],
        }
        order = ["plain", "hpo"] if rep % 2 == 0 else ["hpo", "plain"]
        env = child_env(threads)

        def go(arm: str) -> dict[str, Any]:
            return run_measured(cmds[arm], env=env, cwd=REPO, log=d / f"{arm}.log", timeout=3600)

        if side:
            with ThreadPoolExecutor(2) as pool:
                futures = {arm: pool.submit(go, arm) for arm in order}
                res = {arm: f.result() for arm, f in futures.items()}
        else:
            res = {arm: go(arm) for arm in order}
        for arm in order:
            if res[arm]["rc"] != 0:
                raise RuntimeError(f"{arm} run failed (exit {res[arm]['rc']}): {tail(d / f'{arm}.log')}")
        trials = read_study(url, spec["name"])["trials"]
        hpo_trial = next(t for t in trials if t["state"] == "COMPLETE")
        plain = json.loads((d / "plain.json").read_text())
        r = {"hpo_wall_s": res["hpo"]["seconds"], "plain_wall_s": res["plain"]["seconds"],
             "hpo_train_s": hpo_trial["train_seconds"], "plain_train_s": plain["train_seconds"],
             "hpo_value": hpo_trial["value"], "plain_value": plain["value"], "hpo_params": hpo_trial["params"],
             "hpo_maxrss_mib": res["hpo"]["maxrss_mib"], "plain_maxrss_mib": res["plain"]["maxrss_mib"]}
        runs.append(r)
        say(f"trial rep {rep + 1}: hpo {r['hpo_wall_s']:.1f} s (train {r['hpo_train_s']:.1f}), plain "
            f"{r['plain_wall_s']:.1f} s (train {r['plain_train_s']:.1f}); values {r['hpo_value']:.5f} / "
            f"{r['plain_value']:.5f}")
    wall = stat(ratios([r["hpo_wall_s"] for r in runs], [r["plain_wall_s"] for r in runs]))
    train = stat(ratios([r["hpo_train_s"] for r in runs], [r["plain_train_s"] for r in runs]))
    outside_h = stat([r["hpo_wall_s"] - r["hpo_train_s"] for r in runs])
    outside_p = stat([r["plain_wall_s"] - r["plain_train_s"] for r in runs])
    same = all(abs(r["hpo_value"] - r["plain_value"]) < 1e-5 for r in runs)  # results.csv keeps 6 digits
    sec.table(f"One {n_epochs}-epoch trial, seconds, median [min–max]",
              ["", "plain Ultralytics", "hpo worker", "hpo / plain"],
              [["process wall time", fmt_stat(stat([r["plain_wall_s"] for r in runs]), 1),
                fmt_stat(stat([r["hpo_wall_s"] for r in runs]), 1), f"**{fmt_stat(wall, 3)}**"],
               ["`model.train()` alone", fmt_stat(stat([r["plain_train_s"] for r in runs]), 1),
                fmt_stat(stat([r["hpo_train_s"] for r in runs]), 1), fmt_stat(train, 3)],
               ["outside `model.train()` (start-up, storage, upload)", fmt_stat(outside_p, 1),
                fmt_stat(outside_h, 1), ""],
               ["peak memory (MiB)", fmt_stat(stat([r["plain_maxrss_mib"] for r in runs]), 0),
                fmt_stat(stat([r["hpo_maxrss_mib"] for r in runs]), 0), ""],
               ["objective reached (best epoch)", f"{runs[0]['plain_value']:.5f}", f"{runs[0]['hpo_value']:.5f}",
                "identical" if same else "differs"]])
    sec.target(f"one trial through hpo ≤ {TARGET}× the same plain training (process wall time)",
               f"{fmt_stat(wall, 3)}× (model.train() alone {fmt_stat(train, 3)}×)",
               None if wall["median"] is None or ctx.quick else wall["median"] <= TARGET,
               "quick mode: 2 epochs, fixed costs weigh more" if ctx.quick else "")
    if not same:
        sec.notes.append("The hpo trial and the plain training did not reach the same objective although "
                         "their arguments and seed are the same: see results.json (runs).")
    else:
        sec.notes.append("Same arguments and seed give the same objective in both arms in every repeat: "
                         "the trial is the plain training, only observed.")
    sec.raw = {"settings": {"epochs": n_epochs, "repeats": repeats, "threads": threads, "side_by_side": side},
               "runs": runs, "wall_ratio": wall, "train_ratio": train}
    return end(sec, t0)
