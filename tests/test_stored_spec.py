"""A spec read back from a storage is not re-checked against Ultralytics: `hpo status` stays light."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import REPO, tiny_spec_dict


def test_reading_a_stored_spec_imports_neither_torch_nor_ultralytics(tmp_path: Path, toy_data: Path) -> None:
    from hpo.spec import parse_spec
    from hpo.storage import open_storage
    from hpo.study import create_or_join

    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    storage = open_storage(url)
    create_or_join(storage, parse_spec(tiny_spec_dict(toy_data)), sampler="tpe", pruner="none", budget=3)
    storage.engine.dispose()
    probe = ("import sys; from hpo.storage import open_storage; from hpo.study import load_settings; "
             f"s = load_settings(open_storage({url!r}), 'tiny'); "
             "print(s.spec.search_space['lr0'].high, 'torch' in sys.modules, 'ultralytics' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["0.1", "False", "False"]


def test_a_study_file_is_still_checked_against_ultralytics(tmp_path: Path, toy_data: Path) -> None:
    import pytest

    from hpo.errors import HpoError
    from hpo.spec import parse_spec

    bad = tiny_spec_dict(toy_data)
    bad["train"]["weight_decay"] = "x"
    with pytest.raises(HpoError, match="train.weight_decay: 'x' is not a number"):
        parse_spec(bad, "s.yaml")
    # The same values read back from a storage are trusted (they were checked at creation).
    assert parse_spec(bad, "stored", stored=True).train["weight_decay"] == "x"
