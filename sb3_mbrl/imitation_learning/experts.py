"""Experts: SB3 PPO or SAC trained with the hyperparameters of ``zoo_configs/<algo>.yml``."""
import io
import json
import warnings
import zipfile
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Type, Union

import gymnasium as gym
from stable_baselines3 import A2C, DDPG, DQN, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm

from sb3_mbrl.common.zoo_config import ZooConfigError, ZooHyperparams, load_zoo_hyperparams
from sb3_mbrl.imitation_learning.common import ImitationError, PathLike, make_env, make_venv

EXPERT_ALGOS: Dict[str, Type[BaseAlgorithm]] = {"ppo": PPO, "sac": SAC, "td3": TD3, "a2c": A2C, "dqn": DQN, "ddpg": DDPG}

# The mean deterministic return an expert must reach before it is used for demonstrations
# (issue 15): the task's maximum on seals' fixed-horizon CartPole, rl-zoo's "solved" threshold on
# CartPole-v1, and a swing-up held from every start on Pendulum-v1.
EXPERT_LEVELS: Dict[str, float] = {
    "seals/CartPole-v0": 500.0,
    "CartPole-v1": 475.0,
    "Pendulum-v1": -200.0,
}


class ExpertBelowLevelError(ImitationError):
    """An expert that did not reach its task's expert level (:data:`EXPERT_LEVELS`) after its retraining rounds."""


def expert_level(env_id: str) -> Optional[float]:
    """The expert level of ``env_id`` (:data:`EXPERT_LEVELS`), ``None`` for a task without one."""
    return EXPERT_LEVELS.get(env_id)


def resolve_min_return(env_id: str, min_return: Union[str, float, None]) -> Optional[float]:
    """``"auto"``: the task's :func:`expert_level`; ``None``: no check; a number: that level."""
    if isinstance(min_return, str):
        if min_return != "auto":
            raise ImitationError(f"min_return must be 'auto', None or a number, got {min_return!r}")
        return expert_level(env_id)
    return None if min_return is None else float(min_return)


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
    min_return: Union[str, float, None] = "auto",
    max_rounds: int = 3,
    eval_episodes: int = 10,
    on_miss: str = "raise",
) -> BaseAlgorithm:
    """
    Train an SB3 expert on ``env_id`` until it reaches the task's expert level.

    After each round of ``timesteps`` env steps the expert is evaluated (``eval_episodes``
    deterministic episodes on seeds of its own); below ``min_return`` it trains another round on
    the same model, at most ``max_rounds`` rounds in all. An expert that still misses is never
    returned silently: ``on_miss="raise"`` raises :class:`ExpertBelowLevelError`, ``"warn"`` warns
    and returns it.

    :param algo: ``ppo``, ``sac``, ... (default: ``sac`` for Box actions, ``ppo`` otherwise)
    :param timesteps: environment steps per round (default: ``n_timesteps`` of the zoo config)
    :param hyperparams: overrides of the zoo config's constructor arguments
    :param min_return: mean return the expert must reach: ``"auto"`` (:data:`EXPERT_LEVELS`; no
        check for other tasks), ``None`` (no check) or a number
    :param max_rounds: training rounds at most (the first included)
    :param eval_episodes: evaluation episodes after each round
    :param on_miss: ``"raise"`` or ``"warn"`` when the last round is still below ``min_return``
    :return: the trained model (save it with ``model.save(path)``; ``model.num_timesteps`` tells
        how many rounds it took); each round's evaluation is printed when below the level or at ``verbose >= 1``
    """
    if max_rounds < 1 or eval_episodes < 1:
        raise ImitationError(f"max_rounds and eval_episodes must be positive, got {max_rounds} and {eval_episodes}")
    if on_miss not in ("raise", "warn"):
        raise ImitationError(f"on_miss must be 'raise' or 'warn', got {on_miss!r}")
    level = resolve_min_return(env_id, min_return)
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
    if level is None:
        return model
    from sb3_mbrl.imitation_learning.evaluation import evaluate

    for rounds in range(1, max_rounds + 1):
        if rounds > 1:
            model.learn(total_timesteps=timesteps, reset_num_timesteps=False)
        mean, _ = evaluate(model, env_id, n_episodes=eval_episodes, seed=seed)
        met = mean >= level
        if verbose >= 1 or not met:
            print(f"expert {algo} on {env_id}, round {rounds}/{max_rounds} ({model.num_timesteps} steps): "
                  f"mean return {mean:.1f}, level {level:g}: {'met' if met else 'below'}", flush=True)
        if met:
            return model
    message = (
        f"The {algo} expert on {env_id} reached a mean return of {mean:.1f} over {eval_episodes} episodes after "
        f"{model.num_timesteps} env steps ({max_rounds} rounds of {timesteps}), below the expert level {level:g}: "
        "demonstrations from it would not show the task solved. Train longer (timesteps, max_rounds), change its "
        "hyperparameters, or lower min_return."
    )
    if on_miss == "raise":
        raise ExpertBelowLevelError(message)
    warnings.warn(message, stacklevel=2)
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
