"""Shared fixtures: an isolated offline Ultralytics, a tiny learnable YOLO dataset, study files."""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
#: The seed's search (studies/lr_momentum.yaml: lr0, lrf, momentum): the tests' space and base, written once.
SEED_SEARCH = yaml.safe_load((REPO / "studies" / "lr_momentum.yaml").read_text())
#: The demo study (studies/demo.yaml), as the user gets it.
DEMO = yaml.safe_load((REPO / "studies" / "demo.yaml").read_text())


@pytest.fixture(scope="session", autouse=True)
def _offline_ultralytics(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every test (and every subprocess it starts) uses an isolated, offline Ultralytics."""
    os.environ["HPO_YOLO_CONFIG_DIR"] = str(tmp_path_factory.mktemp("yolo-config"))
    os.environ.pop("YOLO_CONFIG_DIR", None)
    os.environ.pop("HPO_STORAGE", None)
    from hpo.offline import configure_offline

    configure_offline()


def sigint_as_in_a_terminal() -> None:
    """``preexec_fn`` of a child that a test sends Ctrl-C: SIGINT back to its default. A test run from a
    background job (`make test &`, a CI runner) inherits SIGINT ignored, and Python then never raises
    KeyboardInterrupt; a terminal's foreground job has the default."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for(predicate, timeout: float, what: str) -> None:
    """Poll ``predicate`` every 0.5 s until it holds; fail naming ``what`` after ``timeout`` seconds."""
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def make_toy_dataset(root: Path, n_train: int = 48, n_val: int = 16, seed: int = 0) -> Path:
    """A tiny two-class YOLO dataset (pink ellipses = pig, dark squares = cow) that trains in seconds."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            w_img, h_img = 128, 96
            im = Image.new("RGB", (w_img, h_img), tuple(int(x) for x in rng.integers(60, 200, 3)))
            draw = ImageDraw.Draw(im)
            lines = []
            for _ in range(int(rng.integers(1, 4))):
                cls = int(rng.integers(0, 2))
                w, h = int(rng.integers(20, 45)), int(rng.integers(18, 36))
                x, y = int(rng.integers(0, w_img - w)), int(rng.integers(0, h_img - h))
                if cls == 0:
                    draw.ellipse([x, y, x + w, y + h], fill=(240, 150, 160))
                else:
                    draw.rectangle([x, y, x + w, y + h], fill=(30, 30, 30))
                    draw.rectangle([x + w // 4, y + h // 4, x + w // 2, y + h // 2], fill=(250, 250, 250))
                lines.append(f"{cls} {(x + w / 2) / w_img:.6f} {(y + h / 2) / h_img:.6f} {w / w_img:.6f} {h / h_img:.6f}")
            im.save(root / "images" / split / f"{i:04d}.jpg")
            (root / "labels" / split / f"{i:04d}.txt").write_text("\n".join(lines) + "\n")
    data = root / "data.yaml"
    data.write_text(yaml.safe_dump({"path": str(root), "train": "images/train", "val": "images/val",
                                    "names": ["pig", "cow"]}))
    return data


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_toy_dataset(tmp_path_factory.mktemp("toy"))


def tiny_spec_dict(data: Path, *, name: str = "tiny", epochs: int = 2, trials: int = 3,
                   sampler: str = "ga", pruner: str = "none") -> dict:
    """The seed's search (space and base hyps of studies/lr_momentum.yaml), shrunk to seconds per trial."""
    return {
        "name": name,
        "model": "yolov5n-p6.yaml",
        "data": str(data),
        "train": {"epochs": epochs, "imgsz": 64, "batch": 8, "nbs": 8, "optimizer": "SGD",
                  "cos_lr": True, "warmup_epochs": 0, "close_mosaic": 0, "seed": 0},
        "objective": {"metric": "fitness", "direction": "maximize"},
        "search_space": copy.deepcopy(SEED_SEARCH["search_space"]),
        "base": copy.deepcopy(SEED_SEARCH["base"]),
        "sampler": sampler,
        "pruner": pruner,
        "trials": trials,
    }


@pytest.fixture
def tiny_study_file(tmp_path: Path, toy_data: Path):
    def write(**kwargs) -> Path:
        spec = tiny_spec_dict(toy_data, **kwargs)
        path = tmp_path / f"{spec['name']}.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        return path

    return write


@pytest.fixture(scope="session")
def fin(tmp_path_factory: pytest.TempPathFactory, toy_data: Path):
    """A small finished study, shared by the final-stage tests (built once: it trains for real)."""
    from final_support import finished_study

    return finished_study(tmp_path_factory, toy_data)


@pytest.fixture(scope="session")
def done(fin):
    """The shared study after `hpo retrain --top-k 2`."""
    from final_support import retrained

    return retrained(fin)


def hpo_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "hpo", *args]
