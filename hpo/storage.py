"""Where studies live: SQLite on one machine, any SQLAlchemy URL (PostgreSQL) across machines.

Every command resolves its storage the same way: ``--storage``, else ``$HPO_STORAGE``, else the
SQLite file ``storage/hpo.db`` under the current directory. Passwords in URLs are masked in
everything we print (:func:`mask_url`).
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import os
import sqlite3
import threading
import time
import uuid
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, TypeVar
from urllib.parse import unquote

import optuna
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import exc as sa_exc
from sqlalchemy import update as sa_update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from hpo import attrs, optuna_compat
from hpo.errors import HpoError
from hpo.optuna_compat import (heartbeat_stale_trial_ids, prepare_new_trial, rdb_models, rdb_session,
                               trial_start_column)

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


#: What a driver says when the server does not answer (yet): down, starting up, shutting down, out
#: of reach. A wrong password, a missing database or an unknown host say something else and fail at once.
_UNREACHABLE = ("connection refused", "starting up", "shutting down", "timeout expired", "timed out",
                "no route to host", "server closed the connection", "recovery mode", "database is locked")


def _is_unreachable(error: BaseException) -> bool:
    """The server did not answer at all (as opposed to answering no): worth waiting for at start-up."""
    text = str(error).lower()
    return _is_transient(error) and any(phrase in text for phrase in _UNREACHABLE)


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
        if isinstance(seen, sa_exc.PendingRollbackError):  # a session that lost its connection mid-transaction
            return True
        if isinstance(seen, sa_exc.DBAPIError) and seen.connection_invalidated:
            return True
        if type(seen).__module__.startswith("psycopg") and type(seen).__name__ in (
                "OperationalError", "InterfaceError", "AdminShutdown", "ConnectionTimeout"):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


_retry_depth = threading.local()  # > 0 inside a retried storage call on this thread

#: The storage calls that retry on their own: BaseStorage's public API plus the heartbeat (and the
#: private methods Optuna's caching wrapper calls, see optuna_compat), each run whole in its own
#: sessions. Helpers that run inside a caller's session (``_build_frozen_trial_from_trial_model``,
#: ``_set_trial_param_without_commit``, ...) are never retried: re-running them on a dead session
#: only raises ``PendingRollbackError``.
_RETRIED = frozenset({
    "create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr", "get_study_id_from_name",
    "get_study_name_from_id", "get_study_directions", "get_study_user_attrs", "get_study_system_attrs",
    "get_all_studies", "set_trial_param", "get_trial_id_from_study_id_trial_number", "get_trial_number_from_id",
    "get_trial_param", "set_trial_intermediate_value", "set_trial_user_attr", "set_trial_system_attr",
    "get_trial", "get_all_trials", "get_n_trials", "get_best_trial", "get_trial_params", "get_trial_user_attrs",
    "get_trial_system_attrs", "check_trial_is_updatable", "record_heartbeat",
})
# Idempotency, per call, when an attempt failed but may have committed (its reply was lost):
# - reads, attribute/param/intermediate-value writes and heartbeats are upserts: re-running them is harmless;
# - set_trial_state_values: a retry that finds the trial finished counts as done (our first attempt
#   committed); the WAITING -> RUNNING claim carries a token and a retry first looks for it;
# - create_new_trial: every new trial carries a unique token (system attribute ``hpo:create_token``)
#   written in the same transaction; a retry first looks for it, so a lost reply never makes a second trial;
# - create_new_study: a retry that finds the study counts as done; delete_study: one that finds none too;
# - claim_study_key (the GA's claims): a retry that finds the key taken redraws; a point may be lost,
#   never proposed twice.


class RetryingRDBStorage(optuna.storages.RDBStorage):
    """Optuna's RDB storage, with every public call retried while the database is away.

    ``pool_pre_ping`` replaces connections that died while idle; this covers the ones that die in
    use (``pg_terminate_backend``, a server restart) and SQLite's "database is locked". Only the
    outermost call retries (nested calls run once inside it), after dropping this thread's session,
    and a call that may have committed before its reply was lost is never repeated blindly (see the
    idempotency rules above).
    """

    retry_seconds: float = DEFAULT_RETRY_SECONDS

    def _call_with_retry(self, fn: Callable[..., _T], *args: Any,
                         recover: Callable[[RetryingRDBStorage], tuple[bool, Any]] | None = None,
                         **kwargs: Any) -> _T:
        """``fn(self, ...)``, retried on transient errors; ``recover`` says whether a failed attempt committed."""
        if getattr(_retry_depth, "value", 0):
            return fn(self, *args, **kwargs)  # inside a retried call: the outermost one retries
        _retry_depth.value = 1
        try:
            return self._retry_loop(fn, args, kwargs, recover)
        finally:
            _retry_depth.value = 0

    def _retry_loop(self, fn: Callable[..., _T], args: tuple[Any, ...], kwargs: dict[str, Any],
                    recover: Callable[[RetryingRDBStorage], tuple[bool, Any]] | None) -> _T:
        deadline = time.monotonic() + self.retry_seconds
        delay, failed_once = 0.2, False
        while True:
            try:
                if failed_once and recover is not None:
                    done, result = recover(self)
                    if done:
                        return result
                return fn(self, *args, **kwargs)
            except optuna.exceptions.UpdateFinishedTrialError:
                if failed_once and fn.__name__ == "set_trial_state_values":
                    return True  # type: ignore[return-value]  # our first attempt had committed
                raise
            except optuna.exceptions.DuplicatedStudyError:
                name = kwargs.get("study_name") or (args[1] if len(args) > 1 else None)
                if failed_once and fn.__name__ == "create_new_study" and name:
                    return self.get_study_id_from_name(name)  # type: ignore[return-value]
                raise
            except KeyError:
                if failed_once and fn.__name__ == "delete_study":
                    return None  # type: ignore[return-value]  # our first attempt had deleted it
                raise
            except Exception as error:  # noqa: BLE001 - filtered right below
                if not _is_transient(error) or time.monotonic() > deadline:
                    raise
                failed_once = True
                log.warning("storage unavailable (%s): retrying %s in %.1f s", type(error).__name__,
                            fn.__name__, delay)
                self.scoped_session.remove()  # its connection may be dead or its transaction failed
                time.sleep(delay)
                delay = min(delay * 2, 10.0)

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        """A new trial, created exactly once even when a retry follows a lost commit reply."""
        return optuna_compat.trial_id(self._create_trial_frozen(study_id, template_trial))

    def _create_trial_frozen(self, study_id: int, template_trial: FrozenTrial | None = None) -> FrozenTrial:
        """:meth:`create_new_trial`, returning the new trial (what Optuna's caching wrapper calls).

        Optuna's own version repeats a failed attempt up to five times, also one whose commit went
        through before the connection died: a duplicate trial nobody runs.
        """
        token = uuid.uuid4().hex
        template = _with_create_token(template_trial, token)

        def recover(storage: RetryingRDBStorage) -> tuple[bool, FrozenTrial | None]:
            found, trial_id = _trial_with_token(storage, study_id, token)
            return found, storage.get_trial(trial_id) if found else None  # type: ignore[arg-type]

        return self._call_with_retry(_create_trial_once, study_id, template, recover=recover)

    def count_trials(self, study_id: int, *, number_below: int | None = None,
                     marked: str | None = None) -> tuple[dict[TrialState, int], int]:
        """Trials per state (only those numbered below ``number_below`` if given) and how many PRUNED
        ones carry the user attribute ``marked``, in one query.

        The worker loop asks this around every trial; loading every trial with its params, attributes
        and intermediate values (``get_all_trials``) just to count them made hpo slower than Optuna.
        """
        return self._call_with_retry(_count_trials, study_id, number_below, marked)

    def complete_trial_values(self, study_id: int, attr: str) -> list[tuple[int, float, Any]]:
        """``(number, value, user attribute attr)`` of every COMPLETE trial, in one query."""
        return self._call_with_retry(_complete_values, study_id, attr)

    def stale_trial_ids(self, study_id: int) -> list[int]:
        """RUNNING trials of dead workers: heartbeat older than the grace period, or none since then."""
        stale = self._call_with_retry(_heartbeat_stale, study_id)
        return sorted(set(stale) | set(self.silent_trial_ids(study_id)))

    def silent_trial_ids(self, study_id: int) -> list[int]:
        """RUNNING trials that never recorded a heartbeat and started more than the grace period ago.

        Optuna's stale check skips trials without a heartbeat, so a process that died between
        creating its trial and its first heartbeat (inside ``study.ask()``) would block the study's
        last budget slot forever. ``datetime_start`` is written with the creating machine's clock.
        """
        grace = self.grace_period if self.grace_period is not None else 2 * (self.heartbeat_interval or 0)
        return self._call_with_retry(_silent_trials, study_id, _utc_now() - timedelta(seconds=grace))

    def claim_study_key(self, study_id: int, key: str, value: Any) -> bool:
        """Insert the study system attribute ``key`` unless it exists, in one statement: True if we did.

        The unique (study, key) constraint makes it atomic on every backend: of two processes
        claiming the same key at once exactly one gets True (the GA claims its proposals this way).
        """
        return self._call_with_retry(_insert_study_key, study_id, key, value)


def _retrying(fn: Callable[..., _T]) -> Callable[..., _T]:
    @functools.wraps(fn)
    def wrapper(self: RetryingRDBStorage, *args: Any, **kwargs: Any) -> _T:
        return self._call_with_retry(fn, *args, **kwargs)

    return wrapper


for _name in (*_RETRIED, *optuna_compat.CACHED_STORAGE_PRIVATE_CALLS):
    setattr(RetryingRDBStorage, _name, _retrying(getattr(optuna.storages.RDBStorage, _name)))
# Optuna's caching wrapper creates trials through this private method, not create_new_trial.
setattr(RetryingRDBStorage, optuna_compat.CREATE_TRIAL_METHOD, RetryingRDBStorage._create_trial_frozen)


def _utc_now() -> datetime:
    """Now as Optuna stores trial times: naive UTC."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _heartbeat_stale(storage: RetryingRDBStorage, study_id: int) -> list[int]:
    return heartbeat_stale_trial_ids(storage, study_id)


def _with_create_token(template: FrozenTrial | None, token: str) -> FrozenTrial:
    """``template`` (or Optuna's default new RUNNING trial) carrying the creation token."""
    if template is None:
        template = FrozenTrial(number=-1, state=TrialState.RUNNING, value=None, datetime_start=datetime.now(),
                               datetime_complete=None, params={}, distributions={}, user_attrs={},
                               system_attrs={}, intermediate_values={}, trial_id=-1)
    else:
        template = copy.deepcopy(template)
    template.system_attrs[attrs.CREATE_TOKEN] = token
    return template


def _create_trial_once(storage: RetryingRDBStorage, study_id: int, template: FrozenTrial) -> FrozenTrial:
    """One attempt at creating a trial (Optuna's own loop repeats attempts that may have committed)."""
    with rdb_session(storage) as session:
        rdb_models.StudyModel.find_or_raise_by_id(study_id, session, for_update=True)  # numbers trials one at a time
        trial = prepare_new_trial(storage, study_id, template, session)
        session.flush()
        number, trial_id, start = trial.number, trial.trial_id, trial.datetime_start
    return FrozenTrial(number=number, state=template.state, value=None, values=template.values,
                       datetime_start=start, datetime_complete=template.datetime_complete,
                       params=dict(template.params), distributions=dict(template.distributions),
                       user_attrs=copy.deepcopy(template.user_attrs), system_attrs=copy.deepcopy(template.system_attrs),
                       intermediate_values=dict(template.intermediate_values), trial_id=trial_id)


def _trial_with_token(storage: RetryingRDBStorage, study_id: int, token: str) -> tuple[bool, int | None]:
    from sqlalchemy import select

    trial, attr = rdb_models.TrialModel, rdb_models.TrialSystemAttributeModel
    query = (select(trial.trial_id).join(attr, attr.trial_id == trial.trial_id)
             .where(trial.study_id == study_id, attr.key == attrs.CREATE_TOKEN, attr.value_json == json.dumps(token)))
    with rdb_session(storage) as session:
        found = session.execute(query).scalar()
    return found is not None, found


def _silent_trials(storage: RetryingRDBStorage, study_id: int, started_before: datetime) -> list[int]:
    from sqlalchemy import select

    trial, beat, start = rdb_models.TrialModel, rdb_models.TrialHeartbeatModel, trial_start_column()
    query = (select(trial.trial_id).outerjoin(beat, beat.trial_id == trial.trial_id)
             .where(trial.study_id == study_id, trial.state == TrialState.RUNNING, beat.trial_id.is_(None),
                    start.is_not(None), start < started_before))
    with rdb_session(storage) as session:
        return [trial_id for (trial_id,) in session.execute(query)]


def _insert_study_key(storage: RetryingRDBStorage, study_id: int, key: str, value: Any) -> bool:
    try:
        with rdb_session(storage) as session:
            session.add(rdb_models.StudySystemAttributeModel(study_id=study_id, key=key, value_json=json.dumps(value)))
        return True
    except sa_exc.IntegrityError:
        return False


def _claim_waiting_trial(storage: RetryingRDBStorage, trial_id: int, token: str) -> bool:
    """WAITING -> RUNNING as one conditional UPDATE, with our claim token in the same transaction.

    Optuna claims a queued trial with ``SELECT ... FOR UPDATE``, which SQLite ignores: two workers
    could both take the base trial (or a retry) and train it twice. A single UPDATE guarded by the
    state is atomic on every backend; the loser gets False and asks for another trial.
    """
    with rdb_session(storage) as session:
        result = session.execute(
            sa_update(rdb_models.TrialModel)
            .where(rdb_models.TrialModel.trial_id == trial_id, rdb_models.TrialModel.state == TrialState.WAITING)
            .values({rdb_models.TrialModel.state: TrialState.RUNNING, trial_start_column(): _utc_now()})
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:
            return False
        session.add(rdb_models.TrialSystemAttributeModel(trial_id=trial_id, key=attrs.CLAIM_TOKEN,
                                                         value_json=json.dumps(token)))
        return True


def _claimed_with(storage: RetryingRDBStorage, trial_id: int, token: str) -> tuple[bool, bool]:
    """Whether our earlier claim of ``trial_id`` committed (then the retry is done: True)."""
    from sqlalchemy import select

    attr = rdb_models.TrialSystemAttributeModel
    with rdb_session(storage) as session:
        found = session.execute(select(attr.trial_id).where(
            attr.trial_id == trial_id, attr.key == attrs.CLAIM_TOKEN, attr.value_json == json.dumps(token))).first()
    return found is not None, True


def _set_trial_state_values(self: RetryingRDBStorage, trial_id: int, state: TrialState,
                            values: Any = None) -> bool:
    if state == TrialState.RUNNING and values is None:
        token = uuid.uuid4().hex
        return self._call_with_retry(_claim_waiting_trial, trial_id, token,
                                     recover=lambda s: _claimed_with(s, trial_id, token))
    return self._call_with_retry(optuna.storages.RDBStorage.set_trial_state_values, trial_id, state, values)


_claim_waiting_trial.__name__ = "claim_waiting_trial"
_create_trial_once.__name__ = "create_new_trial"
RetryingRDBStorage.set_trial_state_values = _set_trial_state_values  # type: ignore[method-assign]


def _count_trials(storage: RetryingRDBStorage, study_id: int, number_below: int | None,
                  marked: str | None) -> tuple[dict[TrialState, int], int]:
    from sqlalchemy import func, literal, select

    trial, user_attr = rdb_models.TrialModel, rdb_models.TrialUserAttributeModel
    marks = func.count(user_attr.trial_id) if marked is not None else literal(0)
    query = select(trial.state, func.count(trial.trial_id), marks).where(trial.study_id == study_id)
    if marked is not None:
        query = query.outerjoin(user_attr, (user_attr.trial_id == trial.trial_id) & (user_attr.key == marked))
    query = query.group_by(trial.state)
    if number_below is not None:
        query = query.where(trial.number < number_below)
    with rdb_session(storage) as session:
        counts = {state: 0 for state in TrialState}
        pruned_marked = 0
        for state, count, n_marked in session.execute(query):
            counts[state] = int(count)
            if state == TrialState.PRUNED:
                pruned_marked = int(n_marked or 0)
        return counts, pruned_marked


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
    wait_seconds: float = 0.0,
) -> optuna.storages.RDBStorage:
    """Open (and create if needed) the study database behind ``url``.

    Trials of dead workers are failed after ``grace_period``; workers re-queue them with the same
    params (:class:`hpo.search.retry.RequeueTrial`, given here or to the worker). For up to
    ``wait_seconds`` a server that does not answer (refused, starting up) is waited for, as storage
    calls wait during a run: a worker a scheduler starts while the database restarts joins once it is
    back. An answer that is a refusal (password, missing database) fails at once.
    """
    url = resolve_url(url)
    try:
        kwargs = engine_kwargs_for(url)
    except (ArgumentError, ValueError) as exc:
        raise HpoError(f"not a valid storage URL {mask_url(url)}: {scrub(str(exc), url)}", field="--storage") from None
    except sqlite3.Error as exc:
        raise HpoError(f"cannot open SQLite storage {mask_url(url)}: {scrub(str(exc), url)}", field="--storage") from None
    deadline, delay = time.monotonic() + wait_seconds, 1.0
    while True:
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
            if _is_unreachable(exc) and time.monotonic() + delay < deadline:
                waited_for = " ".join(str(exc).split())[:200]  # one log line
                log.warning("storage %s does not answer (%s): retrying in %.0f s", mask_url(url),
                            scrub(waited_for, url), delay)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise HpoError(f"cannot open storage {mask_url(url)}: {scrub(reason, url)}", field="--storage") from None


def sqlite_file(url: str) -> Path | None:
    """The database file behind an SQLite URL; None for a server or an in-memory database."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # e.g. a port that is not a number
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
