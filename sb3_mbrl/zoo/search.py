"""
``sb3-mbrl train -optimize``: the Optuna study is created (or opened) before rl-zoo runs the search, so
that the storage exists, workers started together do not race on a fresh database, the study records
what it searches (for ``sb3-mbrl best`` and the other workers), and a search that cannot say anything
is refused before any trial runs.
"""
import contextlib
import inspect
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import List, Optional

import optuna

from sb3_mbrl.common.zoo_config import ZooConfigError, default_conf_file, load_zoo_hyperparams
from sb3_mbrl.zoo.argv import hyperparams_strings, parse_args, parse_hyperparams
from sb3_mbrl.zoo.search_spaces import set_pets_discrete_actions
from sb3_mbrl.zoo.storage import SearchError, display_storage, retrying, sqlite_path

SEARCH_ATTR = "sb3_mbrl_search"  # study user attribute: what the search runs (algo, env, config)


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
        """The search of ``sb3-mbrl train`` arguments (after :func:`sb3_mbrl.zoo.argv.train_argv`)."""
        args = parse_args("train", argv)
        conf_file = args.conf_file or default_conf_file(args.algo, args.env)
        if conf_file.endswith((".yml", ".yaml")):
            conf_file = str(Path(conf_file).resolve())
        n_timesteps = args.n_timesteps if args.n_timesteps > 0 else None
        return cls(args.algo, args.env, conf_file, hyperparams_strings(argv), n_timesteps)


def check_pets_evaluations(search: Search, n_evaluations: Optional[int]) -> None:
    """
    Refuse a PETS search whose first evaluation comes before PETS's first model fit: PETS plans with the
    model, and before the first fit its ``predict`` (used by rl-zoo's ``TrialEvalCallback``) acts uniformly
    at random, so that evaluation would score (and maybe prune) the trial on noise that says nothing
    about its hyperparameters. PETS fits first when it picks its action at step ``learning_starts``.

    :param search: The search
    :param n_evaluations: ``--n-evaluations`` (None: rl-zoo's default, one per 100k steps)
    """
    if search.algo != "pets":
        return
    from rl_zoo3.utils import ALGOS  # PETS, put there by register_algorithms

    try:
        base = load_zoo_hyperparams(
            search.algo, search.env, search.conf_file, parse_hyperparams(search.hyperparams), search.n_timesteps or 0
        )
    except ZooConfigError as error:
        raise SearchError(str(error)) from None
    n_timesteps = base.n_timesteps
    if n_timesteps <= 0:
        return
    n_evaluations = n_evaluations or max(1, n_timesteps // int(1e5))  # rl-zoo's default
    n_envs = base.n_envs
    eval_freq = max(int(n_timesteps / n_evaluations) // n_envs, 1)  # as rl-zoo's objective computes it
    default = inspect.signature(ALGOS[search.algo]).parameters["learning_starts"].default
    learning_starts = int(base.kwargs.get("learning_starts", default))
    # The evaluation after callback call k sees the action picked at step (k - 1) * n_envs.
    if (eval_freq - 1) * n_envs < max(learning_starts, 1):
        raise SearchError(
            f"PETS would be evaluated every {eval_freq} env steps ({n_timesteps} steps / {n_evaluations} evaluations), "
            f"before its first model fit at learning_starts={learning_starts}: use fewer --n-evaluations, "
            "a larger -n or a smaller learning_starts"
        )


def _has_discrete_actions(env_id: str) -> bool:
    """Whether ``env_id`` has Discrete actions (False when it cannot be made here: rl-zoo reports that)."""
    import gymnasium as gym

    try:
        with contextlib.closing(gym.make(env_id)) as env:
            return isinstance(env.action_space, gym.spaces.Discrete)
    except Exception:  # noqa: BLE001 - an unknown or unmakeable id is rl-zoo's error to report
        return False


def prepare_search(argv: List[str]) -> optuna.Study:
    """
    Create (or open) the study of a ``train -optimize`` command before rl-zoo does, so that the
    storage exists, concurrent workers do not race on a fresh database, and the study records what
    it searches. Prints where the study is.

    :param argv: ``sb3-mbrl train`` arguments after :func:`sb3_mbrl.zoo.argv.train_argv` (so with
        ``--storage`` and ``--study-name``)
    :return: The study
    """
    args = parse_args("train", argv)
    search = Search.from_argv(argv)
    check_pets_evaluations(search, args.n_evaluations)
    if search.algo == "pets":
        set_pets_discrete_actions(_has_discrete_actions(search.env))
    storage, study_name = args.storage, args.study_name
    assert storage is not None and study_name is not None, "train_argv fills in --storage and --study-name"
    path = sqlite_path(storage)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    study = retrying(
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
        retrying(lambda: study.set_user_attr(SEARCH_ATTR, record), storage)
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


__all__ = ["SEARCH_ATTR", "Search", "check_pets_evaluations", "prepare_search"]
