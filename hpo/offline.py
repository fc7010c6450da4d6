"""Run Ultralytics fully offline.

Ultralytics reaches for the network in three places that matter to us: its settings/telemetry, the
Arial font its dataset checks and plots use, and the AMP check (which downloads a model). This module
sets the environment before the first ``import ultralytics`` so none of them fires, and hands out the
package through :func:`import_ultralytics` so no other module imports it too early.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from types import ModuleType

_FONT_NAMES = ("Arial.ttf", "Arial.Unicode.ttf")


def default_config_dir() -> Path:
    """An isolated Ultralytics config dir, so a user's own settings never leak into trials."""
    if env := os.environ.get("HPO_YOLO_CONFIG_DIR"):
        return Path(env).expanduser().resolve()
    return Path(tempfile.gettempdir()) / f"hpo-ultralytics-{os.getuid()}"


def _bundled_font() -> Path:
    """A TTF that ships with matplotlib (a dependency of Ultralytics): nothing to download."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"


def configure_offline(config_dir: Path | None = None) -> Path:
    """Set the offline environment for Ultralytics; safe to call many times.

    The variables are inherited by worker subprocesses, so the launcher calls this once too.
    """
    config_dir = config_dir or Path(os.environ.get("YOLO_CONFIG_DIR") or default_config_dir())
    os.environ.setdefault("YOLO_CONFIG_DIR", str(config_dir))
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "0"
    os.environ.setdefault("YOLO_VERBOSE", "False")
    fonts_dir = Path(os.environ["YOLO_CONFIG_DIR"]) / "Ultralytics"
    fonts_dir.mkdir(parents=True, exist_ok=True)
    for name in _FONT_NAMES:
        target = fonts_dir / name
        if not target.exists():
            tmp = target.with_suffix(f".{os.getpid()}.tmp")
            shutil.copyfile(_bundled_font(), tmp)
            os.replace(tmp, target)
    return Path(os.environ["YOLO_CONFIG_DIR"])


def import_ultralytics() -> ModuleType:
    """Import Ultralytics with the offline environment in place."""
    configure_offline()
    import ultralytics

    from ultralytics.utils import SETTINGS

    # No telemetry, no hub sync, no logging integrations that phone home.
    quiet = {"sync": False, "clearml": False, "comet": False, "dvc": False, "mlflow": False,
             "raytune": False, "tensorboard": False, "wandb": False, "vscode_msg": False,
             "openvino_msg": False}
    changed = {k: v for k, v in quiet.items() if k in SETTINGS and SETTINGS[k] != v}
    if changed:
        SETTINGS.update(changed)
    return ultralytics
