"""Our own pretrained weights, offline: a small P6 YOLOv5 pretrained on a pasture-look twin.

Real users fine-tune from COCO weights; nothing may be downloaded here, so we make a stand-in. The
recipe: ``hpo data synth --style pasture`` (another seed, another look than the farm twins the
studies tune on, and more images), ``hpo data prepare``, then a deterministic Ultralytics training
of ``yolov5n-p6.yaml`` at 128 px on its ``train.yaml`` (4 folds train, 1 fold validation).

The checkpoint is cached by a hash of everything that decides its bytes: the recipe, the versions
of Ultralytics / torch / NumPy / OpenCV, the bytes of the generated twin (regenerated on every call,
a few seconds: a generator change that alters this twin means new weights, one that does not, such
as a new style, keeps them), the torch thread count and the device. A second call with the same
recipe returns the cached file at once.

    python -m bench.pretrain                 # build (a few minutes on 2 cores) or reuse; prints the path
    python -m bench.pretrain --quick         # tiny recipe (seconds), for the test suite
    python -m bench --only pretrain          # the same, reported in bench/results.md

Layout under ``--root`` (default ``bench/.work/pretrained``, git-ignored)::

    <key>/pretrained.pt    the weights (Ultralytics best.pt: highest fitness on the twin's validation fold)
    <key>/pretrain.json    recipe, key, per-epoch metrics, final metrics, seconds
    <key>/train/           the Ultralytics run
    twins/<hash>/          the raw twin and its prepared YOLO sets (hash of the synth + prepare options)
    yolov5n-p6-pasture.pt  a copy of the latest full recipe's weights (what studies/finetune.yaml loads)
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import shutil
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = REPO / "bench" / ".work" / "pretrained"
#: Stable name of the full recipe's weights, the default ``weights:`` of studies/finetune.yaml.
LATEST_NAME = "yolov5n-p6-pasture.pt"
#: The committed copy (what `make demo` fine-tunes on a fresh clone) and its provenance record.
COMMITTED = REPO / "weights" / LATEST_NAME
COMMITTED_RECORD = COMMITTED.with_suffix(".json")

#: The full recipe: a few minutes on 2 CPU cores (1 torch thread); measured: bench/results.md, section 7.
RECIPE: dict[str, Any] = {
    "recipe_version": 1,
    # Another seed and another look than the twins of the studies (seed 0, style farm or night), and
    # 800 images instead of 320: the pretraining set plays COCO's part.
    "synth": {"cows": 600, "pigs": 200, "scale": 0.1, "seed": 1, "style": "pasture"},
    "prepare": {"folds": 5, "valid_fold": 4, "seed": 42},
    "split": "train",  # train.yaml: 640 training images, 160 validation
    "model": "yolov5n-p6.yaml",
    "train": {"epochs": 20, "imgsz": 128, "batch": 16, "nbs": 16, "optimizer": "SGD", "lr0": 0.01,
              "lrf": 0.01, "momentum": 0.937, "weight_decay": 0.0005, "cos_lr": True,
              "warmup_epochs": 1, "close_mosaic": 3, "seed": 0, "deterministic": True},
}

#: Smoke-test recipe: same steps, tiny sizes (a few seconds of training).
QUICK: dict[str, Any] = copy.deepcopy(RECIPE)
QUICK["synth"].update({"cows": 24, "pigs": 8})
QUICK["train"].update({"epochs": 2, "imgsz": 64, "batch": 8, "nbs": 8, "close_mosaic": 0, "warmup_epochs": 0})


def recipe_for(quick: bool) -> dict[str, Any]:
    return copy.deepcopy(QUICK if quick else RECIPE)


def _fingerprint() -> dict[str, str]:
    """Everything outside the recipe that changes the weights' bytes."""
    out = {}
    for name in ("ultralytics", "torch", "numpy", "opencv-python", "opencv-python-headless"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def twin_digest(raw: Path) -> str:
    """sha256 over the generated raw twin (names and bytes of every file, in order)."""
    h = hashlib.sha256()
    for path in sorted(p for p in raw.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(raw)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def tensor_digest(weights: Path) -> str:
    """sha256 over the checkpoint's tensors (names, dtypes, shapes, bytes), not the file: Ultralytics
    writes the date and its version into the file, so two identical trainings differ as files."""
    import torch

    ckpt = torch.load(weights, map_location="cpu", weights_only=False)
    model = ckpt.get("ema") or ckpt["model"]
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode() + b"\0" + t.numpy().tobytes())
    return h.hexdigest()


def recipe_key(recipe: dict[str, Any], threads: int, device: str = "cpu", twin: str = "") -> str:
    """Cache key: hash of the recipe, the library versions, the twin's bytes, threads and device."""
    parts: dict[str, Any] = {"recipe": recipe, "env": _fingerprint(), "twin": twin, "threads": threads}
    if device != "cpu":  # GPU numerics differ from CPU ones: another checkpoint
        parts["device"] = device
    blob = json.dumps(parts, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _hpo_data(*args: str) -> None:
    """One `hpo data` command in-process (the same functions the CLI calls)."""
    from typer.testing import CliRunner

    from hpo.cli.data import app

    r = CliRunner().invoke(app, list(args))
    if r.exit_code != 0:
        raise RuntimeError(f"hpo data {' '.join(args)} failed (exit {r.exit_code}): {r.output[-2000:]}")


def build_data(recipe: dict[str, Any], root: Path) -> Path:
    """`hpo data synth` + `hpo data prepare` of the recipe into ``root``; returns the data yaml."""
    s, p = recipe["synth"], recipe["prepare"]
    _hpo_data("synth", str(root / "raw"), "--cows", str(s["cows"]), "--pigs", str(s["pigs"]),
              "--scale", str(s["scale"]), "--seed", str(s["seed"]), "--style", s["style"])
    _hpo_data("prepare", str(root / "raw"), str(root / "yolo"), "--folds", str(p["folds"]),
              "--valid-fold", str(p["valid_fold"]), "--seed", str(p["seed"]))
    return root / "yolo" / f"{recipe['split']}.yaml"


def train(recipe: dict[str, Any], data: Path, save_dir: Path, threads: int, device: str = "cpu") -> dict[str, Any]:
    """The deterministic pretraining; per-epoch metrics and the final validation of best.pt."""
    from hpo.search.objective import metrics_from_trainer
    from hpo.offline import import_ultralytics

    import_ultralytics()
    import torch
    from ultralytics import YOLO

    torch.set_num_threads(threads)
    epochs: list[dict[str, float]] = []
    final: dict[str, float] = {}
    pending = {"epoch": False}

    def on_pretrain_routine_start(trainer: Any) -> None:
        torch.set_num_threads(threads)  # select_device("cpu") resets it to cores - 1

    def on_train_epoch_end(trainer: Any) -> None:
        pending["epoch"] = True

    def on_fit_epoch_end(trainer: Any) -> None:
        metrics = {k: round(float(v), 5) for k, v in metrics_from_trainer(trainer).items() if v is not None}
        if pending["epoch"]:
            pending["epoch"] = False
            epochs.append({"epoch": trainer.epoch + 1, "seconds": round(time.perf_counter() - start, 1), **metrics})
        else:  # the extra call after training: the final evaluation of best.pt
            final.update(metrics)

    model = YOLO(recipe["model"])
    for event, fn in (("on_pretrain_routine_start", on_pretrain_routine_start),
                      ("on_train_epoch_end", on_train_epoch_end), ("on_fit_epoch_end", on_fit_epoch_end)):
        model.add_callback(event, fn)
    start = time.perf_counter()
    model.train(data=str(data), project=str(save_dir.parent), name=save_dir.name,
                exist_ok=True, device=device, amp=False, workers=0 if device == "cpu" else 4, plots=False, verbose=False, val=True,
                pretrained=False, **recipe["train"])
    return {"epochs": epochs, "final": final, "train_seconds": round(time.perf_counter() - start, 1)}


def pretrain(*, quick: bool = False, root: Path = DEFAULT_ROOT, threads: int = 1, force: bool = False,
             device: str = "cpu", log: Any = None) -> dict[str, Any]:
    """Build (or reuse) the recipe's checkpoint; returns its ``pretrain.json`` record plus ``cached``."""
    say = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    from hpo.offline import configure_offline

    configure_offline()
    recipe = recipe_for(quick)
    root = Path(root).resolve()
    t0 = time.perf_counter()
    options = {k: recipe[k] for k in ("synth", "prepare", "split")}
    twin_dir = root / "twins" / hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:10]
    data = build_data(recipe, twin_dir)
    twin = twin_digest(twin_dir / "raw")
    t_data = time.perf_counter() - t0
    key = recipe_key(recipe, threads, device, twin)
    out = root / key
    record_path = out / "pretrain.json"
    weights = out / "pretrained.pt"
    if not force and record_path.is_file() and weights.is_file():
        record = json.loads(record_path.read_text())
        say(f"pretrained weights cached: {weights}")
        return {**record, "cached": True}
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    say(f"pretraining twin ready ({t_data:.1f} s): {data}; training {recipe['model']} "
        f"for {recipe['train']['epochs']} epochs")
    result = train(recipe, data, out / "train", threads, device)
    best = out / "train" / "weights" / "best.pt"
    if not best.is_file():
        raise RuntimeError(f"training wrote no {best}")
    shutil.copyfile(best, weights)
    record = {"key": key, "recipe": recipe, "env": _fingerprint(), "threads": threads, "device": device, "quick": quick,
              "weights": str(weights), "weights_sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
              "data": str(data), "twin_sha256": twin, "data_seconds": round(t_data, 1), **result,
              "seconds": round(time.perf_counter() - t0, 1)}
    record_path.write_text(json.dumps(record, indent=1) + "\n")
    if not quick and device == "cpu":
        tmp = root / f".{LATEST_NAME}.{os.getpid()}"
        shutil.copyfile(weights, tmp)
        os.replace(tmp, root / LATEST_NAME)
    say(f"pretrained in {record['seconds']:.0f} s: {weights} (final mAP50 "
        f"{record['final'].get('map50', float('nan')):.3f}, mAP50-95 {record['final'].get('map50-95', float('nan')):.3f})")
    return {**record, "cached": False}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.pretrain", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny recipe (smoke test)")
    p.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="cache folder")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (part of the cache key); 1: two threads on 2 shared cores stall on each other")
    p.add_argument("--force", action="store_true", help="retrain even if cached")
    p.add_argument("--device", default="cpu", help="cpu, or a CUDA index such as 0 (part of the cache key)")
    p.add_argument("--json", action="store_true", help="print the record as JSON")
    p.add_argument("--publish", action="store_true",
                   help=f"copy the full recipe's weights to {COMMITTED.relative_to(REPO)} with their provenance record")
    p.add_argument("--verify", action="store_true",
                   help=f"exit 1 unless the recipe's weights (cached, or retrained with --force) have the tensors of "
                        f"{COMMITTED.relative_to(REPO)}")
    args = p.parse_args(argv)
    if (args.publish or args.verify) and (args.quick or args.device != "cpu" or args.threads != 1):
        p.error("--publish/--verify are for the committed recipe: CPU, 1 thread, not --quick")
    record = pretrain(quick=args.quick, root=args.root, threads=args.threads, force=args.force,
                      device=args.device)
    if args.publish:
        publish(record)
    print(json.dumps(record, indent=1) if args.json else record["weights"])
    if args.verify:
        return verify(record)
    return 0


