"""
Hyperparameter search storage and results: ``sb3-mbrl train -optimize`` keeps its Optuna study in a
local SQLite file unless ``--storage`` names a database (PostgreSQL to share one study between machines),
and ``sb3-mbrl best`` prints a study's best hyperparameters and writes them as an rl-zoo config.
"""
import argparse
import inspect
import random
import sys
import time
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar

import optuna
import yaml

from sb3_mbrl.zoo import flag_value

STUDY_FOLDER = "optuna"  # under rl-zoo's log folder (-f, default "logs")
SEARCH_ATTR = "sb3_mbrl_search"  # study user attribute: what the search runs (algo, env, config)
T = TypeVar("T")


class SearchError(ValueError):
    """A user-facing error: unknown study, missing storage, a study of another algorithm or env."""


# ---------------------------------------------------------------------------- storage
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
    import importlib.util

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


def _retrying(action: Callable[[], T], storage: str, attempts: int = 4) -> T:
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


# ---------------------------------------------------------------------------- rl-zoo arguments
def hyperparams_overrides(argv: List[str]) -> List[str]:
    """The ``key:value`` strings of rl-zoo's ``--hyperparams`` / ``-params`` (its last occurrence)."""
    overrides: List[str] = []
    for i, arg in enumerate(argv):
        if arg in ("--hyperparams", "-params"):
            overrides = []
            for value in argv[i + 1 :]:
                if value.startswith("-"):  # the next flag ends rl-zoo's nargs="+"
                    break
                overrides.append(value)
    return overrides


def parse_overrides(overrides: List[str]) -> Dict[str, Any]:
    """``key:value`` strings to values, as rl-zoo's ``StoreDict`` does (the value is ``eval()``-ed)."""
    from rl_zoo3.utils import StoreDict

    namespace = argparse.Namespace()
    StoreDict(["--hyperparams"], "hyperparams")(argparse.ArgumentParser(), namespace, overrides)
    return namespace.hyperparams


def base_hyperparams(conf_file: str, env_id: str, overrides: Optional[List[str]] = None) -> Dict[str, Any]:
    """
    The hyperparameters rl-zoo reads for an env before the sampler's values: the YAML entry of the env,
    updated with ``--hyperparams`` (unprocessed: schedules and ``policy_kwargs`` still strings).

    :param conf_file: rl-zoo YAML file
    :param env_id: Env id (the entry's key)
    :param overrides: ``--hyperparams`` ``key:value`` strings
    :return: The hyperparameters
    """
    if not conf_file.endswith((".yml", ".yaml")):
        raise SearchError(f"{conf_file} is not a YAML file: only rl-zoo YAML hyperparameter files can be read here")
    if not Path(conf_file).is_file():
        raise SearchError(f"Hyperparameter file {conf_file} not found")
    with open(conf_file) as file:
        entries = yaml.safe_load(file) or {}
    if env_id not in entries:
        raise SearchError(f"{conf_file} has no entry for {env_id} (entries: {sorted(entries)})")
    hyperparams = dict(entries[env_id])
    hyperparams.update(parse_overrides(overrides or []))
    return hyperparams


# ---------------------------------------------------------------------------- train -optimize
@dataclass
class Search:
    """
    What one ``train -optimize`` command searches, recorded in its study so that every worker of a
    shared study runs the same search and ``sb3-mbrl best`` knows the algorithm, env and base config.

    :param algo: rl-zoo algorithm name
    :param env: Env id
    :param conf_file: Hyperparameter file (the base the sampled values update)
    :param hyperparams: ``--hyperparams`` overrides, ``key:value`` strings
    :param n_timesteps: ``-n`` of the search (None: the config's ``n_timesteps``)
    """

    algo: str
    env: str
    conf_file: str
    hyperparams: List[str] = field(default_factory=list)
    n_timesteps: Optional[int] = None

    @classmethod
    def from_argv(cls, argv: List[str]) -> "Search":
        """The search of ``sb3-mbrl train`` arguments (after :func:`sb3_mbrl.zoo.train_argv`)."""
        from sb3_mbrl.zoo import default_conf_file

        algo = flag_value(argv, "--algo") or "ppo"
        env_id = flag_value(argv, "--env") or "CartPole-v1"
        conf_file = flag_value(argv, "-conf", "--conf-file") or default_conf_file(algo, env_id)
        n_timesteps = flag_value(argv, "-n", "--n-timesteps")
        n = None if n_timesteps is None or int(float(n_timesteps)) <= 0 else int(float(n_timesteps))
        if conf_file.endswith((".yml", ".yaml")):
            conf_file = str(Path(conf_file).resolve())
        return cls(algo, env_id, conf_file, hyperparams_overrides(argv), n)


