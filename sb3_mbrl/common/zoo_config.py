"""
rl-zoo hyperparameter files: where ours are, and the one reader of an entry.

Everything that reads an rl-zoo config (``sb3-mbrl train``'s defaults, the hyperparameter search and
``sb3-mbrl best``, the imitation experts, the benchmarks) goes through :func:`read_zoo_entry` /
:func:`load_zoo_hyperparams`, which run rl-zoo's own ``ExperimentManager.read_hyperparameters`` and
``_preprocess_hyperparams``: YAML, Python file or package, the ``atari`` entry, ``--hyperparams``
overrides, ``lin_<x>`` schedules, ``policy_kwargs`` strings evaluated in rl-zoo's namespace (``nn``,
``th`` ...), ``normalize``, ``n_envs``, wrappers and callbacks, as ``rl_zoo3.train`` builds a model.
"""
import argparse
import contextlib
import copy
import functools
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional


class ZooConfigError(ValueError):
    """A config file that is missing, or has no entry for the env."""


def zoo_config_dir() -> Path:
    """
    The folder holding ``zoo_configs/<algo>.yml``: package data inside ``sb3_mbrl`` (as rl_zoo3 ships
    its ``hyperparams``), so editable and wheel installs find the same files. The checkout's
    ``zoo_configs`` at the repository root is a symlink to it.
    """
    return Path(__file__).parent.parent / "zoo_configs"


def rl_zoo_config_dir() -> Path:
    """rl-zoo's own ``hyperparams/`` folder (its default ``--conf-file`` is ``<that>/<algo>.yml``)."""
    import rl_zoo3

    return Path(rl_zoo3.__file__).parent / "hyperparams"


def default_conf_file(algo: str, env_id: str) -> str:
    """
    The hyperparameter file used without ``--conf-file``: ``zoo_configs/<algo>.yml`` when rl-zoo has no
    file for the algorithm (our algorithms) or ours has an entry for the env (SB3's algorithms on the
    tasks we configure, e.g. experts for imitation), else rl-zoo's own file.
    """
    ours, theirs = zoo_config_dir() / f"{algo}.yml", rl_zoo_config_dir() / f"{algo}.yml"
    if ours.is_file():
        if not theirs.is_file():
            return str(ours)
        try:
            read_zoo_entry(algo, env_id, str(ours))
            return str(ours)
        except ZooConfigError:
            pass
    return str(theirs)


@functools.lru_cache(maxsize=None)
def _reader_class() -> type:
    import gymnasium as gym
    from rl_zoo3.exp_manager import ExperimentManager

    class HyperparameterReader(ExperimentManager):
        """rl-zoo's ``ExperimentManager``, for reading only: an env id gymnasium does not know (yet) is no Atari one."""

        @staticmethod
        def is_atari(env_id: str) -> bool:
            return env_id in gym.envs.registry and ExperimentManager.is_atari(env_id)

        @staticmethod
        def is_minigrid(env_id: str) -> bool:
            return env_id in gym.envs.registry and ExperimentManager.is_minigrid(env_id)

    return HyperparameterReader


def _manager(algo: str, env_id: str, conf_file: Optional[str], hyperparams: Optional[Dict[str, Any]], n_timesteps: int) -> Any:
    conf_file = conf_file or default_conf_file(algo, env_id)
    if conf_file.endswith((".yml", ".yaml")) and not Path(conf_file).is_file():
        raise ZooConfigError(f"Hyperparameter file {conf_file} not found")
    return _reader_class()(
        argparse.Namespace(), algo, env_id, log_folder=os.devnull, n_timesteps=n_timesteps,
        hyperparams=hyperparams, config=conf_file, verbose=0,
    )


def _read(manager: Any) -> Dict[str, Any]:
    with contextlib.redirect_stdout(io.StringIO()):  # rl-zoo prints the file and the entry
        try:
            entry, _ = manager.read_hyperparameters()
        except ValueError as error:  # "Hyperparameters not found for <algo>-<env> in <file>"
            raise ZooConfigError(str(error)) from None
        except (ImportError, OSError) as error:  # a Python file or package that is not there
            raise ZooConfigError(f"Cannot read the hyperparameter file {manager.config}: {error}") from None
    return copy.deepcopy(dict(entry))  # a Python package's dict is shared: keep it as it is


def read_zoo_entry(
    algo: str, env_id: str, conf_file: Optional[str] = None, hyperparams: Optional[Dict[str, Any]] = None
) -> Dict[str, Any]:
    """
    The entry of ``env_id`` as rl-zoo reads it, before any processing (schedules and ``policy_kwargs``
    still strings, as in the file and in the ``config.yml`` rl-zoo saves): the env's entry (``atari``
    for Atari ids) updated with ``hyperparams``.

    :param algo: rl-zoo algorithm name
    :param env_id: Env id
    :param conf_file: YAML or Python file or package (default: :func:`default_conf_file`)
    :param hyperparams: ``--hyperparams`` overrides, as rl-zoo's ``StoreDict`` parsed them
    :return: The entry, in the file's order
    :raises ZooConfigError: When the file does not exist or has no entry for the env
    """
    return _read(_manager(algo, env_id, conf_file, hyperparams, 0))


