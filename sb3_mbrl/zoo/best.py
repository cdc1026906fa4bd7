"""
``sb3-mbrl best``: the best trial of a study made by ``sb3-mbrl train -optimize``, as the constructor
arguments it stands for (the algorithm's sampler run on ``study.best_params`` with an
``optuna.trial.FixedTrial``), and as an rl-zoo config to train with.
"""
import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import optuna
import yaml
from torch import nn

from sb3_mbrl.common.zoo_config import ZooConfigError, default_conf_file, read_zoo_entry
from sb3_mbrl.zoo.argv import parse_hyperparams
from sb3_mbrl.zoo.registry import register_algorithms
from sb3_mbrl.zoo.search import SEARCH_ATTR
from sb3_mbrl.zoo.search_spaces import hyperparams_from_params
from sb3_mbrl.zoo.storage import (
    SearchError,
    default_storage_path,
    default_study_name,
    display_storage,
    retrying,
    sqlite_path,
    sqlite_url,
    storage_url,
)


# ---------------------------------------------------------------------------- rl-zoo YAML values
def python_source(value: Any) -> str:
    """
    Python source for a value made of dicts, lists, tuples, scalars and ``torch.nn`` classes: the form
    rl-zoo ``eval()``-s for ``policy_kwargs`` in its YAML files (with ``nn`` and ``th`` in scope).

    :param value: The value
    :return: Its source, e.g. ``"dict(net_arch=[64, 64], activation_fn=nn.ReLU)"``
    """
    if isinstance(value, dict):
        if all(isinstance(key, str) and key.isidentifier() for key in value):
            return "dict(" + ", ".join(f"{key}={python_source(item)}" for key, item in value.items()) + ")"
        return "{" + ", ".join(f"{python_source(key)}: {python_source(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(python_source(item) for item in value) + "]"
    if isinstance(value, tuple):
        return "(" + ", ".join(python_source(item) for item in value) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, type) and issubclass(value, nn.Module) and getattr(nn, value.__name__, None) is value:
        return f"nn.{value.__name__}"
    if value is None or isinstance(value, (bool, int, float, str)):
        return repr(value)
    raise ValueError(f"Cannot write {value!r} into an rl-zoo config: only dicts, lists, scalars and torch.nn classes")


# rl-zoo eval()-s these keys when they are strings; every other value goes to the constructor as YAML gives it.
_EVALUATED_KEYS = ("policy_kwargs", "replay_buffer_class", "replay_buffer_kwargs")


def to_zoo_config(hyperparams: Dict[str, Any]) -> Dict[str, Any]:
    """
    Constructor keyword arguments as rl-zoo YAML values: ``policy_kwargs`` (and replay buffer
    settings) as the Python source rl-zoo evaluates, tuples as lists, the rest unchanged.

    :param hyperparams: Constructor keyword arguments
    :return: Values ready for ``yaml.safe_dump``
    """
    config: Dict[str, Any] = {}
    for key, value in hyperparams.items():
        if key in _EVALUATED_KEYS and not isinstance(value, str):
            config[key] = python_source(value)
        else:
            config[key] = _yaml_value(key, value)
    return config


def _yaml_value(key: str, value: Any) -> Union[None, bool, int, float, str, list, dict]:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_yaml_value(key, item) for item in value]
    if isinstance(value, dict):
        return {str(k): _yaml_value(key, item) for k, item in value.items()}
    raise ValueError(f"Cannot write {key}={value!r} into an rl-zoo config (not a YAML scalar, list or mapping)")


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
    names = retrying(lambda: optuna.get_all_study_names(storage=url), url)
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
    recorded = study.user_attrs.get(SEARCH_ATTR) or {}
    overrides: List[str] = []
    if conf_file is None:
        overrides = list(recorded.get("hyperparams") or [])
        conf_file = recorded.get("conf_file")
        if not conf_file or not Path(conf_file).is_file():  # e.g. a search run on another machine
            conf_file = default_conf_file(algo, env_id)
    description = f"{conf_file}, entry {env_id}" + (f", with --hyperparams {' '.join(overrides)}" if overrides else "")
    try:
        base = read_zoo_entry(algo, env_id, conf_file, parse_hyperparams(overrides))
    except ZooConfigError as error:
        if n_timesteps is None and recorded.get("n_timesteps") is None:
            raise
        base = {"policy": "MlpPolicy"}  # rl-zoo's minimum beside n_timesteps
        description = f"none ({error}): the config holds the sampled values only"
    sampled = hyperparams_from_params(algo, study.best_params, n_envs=int(base.get("n_envs", 1)))
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


__all__ = ["best", "best_config", "best_main", "python_source", "to_zoo_config"]
