"""
Where ``sb3-mbrl train -optimize`` keeps its Optuna study: a local SQLite file,
``<log folder>/optuna/<algo>-<env>.db``, under the name ``<algo>-<env>``, unless ``--storage`` names a
database (PostgreSQL to share one study between machines); database errors retried, then named.
"""
import importlib.util
import random
import time
from pathlib import Path
from typing import Callable, Optional, TypeVar

import optuna

STUDY_FOLDER = "optuna"  # under rl-zoo's log folder (-f, default "logs")
T = TypeVar("T")


class SearchError(ValueError):
    """A user-facing error: unknown study, missing storage, a study of another algorithm or env."""


def safe_env_name(env_id: str) -> str:
    """An env id usable in a file name (``seals/CartPole-v0`` -> ``seals-CartPole-v0``)."""
    return env_id.replace("/", "-").replace(":", "-")


def default_study_name(algo: str, env_id: str) -> str:
    """The study name ``train -optimize`` uses without ``--study-name``: ``<algo>-<env>``."""
    return f"{algo}-{safe_env_name(env_id)}"


def default_storage_path(log_folder: str, algo: str, env_id: str) -> Path:
    """The SQLite file ``train -optimize`` uses without ``--storage``: ``<log folder>/optuna/<algo>-<env>.db``."""
    return Path(log_folder).resolve() / STUDY_FOLDER / f"{default_study_name(algo, env_id)}.db"


def sqlite_url(path: Path) -> str:
    """SQLAlchemy URL of an SQLite file (absolute, so that the study does not depend on the working folder)."""
    return f"sqlite:///{Path(path).resolve()}"


def storage_url(storage: str) -> str:
    """
    An Optuna RDB storage URL for ``--storage``: URLs are kept, a plain file path becomes an SQLite URL.

    rl-zoo 2.2.1 passes ``--storage`` to ``optuna.create_study`` as a string, which Optuna opens as an
    SQLAlchemy URL only: its journal files cannot be used from the command line.

    :param storage: ``sqlite:///...``, ``postgresql://user:password@host/db`` ... or a file path
    :return: The URL
    """
    if "://" in storage:
        return _with_installed_driver(storage)
    if storage.endswith(".log"):
        raise SearchError(
            f"--storage {storage}: rl-zoo 2.2.1 opens --storage as a database URL, so Optuna journal files (.log) "
            "cannot be used; give an SQLite file (.db) or a database URL (postgresql://user:password@host/db)"
        )
    return sqlite_url(Path(storage))


def _with_installed_driver(storage: str) -> str:
    """
    The URL with a database driver that is installed. SQLAlchemy 2.1 opens ``postgresql://`` with
    psycopg 3 (2.0 with psycopg2); the ``postgres`` extra installs psycopg2-binary, so a bare
    ``postgresql://`` URL is pointed at psycopg2 when psycopg 3 is missing.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        url = make_url(storage)
        dialect = url.get_dialect()
    except (ArgumentError, NoSuchModuleError) as error:
        raise SearchError(f"--storage {display_storage(storage)} is not a database URL Optuna can open: {error}") from None
    try:
        (getattr(dialect, "import_dbapi", None) or dialect.dbapi)()  # type: ignore[attr-defined]
        return storage
    except ImportError:
        pass
    if url.get_backend_name() == "postgresql" and "+" not in url.drivername and importlib.util.find_spec("psycopg2"):
        return url.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)
    raise SearchError(
        f"No Python driver for {display_storage(storage)} ({url.get_backend_name()}, {url.get_driver_name()}) is installed; "
        "for PostgreSQL: pip install 'sb3-mbrl[postgres]' (psycopg2-binary)"
    )


def sqlite_path(url: str) -> Optional[Path]:
    """The file of an SQLite URL, or None for other databases."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def display_storage(url: str) -> str:
    """The storage URL with its password hidden, for messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not an SQLAlchemy URL: Optuna will report it; show it as given
        return url


def retrying(action: Callable[[], T], storage: str, attempts: int = 4) -> T:
    """
    Run ``action()`` on ``storage``, retrying a few times on database errors: workers started together
    on a fresh database race to create Optuna's tables and version row (the loser gets an integrity
    error), and SQLite answers "database is locked" while another process writes. The last error
    becomes a :class:`SearchError` naming the storage (an unreachable server, a wrong password ...).

    :param action: What to run
    :param storage: Its storage URL, for the error message
    :param attempts: Tries before giving up
    :return: What ``action`` returns
    """
    from sqlalchemy.exc import SQLAlchemyError

    for attempt in range(attempts):
        try:
            return action()
        except (SQLAlchemyError, optuna.exceptions.StorageInternalError) as error:
            if attempt == attempts - 1:
                cause = error.__cause__ or error
                reason = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
                raise SearchError(f"Cannot use the Optuna storage {display_storage(storage)}: {reason}") from error
            time.sleep(0.5 + random.random())  # de-synchronise the workers
    raise AssertionError("unreachable")


__all__ = [
    "SearchError",
    "default_storage_path",
    "default_study_name",
    "display_storage",
    "retrying",
    "safe_env_name",
    "sqlite_path",
    "sqlite_url",
    "storage_url",
]