@dataclass
class ZooHyperparams:
    """
    An rl-zoo entry split as ``rl_zoo3.train`` uses it: keyword arguments for the algorithm's
    constructor (``ALGOS[algo](policy, env, **kwargs)``) and the settings rl-zoo keeps for itself.

    :param conf_file: The file read
    :param entry: The entry as read (:func:`read_zoo_entry`)
    :param policy: Policy name or class
    :param kwargs: Constructor keyword arguments, processed (schedules, ``policy_kwargs`` objects,
        ``train_freq`` tuples); ``policy``, ``env`` and the action noise (:meth:`with_action_noise`) apart
    :param n_timesteps: Training steps (0 when the entry has none)
    :param n_envs: Training envs
    :param normalize: Whether rl-zoo wraps the envs in ``VecNormalize``, with ``normalize_kwargs``
    :param normalize_kwargs: ``VecNormalize`` arguments (the algorithm's ``gamma`` included)
    :param frame_stack: ``VecFrameStack`` size, or None
    :param env_wrapper: Gym wrapper (class or callable) of each env, or None
    :param vec_env_wrapper: VecEnv wrapper, or None
    :param callbacks: Callbacks of the entry's ``callback``, made
    :param monitor_kwargs: ``Monitor`` arguments
    :param noise: ``noise_type`` and ``noise_std`` when the entry sets action noise
    """

    conf_file: str
    entry: Dict[str, Any]
    policy: Any
    kwargs: Dict[str, Any]
    n_timesteps: int
    n_envs: int
    normalize: bool = False
    normalize_kwargs: Dict[str, Any] = field(default_factory=dict)
    frame_stack: Optional[int] = None
    env_wrapper: Optional[Callable] = None
    vec_env_wrapper: Optional[Callable] = None
    callbacks: List[Any] = field(default_factory=list)
    monitor_kwargs: Dict[str, Any] = field(default_factory=dict)
    noise: Dict[str, Any] = field(default_factory=dict)
    _manager: Any = field(default=None, repr=False, compare=False)

    def with_action_noise(self, env: Any) -> Dict[str, Any]:
        """``kwargs`` plus the ``action_noise`` rl-zoo makes for ``env``'s action space from ``noise``."""
        if not self.noise:
            return dict(self.kwargs)
        with contextlib.redirect_stdout(io.StringIO()):
            return self._manager._preprocess_action_noise({**self.kwargs, **self.noise}, {}, env)


def load_zoo_hyperparams(
    algo: str,
    env_id: str,
    conf_file: Optional[str] = None,
    hyperparams: Optional[Dict[str, Any]] = None,
    n_timesteps: int = 0,
) -> ZooHyperparams:
    """
    An rl-zoo entry read and processed by rl-zoo's ``ExperimentManager``, as ``sb3-mbrl train`` would.

    :param algo: rl-zoo algorithm name
    :param env_id: Env id
    :param conf_file: YAML or Python file or package (default: :func:`default_conf_file`)
    :param hyperparams: ``--hyperparams`` overrides, as rl-zoo's ``StoreDict`` parsed them
    :param n_timesteps: rl-zoo's ``-n``: replaces the entry's ``n_timesteps`` when positive
    :return: Constructor keyword arguments and rl-zoo's own settings, apart
    :raises ZooConfigError: When the file does not exist or has no entry for the env
    """
    manager = _manager(algo, env_id, conf_file, hyperparams, n_timesteps)
    entry = _read(manager)
    processed = copy.deepcopy(entry)
    processed.setdefault("n_timesteps", 0)
    with contextlib.redirect_stdout(io.StringIO()):
        kwargs, env_wrapper, callbacks, vec_env_wrapper = manager._preprocess_hyperparams(processed)
    noise = {key: kwargs.pop(key) for key in ("noise_type", "noise_std") if key in kwargs}
    return ZooHyperparams(
        conf_file=manager.config,
        entry=entry,
        policy=kwargs.pop("policy", "MlpPolicy"),
        kwargs=kwargs,
        n_timesteps=int(manager.n_timesteps),
        n_envs=int(manager.n_envs),
        normalize=bool(manager.normalize),
        normalize_kwargs=dict(manager.normalize_kwargs),
        frame_stack=manager.frame_stack,
        env_wrapper=env_wrapper,
        vec_env_wrapper=vec_env_wrapper,
        callbacks=callbacks,
        monitor_kwargs=dict(manager.monitor_kwargs),
        noise=noise,
        _manager=manager,
    )


__all__ = [
    "ZooConfigError",
    "ZooHyperparams",
    "default_conf_file",
    "load_zoo_hyperparams",
    "read_zoo_entry",
    "rl_zoo_config_dir",
    "zoo_config_dir",
]