def provenance(record: dict[str, Any]) -> dict[str, Any]:
    """What the committed checkpoint is and how to make it again (weights/yolov5n-p6-pasture.json)."""
    keep = ("key", "recipe", "env", "threads", "device", "twin_sha256", "final", "epochs", "train_seconds")
    return {"made_by": "python -m bench.pretrain --publish", "file": COMMITTED.name,
            "tensor_sha256": tensor_digest(Path(record["weights"])), **{k: record[k] for k in keep}}


def publish(record: dict[str, Any]) -> None:
    """Copy the recipe's weights into the project, next to their provenance record."""
    COMMITTED.parent.mkdir(parents=True, exist_ok=True)
    tmp = COMMITTED.with_name(f".{COMMITTED.name}.{os.getpid()}")
    shutil.copyfile(record["weights"], tmp)
    os.replace(tmp, COMMITTED)
    COMMITTED_RECORD.write_text(json.dumps(provenance(record), indent=1) + "\n")
    print(f"published {COMMITTED} ({COMMITTED.stat().st_size / 1e6:.1f} MB) and {COMMITTED_RECORD.name}",
          file=sys.stderr)


def verify(record: dict[str, Any]) -> int:
    """0 when the recipe reproduced the committed checkpoint tensor for tensor, else 1 (and why)."""
    committed = json.loads(COMMITTED_RECORD.read_text())
    problems = []
    if record["key"] != committed["key"]:
        problems.append(f"recipe key {record['key']} != committed {committed['key']} (recipe, versions or twin changed)")
    got = tensor_digest(Path(record["weights"]))
    if got != committed["tensor_sha256"] or got != tensor_digest(COMMITTED):
        problems.append(f"tensors {got[:12]} != committed {committed['tensor_sha256'][:12]}")
    for line in problems:
        print(f"verify: {line}", file=sys.stderr)
    if not problems:
        print(f"verify: the recipe reproduced {COMMITTED.relative_to(REPO)} tensor for tensor "
              f"({'cached' if record.get('cached') else 'retrained'})", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