def check_pets_evaluations(search: Search, n_evaluations: Optional[int]) -> None:
    """
    Refuse a PETS search whose first evaluation comes before PETS's first model fit: PETS plans with the
    model, and before the first fit its ``predict`` (used by rl-zoo's ``TrialEvalCallback``) acts uniformly
    at random, so that evaluation would score (and maybe prune) the trial on noise that says nothing
    about its hyperparameters. PETS fits first when it picks its action at step ``learning_starts``.

    :param search: The search
    :param n_evaluations: ``--n-evaluations`` (None: rl-zoo's default, one per 100k steps)
    """
    if search.algo != "pets" or not search.conf_file.endswith((".yml", ".yaml")):
        return
    from sb3_mbrl import PETS

    base = base_hyperparams(search.conf_file, search.env, search.hyperparams)
    n_timesteps = search.n_timesteps or int(float(base.get("n_timesteps", 0)))
    if n_timesteps <= 0:
        return
    n_evaluations = n_evaluations or max(1, n_timesteps // int(1e5))  # rl-zoo's default
    n_envs = int(base.get("n_envs", 1))
    eval_freq = max(int(n_timesteps / n_evaluations) // n_envs, 1)  # as rl-zoo's objective computes it
    learning_starts = int(base.get("learning_starts", inspect.signature(PETS).parameters["learning_starts"].default))
    # The evaluation after callback call k sees the action picked at step (k - 1) * n_envs.
    if (eval_freq - 1) * n_envs < max(learning_starts, 1):
        raise SearchError(
            f"PETS would be evaluated every {eval_freq} env steps ({n_timesteps} steps / {n_evaluations} evaluations), "
            f"before its first model fit at learning_starts={learning_starts}: use fewer --n-evaluations, "
            "a larger -n or a smaller learning_starts"
        )


def prepare_search(argv: List[str]) -> optuna.Study:
    """
    Create (or open) the study of a ``train -optimize`` command before rl-zoo does, so that the
    storage exists, concurrent workers do not race on a fresh database, and the study records what
    it searches. Prints where the study is.

    :param argv: ``sb3-mbrl train`` arguments after :func:`sb3_mbrl.zoo.train_argv` (so with
        ``--storage`` and ``--study-name``)
    :return: The study
    """
    search = Search.from_argv(argv)
    n_evaluations = flag_value(argv, "--n-evaluations")
    check_pets_evaluations(search, None if n_evaluations is None else int(n_evaluations))
    storage = flag_value(argv, "--storage")
    study_name = flag_value(argv, "--study-name")
    assert storage is not None and study_name is not None, "train_argv fills in --storage and --study-name"
    path = sqlite_path(storage)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    study = _retrying(
        lambda: optuna.create_study(storage=storage, study_name=study_name, direction="maximize", load_if_exists=True),
        storage,
    )
    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise SearchError(
            f"Study {study_name!r} in {display_storage(storage)} minimises; rl-zoo's searches maximise the return"
        )
    record = asdict(search)
    recorded = study.user_attrs.get(SEARCH_ATTR)
    if recorded is None:
        _retrying(lambda: study.set_user_attr(SEARCH_ATTR, record), storage)
    elif (recorded.get("algo"), recorded.get("env")) != (search.algo, search.env):
        raise SearchError(
            f"Study {study_name!r} in {display_storage(storage)} searches {recorded.get('algo')} on {recorded.get('env')}, "
            f"not {search.algo} on {search.env}: use another --study-name"
        )
    elif recorded != record:
        warnings.warn(
            f"Study {study_name!r} was started with {recorded}; this worker runs {record}. Workers of one study "
            "should run the same command, or their trials are not comparable."
        )
    n_trials = len(study.trials)
    print(
        f"Optuna study {study_name!r} ({n_trials} trial{'s' if n_trials != 1 else ''} so far) in {display_storage(storage)}\n"
        f"  best hyperparameters: sb3-mbrl best --storage {display_storage(storage)} --study-name {study_name}",
        flush=True,
    )
    return study


# ---------------------------------------------------------------------------- sb3-mbrl best
BEST_DESCRIPTION = """Print the best trial of an Optuna study made by `sb3-mbrl train -optimize`: its value,
its sampled parameters and the constructor arguments they stand for (the algorithm's sampler run on
the parameters), and optionally write an rl-zoo config to train with them:

  sb3-mbrl best --algo pets --env Pendulum-v1 --yaml best.yml      # the local study of that command
  sb3-mbrl best --storage postgresql://user:password@host/db --study-name NAME --yaml best.yml
  sb3-mbrl train --algo pets --env Pendulum-v1 --conf-file best.yml"""


def _best_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sb3-mbrl best", description=BEST_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--storage", help="Optuna storage URL or SQLite file (default: the local file of --algo and --env)")
    parser.add_argument("--study-name", help="study name (default: <algo>-<env>, or the storage's only study)")
    parser.add_argument("--algo", help="algorithm (default: the one the study records)")
    parser.add_argument("--env", help="env id (default: the one the study records)")
    parser.add_argument("-f", "--log-folder", default="logs", help="log folder of the search (for the default storage)")
    parser.add_argument("--yaml", type=Path, help="write an rl-zoo config with the best hyperparameters to this file")
    parser.add_argument("--conf-file", help="base config the sampled values update (default: the search's)")
    parser.add_argument("-n", "--n-timesteps", type=int, help="n_timesteps of the written config (default: the base config's)")
    return parser


def _resolve_storage(args: argparse.Namespace) -> str:
    if args.storage is not None:
        url = storage_url(args.storage)
    elif args.algo and args.env:
        url = sqlite_url(default_storage_path(args.log_folder, args.algo, args.env))
    else:
        raise SearchError("Give --storage, or --algo and --env for the local study of `sb3-mbrl train -optimize`")
    path = sqlite_path(url)
    if path is not None and not path.is_file():  # Optuna would create an empty database here
        raise SearchError(f"No study storage at {path}: run `sb3-mbrl train ... -optimize` first, or give --storage")
    return url


def _load_study(url: str, study_name: Optional[str], args: argparse.Namespace) -> optuna.Study:
    names = _retrying(lambda: optuna.get_all_study_names(storage=url), url)
    if study_name is None:
        if args.algo and args.env and default_study_name(args.algo, args.env) in names:
            study_name = default_study_name(args.algo, args.env)
        elif len(names) == 1:
            study_name = names[0]
        else:
            raise SearchError(f"Give --study-name: {display_storage(url)} holds the studies {names}")
    if study_name not in names:
        raise SearchError(f"No study {study_name!r} in {display_storage(url)}; its studies: {names or 'none'}")
    return optuna.load_study(study_name=study_name, storage=url)


def best_config(
    study: optuna.Study, algo: str, env_id: str, conf_file: Optional[str] = None, n_timesteps: Optional[int] = None
) -> Tuple[Dict[str, Any], Dict[str, Any], str]:
    """
    The best trial's constructor arguments, and an rl-zoo YAML document ``{env_id: {...}}`` with them:
    the base config entry updated with the sampled constructor arguments, as rl-zoo's objective
    built them for the trial.

    :param study: The study
    :param algo: Algorithm of the study
    :param env_id: Env id
    :param conf_file: Base config (None: the search's with its ``--hyperparams``; when that file is not
        on this machine, the default config of ``algo`` with the search's ``--hyperparams``)
    :param n_timesteps: ``n_timesteps`` to write (None: the base config's, else the search's ``-n``)
    :return: ``(constructor arguments, document, description of the base)``
    """
    from sb3_mbrl.hyperparams_opt import hyperparams_from_params, to_zoo_config
    from sb3_mbrl.zoo import default_conf_file

    recorded = study.user_attrs.get(SEARCH_ATTR) or {}
    overrides: List[str] = []
    if conf_file is None:
        overrides = list(recorded.get("hyperparams") or [])
        conf_file = recorded.get("conf_file")
        if not conf_file or not Path(conf_file).is_file():  # e.g. a search run on another machine
            conf_file = default_conf_file(algo, env_id)
    description = f"{conf_file}, entry {env_id}" + (f", with --hyperparams {' '.join(overrides)}" if overrides else "")
    try:
        base = base_hyperparams(conf_file, env_id, overrides)
    except SearchError as error:
        if n_timesteps is None and recorded.get("n_timesteps") is None:
            raise
        base = {"policy": "MlpPolicy"}  # rl-zoo's minimum beside n_timesteps
        description = f"none ({error}): the config holds the sampled values only"
    sampled = hyperparams_from_params(algo, study.best_trial.params, n_envs=int(base.get("n_envs", 1)))
    config = {"n_timesteps": base.pop("n_timesteps", None), "policy": base.pop("policy", "MlpPolicy")}
    config.update(base)
    config.update(to_zoo_config(sampled))
    n_timesteps = n_timesteps or config["n_timesteps"] or recorded.get("n_timesteps")
    config["n_timesteps"] = None if n_timesteps is None else int(float(n_timesteps))  # YAML may give 2e5 as a float
    return sampled, {env_id: config}, description


def best(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    """
    ``sb3-mbrl best``: print a study's best trial and its hyperparameters; write them with ``--yaml``.

    :param argv: Command-line arguments
    :return: The rl-zoo config document of the best trial
    """
    from sb3_mbrl.zoo import register_algorithms

    register_algorithms()
    args = _best_parser().parse_args(argv)
    url = _resolve_storage(args)
    study = _load_study(url, args.study_name, args)
    recorded = study.user_attrs.get(SEARCH_ATTR) or {}
    algo = args.algo or recorded.get("algo")
    env_id = args.env or recorded.get("env")
    if algo is None or env_id is None:
        raise SearchError(f"Study {study.study_name!r} does not record its algorithm and env: give --algo and --env")
    states = Counter(trial.state.name.lower() for trial in study.trials)
    summary = ", ".join(f"{count} {state}" for state, count in sorted(states.items())) or "none"
    print(f"Study {study.study_name!r} in {display_storage(url)}: {algo} on {env_id}")
    print(f"Trials: {summary}")
    if states.get("complete", 0) == 0:
        raise SearchError(f"Study {study.study_name!r} has no complete trial yet (trials: {summary})")
    trial = study.best_trial
    print(f"Best trial: #{trial.number}, value {trial.value}")
    print("Params:")
    for key, value in trial.params.items():
        print(f"    {key}: {value}")
    sampled, document, base = best_config(study, algo, env_id, args.conf_file, args.n_timesteps)
    print("Hyperparameters (constructor arguments):")
    for key, value in sampled.items():
        print(f"    {key}: {value}")
    if args.yaml is not None:
        n_timesteps = document[env_id]["n_timesteps"]
        if n_timesteps is None:
            raise SearchError(f"The base config ({base}) has no n_timesteps: give -n")
        args.yaml.parent.mkdir(parents=True, exist_ok=True)
        header = (
            f"# Best trial #{trial.number} (value {trial.value}) of Optuna study {study.study_name!r}, "
            "written by `sb3-mbrl best`.\n"
            f"# Base config: {base}.\n# Train: sb3-mbrl train --algo {algo} --env {env_id} --conf-file {args.yaml}\n"
        )
        args.yaml.write_text(header + yaml.safe_dump(document, sort_keys=False))
        print(f"Base config: {base}")
        print(f"Wrote {args.yaml} (n_timesteps {n_timesteps}; -n to change): "
              f"sb3-mbrl train --algo {algo} --env {env_id} --conf-file {args.yaml}")
    return document


def best_main(argv: Optional[List[str]] = None) -> None:
    """``sb3-mbrl best`` with user errors as a one-line message and exit status 2."""
    try:
        best(argv)
    except SearchError as error:
        print(f"sb3-mbrl best: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


__all__ = [
    "Search",
    "SearchError",
    "base_hyperparams",
    "best",
    "best_config",
    "best_main",
    "default_storage_path",
    "default_study_name",
    "display_storage",
    "prepare_search",
    "storage_url",
]
