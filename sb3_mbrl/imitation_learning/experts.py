"""Experts: SB3 PPO or SAC trained with the hyperparameters of ``zoo_configs/<algo>.yml``."""
import io
import json
import zipfile
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Type

import gymnasium as gym
from stable_baselines3 import A2C, DDPG, DQN, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm

from sb3_mbrl.common.zoo_config import ZooConfigError, ZooHyperparams, load_zoo_hyperparams
from sb3_mbrl.imitation_learning.common import ImitationError, PathLike, make_env, make_venv

EXPERT_ALGOS: Dict[str, Type[BaseAlgorithm]] = {"ppo": PPO, "sac": SAC, "td3": TD3, "a2c": A2C, "dqn": DQN, "ddpg": DDPG}


def default_expert_algo(env_id: str) -> str:
    """``sac`` for continuous actions, ``ppo`` otherwise."""
    env = make_env(env_id)
    try:
        return "sac" if isinstance(env.action_space, gym.spaces.Box) else "ppo"
    finally:
        env.close()


def expert_hyperparams(algo: str, env_id: str) -> ZooHyperparams:
    """
    The rl-zoo entry of ``algo`` on ``env_id`` (``zoo_configs/<algo>.yml`` when it has the task, else
    rl-zoo's own ``hyperparams/<algo>.yml``), read and processed as rl-zoo's train does; the
    algorithm's defaults (and no ``n_timesteps``) when neither file has the task.
    """
    try:
        hyperparams = load_zoo_hyperparams(algo, env_id)
    except ZooConfigError:
        return ZooHyperparams(conf_file="", entry={}, policy="MlpPolicy", kwargs={}, n_timesteps=0, n_envs=1)
    if hyperparams.normalize:
        raise ImitationError(
            f"The zoo config for {algo} on {env_id} uses VecNormalize, which an expert for imitation cannot use "
            "(demonstrations must hold raw observations). Remove `normalize` from the config."
        )
    return hyperparams


def expert_kwargs(algo: str, env_id: str) -> Tuple[Dict[str, Any], int, int, Any]:
    """(constructor kwargs, n_timesteps, n_envs, policy) for ``algo`` on ``env_id`` from the zoo configs."""
    hyperparams = expert_hyperparams(algo, env_id)
    return hyperparams.kwargs, hyperparams.n_timesteps, hyperparams.n_envs, hyperparams.policy


def train_expert(
    env_id: str,
    algo: Optional[str] = None,
    timesteps: Optional[int] = None,
    seed: int = 0,
    hyperparams: Optional[Dict[str, Any]] = None,
    verbose: int = 0,
    device: str = "auto",
) -> BaseAlgorithm:
    """
    Train an SB3 expert on ``env_id``.

    :param algo: ``ppo``, ``sac``, ... (default: ``sac`` for Box actions, ``ppo`` otherwise)
    :param timesteps: environment steps (default: ``n_timesteps`` of the zoo config)
    :param hyperparams: overrides of the zoo config's constructor arguments
    :return: the trained model (save it with ``model.save(path)``)
    """
    algo = (algo or default_expert_algo(env_id)).lower()
    if algo not in EXPERT_ALGOS:
        raise ImitationError(f"Unknown expert algorithm {algo!r}; choose one of {sorted(EXPERT_ALGOS)}")
    zoo = expert_hyperparams(algo, env_id)
    timesteps = int(timesteps if timesteps is not None else zoo.n_timesteps)
    if timesteps <= 0:
        raise ImitationError(
            f"No n_timesteps for {algo} on {env_id} in zoo_configs/{algo}.yml or rl-zoo's configs: pass timesteps"
        )
    venv = make_venv(env_id, n_envs=zoo.n_envs, seed=seed, rollout_info=False)
    kwargs = {**zoo.with_action_noise(venv), **(hyperparams or {})}
    model = EXPERT_ALGOS[algo](zoo.policy, venv, seed=seed, verbose=verbose, device=device, **kwargs)
    model.learn(total_timesteps=timesteps)
    return model


def _zip_algo_name(path: Path) -> Optional[str]:
    """Guess the algorithm of an SB3 zip from the attributes stored in its ``data`` JSON."""
    try:
        with zipfile.ZipFile(path) as archive:
            data = json.load(io.TextIOWrapper(archive.open("data"), encoding="utf-8"))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as error:
        raise ImitationError(f"{path} is not a Stable-Baselines3 model zip: {error}") from error
    # Attributes that only one algorithm family saves.
    for key, name in (("clip_range", "ppo"), ("target_entropy", "sac"), ("exploration_initial_eps", "dqn"),
                      ("target_policy_noise", "td3"), ("normalize_advantage", "a2c")):
        if key in data:
            return name
    return None


def load_model(path: PathLike, algo: Optional[str] = None, device: str = "auto") -> BaseAlgorithm:
    """
    Load an SB3 model zip (an expert, or a BC/GAIL policy saved by this package) with torch's
    safe loading. ``algo`` is guessed from the zip when not given.
    """
    path = Path(path)
    if not path.is_file() and path.with_suffix(".zip").is_file():
        path = path.with_suffix(".zip")
    if not path.is_file():
        raise ImitationError(f"No model file at {path}")
    algo = (algo or _zip_algo_name(path) or "").lower()
    if algo not in EXPERT_ALGOS:
        raise ImitationError(f"Cannot tell which algorithm saved {path}; pass algo= one of {sorted(EXPERT_ALGOS)}")
    return EXPERT_ALGOS[algo].load(path, device=device)
