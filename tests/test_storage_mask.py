"""Storage passwords never reach the output, also when they hold an unencoded ``@`` (which SQLAlchemy
splits wrongly, taking part of the password for the host) or the URL cannot be parsed at all."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest

from hpo.storage import mask_url, scrub

from conftest import hpo_cmd

PIECES = ("S3c", "retPw", "S3c@retPw", "S3c%40retPw")


@pytest.mark.parametrize("url,masked", [
    ("postgresql+psycopg://postgres:S3c@retPw@host/db", "postgresql+psycopg://postgres:***@host/db"),
    ("postgresql+psycopg://postgres:S3c@retPw@127.0.0.1:5432/db", "postgresql+psycopg://postgres:***@127.0.0.1:5432/db"),
    ("postgresql+psycopg://postgres:a@b@c:d/e@host/db", "postgresql+psycopg://postgres:***@host/db"),
    ("postgresql+psycopg://postgres:S3c%40retPw@host/db", "postgresql+psycopg://postgres:***@host/db"),
    ("postgresql+psycopg://postgres:S3c@retPw@host:notaport/db", "postgresql+psycopg://postgres:***@host:notaport/db"),
    ("nonsense://postgres:S3c@retPw@host/db", "nonsense://postgres:***@host/db"),
    ("postgresql+psycopg://postgres@host/db", "postgresql+psycopg://postgres@host/db"),
    ("sqlite:////tmp/hpo.db", "sqlite:////tmp/hpo.db"),
])
def test_mask_url_masks_up_to_the_last_at(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_scrub_removes_every_piece_a_driver_may_quote() -> None:
    url = "postgresql+psycopg://postgres:S3c@retPw@127.0.0.1/db"
    said = f"failed to resolve host 'retPw@127.0.0.1' for {url} (password S3c)"
    assert scrub(said, url) == ("failed to resolve host '***@127.0.0.1' for "
                                "postgresql+psycopg://postgres:***@127.0.0.1/db (password ***)")


def _no_piece_of_the_password(*texts: str) -> None:
    for text in texts:
        for piece in PIECES:
            assert piece not in text, (piece, text)


@pytest.mark.parametrize("where", ["127.0.0.1", "127.0.0.1:5432", "127.0.0.1:1", "127.0.0.1:notaport"])
@pytest.mark.parametrize("via", ["--storage", "HPO_STORAGE"])
def test_status_never_prints_the_password(tmp_path: Path, where: str, via: str) -> None:
    url = f"postgresql+psycopg://postgres:S3c@retPw@{where}/hpo_mask_test"
    args = ["status", "--storage", url] if via == "--storage" else ["status"]
    env = {**os.environ, "HPO_STORAGE": url} if via == "HPO_STORAGE" else dict(os.environ)
    proc = subprocess.run(hpo_cmd(*args), capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("hpo: error: --storage: ")
    assert "postgres:***@" in proc.stderr
    _no_piece_of_the_password(proc.stdout, proc.stderr)


def test_status_on_real_postgresql_with_an_encoded_at(tmp_path: Path) -> None:
    """The same password, percent-encoded, connects (trust auth) and still never shows, decoded or not."""
    name = f"hpo_mask_{uuid.uuid4().hex[:8]}"
    admin_dsn = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
    with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = f"postgresql+psycopg://postgres:S3c%40retPw@127.0.0.1:5432/{name}"
        proc = subprocess.run(hpo_cmd("status", "--storage", url), capture_output=True, text=True,
                              cwd=tmp_path, timeout=120)
        assert proc.returncode == 0, proc.stderr
        _no_piece_of_the_password(proc.stdout, proc.stderr)
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
            admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
