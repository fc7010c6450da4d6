"""What Ultralytics accepts as training arguments, and YOLOv5's GA table mapped onto it.

Names are read without importing Ultralytics (which pulls in torch): they come from the package's
own ``cfg/default.yaml`` so they track the installed version. Values are checked by Ultralytics'
own ``check_cfg`` (:func:`check_value`), imported offline and only when a spec is validated.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from pathlib import Path
from typing import Any

import yaml

# YOLOv5 hyps that have no Ultralytics counterpart (its loss is anchor-free, without objectness): passing one to
# Ultralytics is an error, so a study naming one is rejected with this explanation.
YOLOV5_ONLY: dict[str, str] = {
    "obj": "YOLOv5's objectness loss gain; Ultralytics detection is anchor-free and has no objectness loss",
    "obj_pw": "YOLOv5's objectness BCE positive weight; there is no objectness loss in Ultralytics",
    "iou_t": "YOLOv5's IoU training threshold; Ultralytics assigns targets with its task-aligned assigner",
    "anchor_t": "YOLOv5's anchor-multiple threshold; Ultralytics models are anchor-free",
    "anchors": "YOLOv5's anchors per output layer; Ultralytics models are anchor-free",
    "fl_gamma": "YOLOv5's focal loss gamma; Ultralytics has no such training argument",
}

# Keys that mean something else in Ultralytics than in YOLOv5 (reported on YOLOv5 import).
RESCALED = {
    "box": "box loss gain is on another scale in Ultralytics (default 7.5, YOLOv5 0.05)",
    "cls": "cls loss gain is on another scale in Ultralytics (default 0.5, YOLOv5 0.5 per class-normalised)",
    "cls_pw": "cls_pw means class-frequency weighting power in Ultralytics, not YOLOv5's BCE positive weight",
}

# YOLOv5 v7.0 evolve table (``meta`` in YOLOv5's train.py): name -> (gain, low, high).
YOLOV5_META: dict[str, tuple[float, float, float]] = {
    "lr0": (1, 1e-5, 1e-1), "lrf": (1, 0.01, 1.0), "momentum": (0.3, 0.6, 0.98),
    "weight_decay": (1, 0.0, 0.001), "warmup_epochs": (1, 0.0, 5.0),
    "warmup_momentum": (1, 0.0, 0.95), "warmup_bias_lr": (1, 0.0, 0.2), "box": (1, 0.02, 0.2),
    "cls": (1, 0.2, 4.0), "cls_pw": (1, 0.5, 2.0), "obj": (1, 0.2, 4.0), "obj_pw": (1, 0.5, 2.0),
    "iou_t": (0, 0.1, 0.7), "anchor_t": (1, 2.0, 8.0), "fl_gamma": (0, 0.0, 2.0),
    "hsv_h": (1, 0.0, 0.1), "hsv_s": (1, 0.0, 0.9), "hsv_v": (1, 0.0, 0.9),
    "degrees": (1, 0.0, 45.0), "translate": (1, 0.0, 0.9), "scale": (1, 0.0, 0.9),
    "shear": (1, 0.0, 10.0), "perspective": (0, 0.0, 0.001), "flipud": (1, 0.0, 1.0),
    "fliplr": (0, 0.0, 1.0), "mosaic": (1, 0.0, 1.0), "mixup": (1, 0.0, 1.0),
    "copy_paste": (1, 0.0, 1.0),
}

# YOLOv5's hyp.scratch-low.yaml defaults, the base of a ``--format yolov5`` export.
YOLOV5_DEFAULTS: dict[str, float] = {
    "lr0": 0.01, "lrf": 0.01, "momentum": 0.937, "weight_decay": 0.0005, "warmup_epochs": 3.0,
    "warmup_momentum": 0.8, "warmup_bias_lr": 0.1, "box": 0.05, "cls": 0.5, "cls_pw": 1.0,
    "obj": 1.0, "obj_pw": 1.0, "iou_t": 0.20, "anchor_t": 4.0, "fl_gamma": 0.0, "hsv_h": 0.015,
    "hsv_s": 0.7, "hsv_v": 0.4, "degrees": 0.0, "translate": 0.1, "scale": 0.5, "shear": 0.0,
    "perspective": 0.0, "flipud": 0.0, "fliplr": 0.5, "mosaic": 1.0, "mixup": 0.0,
    "copy_paste": 0.0,
}

# Default GA gain for Ultralytics-only hyps (Ultralytics' tuner uses 1 unless told otherwise).
DEFAULT_GAIN = 1.0

# torch.compile's modes, which Ultralytics' `compile` passes on (true means "default").
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")

# Training arguments hpo sets itself for every trial: a study may not fix them.
RESERVED_ARGS = frozenset({"mode", "task", "model", "data", "project", "name", "exist_ok", "resume",
                           "save_dir", "cfg", "tracker", "source"})


def default_gain(name: str) -> float:
    """YOLOv5's gain for names it knows, else :data:`DEFAULT_GAIN`."""
    if name in YOLOV5_META and name not in RESCALED:
        return float(YOLOV5_META[name][0])
    return DEFAULT_GAIN


@functools.lru_cache(maxsize=1)
def ultralytics_defaults() -> dict[str, Any]:
    """Ultralytics' default training configuration, read from the installed package."""
    spec = importlib.util.find_spec("ultralytics")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("ultralytics is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "cfg" / "default.yaml"
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def is_training_arg(name: str) -> bool:
    return name in ultralytics_defaults()


def _ultralytics_cfg() -> Any:
    """``ultralytics.cfg``, imported offline (:mod:`hpo.offline`); it pulls in torch, so only on demand."""
    from hpo.offline import import_ultralytics

    import_ultralytics()
    import ultralytics.cfg

    return ultralytics.cfg


def check_value(name: str, value: Any) -> str | None:
    """Why Ultralytics would refuse ``name: value`` as a training argument, or None if it takes it.

    The types and ranges are Ultralytics' own (``ultralytics.cfg.check_cfg``, strict mode), so a study
    is refused on load instead of every one of its trials failing in ``model.train()``.
    """
    from hpo.errors import shown

    cfg = _ultralytics_cfg()
    try:
        cfg.check_cfg({name: value}, hard=True)
    except TypeError:
        if value is None:
            return f"null is not allowed (Ultralytics' default is {shown(ultralytics_defaults().get(name))})"
        if name in cfg.CFG_INT_KEYS:
            kind = "an integer"
        elif name in cfg.CFG_FLOAT_KEYS | cfg.CFG_FRACTION_KEYS or name == "scale":
            kind = "a number"
        elif name in cfg.CFG_BOOL_KEYS:
            kind = "a boolean (true or false)"
        elif name in cfg.CFG_STR_KEYS:
            kind = "a string"
        elif name == "compile":
            kind = "a boolean or a torch.compile mode"
        else:
            kind = "of the type Ultralytics expects"
        return f"{shown(value)} is not {kind}"
    except ValueError as exc:
        # Ultralytics starts with "'name=value' is an invalid value." (the value may be long): say why only.
        reason = re.sub(r"^'.*?' (?:is an invalid value|is invalid|invalid)\.\s*", "", str(exc), flags=re.S)
        return f"{shown(value)} is invalid: {reason}"
    if name == "compile" and isinstance(value, str) and value not in COMPILE_MODES:
        # Ultralytics takes any string and, when torch.compile refuses it, trains uncompiled with a warning.
        return f"{shown(value)} is not a torch.compile mode ({', '.join(COMPILE_MODES)}; or true/false)"
    return None
