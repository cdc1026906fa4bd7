"""Environments and errors shared by the imitation-learning helpers (atomic file writes: :mod:`sb3_mbrl.common.files`)."""
from typing import List

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import VecEnv

from sb3_mbrl.common.files import PathLike  # noqa: F401  (re-exported: experts.py imports it from here)


class ImitationError(ValueError):
    """A user-facing error: bad demonstrations, a variable-horizon task, a missing file."""


class DemonstrationError(ImitationError):
    """Missing, corrupt, empty or mismatched demonstrations."""


class VariableHorizonError(ImitationError):
    """The task ends episodes at different lengths, which `imitation` refuses by default."""


def _register_env_packages() -> None:
    """Register the seals tasks (``seals/CartPole-v0`` ...) in gymnasium."""
    try:
        import seals  # noqa: F401
    except ImportError:  # pragma: no cover - seals is a dependency of imitation
        pass


def make_env(env_id: str) -> gym.Env:
    """``gym.make(env_id)`` after registering the seals tasks, with a clear error for unknown ids."""
    _register_env_packages()
    try:
        return gym.make(env_id)
    except gym.error.Error as error:
        raise ImitationError(f"Unknown or invalid environment id {env_id!r}: {error}") from error


def make_venv(env_id: str, n_envs: int = 1, seed: int = 0, rollout_info: bool = True) -> VecEnv:
    """
    A seeded ``DummyVecEnv`` of ``n_envs`` copies of ``env_id``, each in a ``Monitor`` (so
    ``evaluate_policy`` reports true episode returns) and, with ``rollout_info``, in imitation's
    ``RolloutInfoWrapper`` (needed by ``imitation.data.rollout`` to record whole episodes).
    """
    from imitation.data.wrappers import RolloutInfoWrapper
    from imitation.util.util import make_vec_env

    _register_env_packages()
    make_env(env_id).close()  # fail early with our error for unknown ids
    post_wrappers = [lambda env, _: RolloutInfoWrapper(env)] if rollout_info else None
    return make_vec_env(env_id, rng=np.random.default_rng(seed), n_envs=n_envs, post_wrappers=post_wrappers)


def episode_lengths(env_id: str, n_episodes: int = 3, seed: int = 0, max_steps: int = 100_000) -> List[int]:
    """Lengths of ``n_episodes`` episodes of ``env_id`` under uniformly random actions."""
    env = make_env(env_id)
    env.action_space.seed(seed)
    lengths = []
    try:
        for episode in range(n_episodes):
            env.reset(seed=seed + episode)
            length, done = 0, False
            while not done and length < max_steps:
                _, _, terminated, truncated, _ = env.step(env.action_space.sample())
                length += 1
                done = terminated or truncated
            lengths.append(length)
    finally:
        env.close()
    return lengths


def variable_horizon_message(env_id: str, lengths: List[int]) -> str:
    return (
        f"{env_id} has a variable horizon (episode lengths {sorted(set(lengths))}): its termination "
        "condition leaks information about the reward, and imitation refuses such episodes by default. "
        "Use a fixed-horizon task instead (e.g. seals/CartPole-v0 rather than CartPole-v1, or "
        "Pendulum-v1), or pass allow_variable_horizon=True (CLI: --allow-variable-horizon) if you "
        "accept the bias; see https://imitation.readthedocs.io/en/latest/getting-started/variable-horizon.html"
    )


def check_fixed_horizon(env_id: str, n_episodes: int = 3, seed: int = 0, allow_variable_horizon: bool = False) -> None:
    """
    Raise ``VariableHorizonError`` if random-action episodes of ``env_id`` end at different
    lengths or before the registered time limit (a termination condition exists), unless
    ``allow_variable_horizon``. Cheap: a few random episodes.
    """
    if allow_variable_horizon:
        return
    lengths = episode_lengths(env_id, n_episodes=n_episodes, seed=seed)
    env = make_env(env_id)
    limit = env.spec.max_episode_steps if env.spec is not None else None
    env.close()
    if len(set(lengths)) > 1 or (limit is not None and lengths[0] != limit):
        raise VariableHorizonError(variable_horizon_message(env_id, lengths))
