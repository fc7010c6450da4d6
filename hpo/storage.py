"""Where studies live: SQLite on one machine, any SQLAlchemy URL (PostgreSQL) across machines.

Every command resolves its storage the same way: ``--storage``, else ``$HPO_STORAGE``, else the
SQLite file ``storage/hpo.db`` under the current directory. Passwords in URLs are masked in
everything we print (:func:`mask_url`).
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import os
import sqlite3
import time
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, TypeVar
from urllib.parse import unquote

import optuna
from optuna.trial import TrialState
from sqlalchemy import exc as sa_exc
from sqlalchemy import update as sa_update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from hpo.errors import HpoError
from hpo.optuna_compat import rdb_models, rdb_session

DEFAULT_SQLITE = Path("storage") / "hpo.db"
ENV_VAR = "HPO_STORAGE"

# Heartbeats: a worker records one every ``interval`` seconds while a trial runs; a RUNNING trial
# whose last heartbeat is older than ``grace`` seconds belongs to a dead worker and is failed.
DEFAULT_HEARTBEAT_INTERVAL = 30
DEFAULT_GRACE_PERIOD = 120


log = logging.getLogger("hpo.storage")
_T = TypeVar("_T")

# How long a storage call keeps retrying while the database is unreachable or locked.
DEFAULT_RETRY_SECONDS = 600.0


def resolve_url(url: str | None = None) -> str:
    """The storage URL a command should use (absolute for the default SQLite file)."""
    url = url or os.environ.get(ENV_VAR)
    if not url:
        return f"sqlite:///{DEFAULT_SQLITE.resolve()}"
    if "://" not in url:  # a bare path means an SQLite file
        return f"sqlite:///{Path(url).expanduser().resolve()}"
    return url


def _password_in(url: str) -> str | None:
    """The password as written: everything between ``://user:`` and the *last* ``@``.

    Found by hand, not by SQLAlchemy: with an unencoded ``@`` in the password
    (``postgres:S3c@retPw@host``) SQLAlchemy takes ``S3c`` for the password and ``retPw@host`` for
    the host, and a URL it cannot parse at all still carries the secret.
    """
    _, sep, rest = url.partition("://")
    userinfo, at, _ = rest.rpartition("@")
    if not sep or not at:
        return None
    _, colon, password = userinfo.partition(":")
    return password if colon else None


def mask_url(url: str) -> str:
    """The URL with any password replaced by ``***``: the only form we ever print or store."""
    password = _password_in(url)
    if password is None:
        return url
    scheme, _, rest = url.partition("://")
    userinfo, _, host = rest.rpartition("@")
    return f"{scheme}://{userinfo.partition(':')[0]}:***@{host}"


def scrub(text: str, url: str) -> str:
    """``text`` (a driver's error, a log line) with the URL masked and no piece of its password left.

    Drivers quote what they parsed, e.g. ``failed to resolve host 'retPw@host'``: so every piece of
    the password between ``@``s, and its percent-decoded form, is masked too (pieces of three
    characters or more: shorter ones would mask ordinary words and say nothing of the secret).
    """
    text = text.replace(url, mask_url(url))
    password = _password_in(url)
    if not password:
        return text
    secrets = {password, unquote(password), *password.split("@"), *unquote(password).split("@")}
    for secret in sorted((s for s in secrets if len(s) >= 3), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def _prepare_sqlite(url: str) -> dict[str, Any]:
    """Create the folder, switch the file to WAL (persistent) and wait on locks instead of failing."""
    database = make_url(url).database
    if database and database != ":memory:":
        path = Path(database)
        path.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(path, timeout=60) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
    return {"connect_args": {"timeout": 120}}


def engine_kwargs_for(url: str) -> dict[str, Any]:
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        return _prepare_sqlite(url)
    # Many workers, servers that restart: check connections before use and recycle old ones.
    return {"pool_pre_ping": True, "pool_size": 5, "max_overflow": 10, "pool_recycle": 1800}


def _is_transient(error: BaseException) -> bool:
    """A lost connection, a restarting server or a locked SQLite file: worth waiting for."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError)):
            return True
        if isinstance(seen, sa_exc.DBAPIError) and seen.connection_invalidated:
            return True
        if type(seen).__module__.startswith("psycopg") and type(seen).__name__ in (
                "OperationalError", "InterfaceError", "AdminShutdown", "ConnectionTimeout"):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class RetryingRDBStorage(optuna.storages.RDBStorage):
    """Optuna's RDB storage, with every call retried while the database is away.

    ``pool_pre_ping`` replaces connections that died while idle; this covers the ones that die in
    use (``pg_terminate_backend``, a server restart) and SQLite's "database is locked". A call that
    committed but lost its reply is not repeated blindly: a finished trial found already finished
    by the retry counts as done.
    """

    retry_seconds: float = DEFAULT_RETRY_SECONDS

    def _call_with_retry(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        deadline = time.monotonic() + self.retry_seconds
        delay, failed_once = 0.2, False
        while True:
            try:
                return fn(self, *args, **kwargs)
            except optuna.exceptions.UpdateFinishedTrialError:
                if failed_once and fn.__name__ == "set_trial_state_values":
                    return True  # type: ignore[return-value]  # our first attempt had committed
                raise
            except Exception as error:  # noqa: BLE001 - filtered right below
                if not _is_transient(error) or time.monotonic() > deadline:
                    raise
                failed_once = True
                log.warning("storage unavailable (%s): retrying %s in %.1f s", type(error).__name__,
                            fn.__name__, delay)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)

    def count_trials(self, study_id: int, *, number_below: int | None = None) -> dict[TrialState, int]:
        """Trials per state (only those numbered below ``number_below`` if given), in one query.

        The worker loop asks this around every trial; loading every trial with its params, attributes
        and intermediate values (``get_all_trials``) just to count them made hpo slower than Optuna.
        """
        return self._call_with_retry(_count_trials, study_id, number_below)

    def complete_trial_values(self, study_id: int, attr: str) -> list[tuple[int, float, Any]]:
        """``(number, value, user attribute attr)`` of every COMPLETE trial, in one query."""
        return self._call_with_retry(_complete_values, study_id, attr)


def _retrying(fn: Callable[..., _T]) -> Callable[..., _T]:
    @functools.wraps(fn)
    def wrapper(self: RetryingRDBStorage, *args: Any, **kwargs: Any) -> _T:
        return self._call_with_retry(fn, *args, **kwargs)

    return wrapper


def _touches_database_on_its_own(name: str, attr: Any) -> bool:
    """Methods that open their own session (a retry re-runs them whole); not the helpers that get one."""
    if not inspect.isfunction(attr) or name.startswith("__") or name in _NOT_RETRIED:
        return False
    return "session" not in inspect.signature(attr).parameters


_NOT_RETRIED = {"get_heartbeat_interval", "get_heartbeat_stale_trial_callback", "remove_session",
                "_fill_storage_url_template", "_set_default_engine_kwargs_for_mysql"}

for _name, _attr in vars(optuna.storages.RDBStorage).items():
    if _touches_database_on_its_own(_name, _attr):
        setattr(RetryingRDBStorage, _name, _retrying(_attr))


def _claim_waiting_trial(storage: RetryingRDBStorage, trial_id: int) -> bool:
    """WAITING -> RUNNING as one conditional UPDATE.

    Optuna claims a queued trial with ``SELECT ... FOR UPDATE``, which SQLite ignores: two workers
    could both take the base trial (or a retry) and train it twice. A single UPDATE guarded by the
    state is atomic on every backend; the loser gets False and asks for another trial.
    """
    with rdb_session(storage) as session:
        result = session.execute(
            sa_update(rdb_models.TrialModel)
            .where(rdb_models.TrialModel.trial_id == trial_id, rdb_models.TrialModel.state == TrialState.WAITING)
            .values(state=TrialState.RUNNING, datetime_start=datetime.now())
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1


def _set_trial_state_values(self: RetryingRDBStorage, trial_id: int, state: TrialState,
                            values: Any = None) -> bool:
    if state == TrialState.RUNNING and values is None:
        return self._call_with_retry(_claim_waiting_trial, trial_id)
    return self._call_with_retry(optuna.storages.RDBStorage.set_trial_state_values, trial_id, state, values)


_claim_waiting_trial.__name__ = "claim_waiting_trial"
RetryingRDBStorage.set_trial_state_values = _set_trial_state_values  # type: ignore[method-assign]


def _count_trials(storage: RetryingRDBStorage, study_id: int, number_below: int | None) -> dict[TrialState, int]:
    from sqlalchemy import func, select

    query = (select(rdb_models.TrialModel.state, func.count())
             .where(rdb_models.TrialModel.study_id == study_id)
             .group_by(rdb_models.TrialModel.state))
    if number_below is not None:
        query = query.where(rdb_models.TrialModel.number < number_below)
    with rdb_session(storage) as session:
        counts = {state: 0 for state in TrialState}
        for state, count in session.execute(query):
            counts[state] = int(count)
        return counts


def _complete_values(storage: RetryingRDBStorage, study_id: int, attr: str) -> list[tuple[int, float, Any]]:
    from sqlalchemy import select

    trial, value, user_attr = rdb_models.TrialModel, rdb_models.TrialValueModel, rdb_models.TrialUserAttributeModel
    query = (select(trial.number, value.value, value.value_type, user_attr.value_json)
             .join(value, (value.trial_id == trial.trial_id) & (value.objective == 0))
             .outerjoin(user_attr, (user_attr.trial_id == trial.trial_id) & (user_attr.key == attr))
             .where(trial.study_id == study_id, trial.state == TrialState.COMPLETE))
    with rdb_session(storage) as session:
        return [(number, rdb_models.TrialValueModel.stored_repr_to_value(stored, value_type),
                 None if attr_json is None else json.loads(attr_json))
                for number, stored, value_type, attr_json in session.execute(query)]


def open_storage(
    url: str | None = None,
    *,
    heartbeat_interval: int | None = DEFAULT_HEARTBEAT_INTERVAL,
    grace_period: int | None = DEFAULT_GRACE_PERIOD,
    stale_trial_callback: Any = None,
) -> optuna.storages.RDBStorage:
    """Open (and create if needed) the study database behind ``url``.

    Trials of dead workers are failed after ``grace_period``; workers re-queue them with the same
    params (:class:`hpo.search.retry.RequeueTrial`, given here or to the worker).
    """
    url = resolve_url(url)
    try:
        kwargs = engine_kwargs_for(url)
    except (ArgumentError, ValueError) as exc:
        raise HpoError(f"not a valid storage URL {mask_url(url)}: {scrub(str(exc), url)}", field="--storage") from None
    except sqlite3.Error as exc:
        raise HpoError(f"cannot open SQLite storage {mask_url(url)}: {scrub(str(exc), url)}", field="--storage") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RetryingRDBStorage(
                url,
                engine_kwargs=kwargs,
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period,
                heartbeat_stale_trial_callback=stale_trial_callback,
            )
    except Exception as exc:  # sqlalchemy/driver errors carry the URL: never show it unmasked
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise HpoError(f"cannot open storage {mask_url(url)}: {scrub(reason, url)}", field="--storage") from None


def sqlite_file(url: str) -> Path | None:
    """The database file behind an SQLite URL; None for a server or an in-memory database."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None  # reported by open_storage
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).expanduser().absolute()


def check_exists(url: str) -> None:
    """Read-only commands open a storage, never create one: a missing SQLite file is an error naming it.

    Otherwise ``hpo status`` from the wrong folder would create ``./storage/hpo.db`` and report
    "no studies", which reads as if the studies were gone.
    """
    path = sqlite_file(url)
    if path is not None and not path.is_file():
        if path.exists():
            raise HpoError("not an SQLite file", path=path, field="--storage")
        raise HpoError(f"no storage at {path} (run `hpo launch` first or pass --storage)")


def check_creatable(url: str) -> None:
    """Before ``launch``/``worker`` create anything: the SQLite file's folder can be created and written."""
    from hpo.paths import check_writable_dir

    path = sqlite_file(url)
    if path is None:
        return
    if path.exists() and not path.is_file():
        raise HpoError("not a file", path=path, field="--storage")
    check_writable_dir(path.parent, "--storage")  # SQLite writes its -wal and -shm files next to it
