"""``hpo dashboard``: optuna-dashboard on the study storage, serving the trials' artifacts.

optuna-dashboard has no authentication: whoever reaches it can delete studies.
So it binds to the loopback interface unless told otherwise, and warns when it is told otherwise;
to look at it from another machine, an SSH tunnel (``ssh -L 8080:127.0.0.1:8080 host``) is safer.
"""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from hpo.errors import HpoError

NO_AUTH_WARNING = ("optuna-dashboard has no authentication: anyone who can reach {host}:{port} can read and "
                   "delete every study in this storage. Prefer the default 127.0.0.1 and an SSH tunnel.")


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _Server(ThreadingMixIn, WSGIServer):
    """Threads, because a browser loads the page's assets in parallel."""

    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass


def create_server(storage: Any, *, host: str, port: int, artifact_dir: Path | None) -> WSGIServer:
    """A bound (not yet serving) dashboard server; ``port=0`` picks a free port."""
    from optuna_dashboard import wsgi

    from hpo.artifacts import open_store

    store = open_store(artifact_dir) if artifact_dir is not None else None
    app = wsgi(storage, artifact_store=store)
    server_class = _Server6 if ":" in host else _Server
    try:
        return make_server(host.strip("[]"), port, app, server_class=server_class, handler_class=_QuietHandler)
    except OSError as exc:
        raise HpoError(f"cannot listen on {host}:{port}: {exc.strerror or exc}", field="--port") from None
