"""Evaluation with SB3's ``evaluate_policy`` and the normalised score against expert and random."""
from dataclasses import asdict, dataclass
from typing import Any, Dict, Optional, Tuple

import gymnasium as gym
import numpy as np
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_mbrl.imitation_learning.common import make_venv

EVAL_SEED_OFFSET = 10_000  # evaluation episodes never share seeds with training or demonstrations


class RandomPolicy:
    """Uniformly random actions, with the ``predict`` signature ``evaluate_policy`` expects."""

    def __init__(self, action_space: gym.Space, seed: int = 0):
        self.action_space = action_space
        self.action_space.seed(seed)

    def predict(self, observation, state=None, episode_start=None, deterministic: bool = False):
        n = len(observation)
        return np.stack([self.action_space.sample() for _ in range(n)]), state


def evaluate(
    policy: Any, env_id: str, n_episodes: int = 20, seed: int = 0, deterministic: bool = True, n_envs: int = 5
) -> Tuple[float, float]:
    """(mean, std) of the undiscounted episode return of ``policy`` over ``n_episodes`` episodes."""
    venv = make_venv(env_id, n_envs=min(n_envs, n_episodes), seed=seed + EVAL_SEED_OFFSET, rollout_info=False)
    try:
        mean, std = evaluate_policy(policy, venv, n_eval_episodes=n_episodes, deterministic=deterministic)
    finally:
        venv.close()
    return float(mean), float(std)


def random_return(env_id: str, n_episodes: int = 20, seed: int = 0) -> Tuple[float, float]:
    """(mean, std) return of uniformly random actions, evaluated like any policy."""
    venv = make_venv(env_id, n_envs=1, seed=seed, rollout_info=False)
    space = venv.action_space
    venv.close()
    return evaluate(RandomPolicy(space, seed=seed), env_id, n_episodes=n_episodes, seed=seed, deterministic=False)


def normalised_score(value: float, random_value: float, expert_value: float) -> Optional[float]:
    """``(R - R_random) / (R_expert - R_random)``: 0 is random, 1 is the expert; None if undefined."""
    if expert_value is None or random_value is None or value is None:
        return None
    gap = expert_value - random_value
    if abs(gap) < 1e-8:
        return None
    return float((value - random_value) / gap)


@dataclass
class Evaluation:
    """Mean/std return of a policy, with the expert and random references and the normalised score."""

    mean_return: float
    std_return: float
    expert_return: Optional[float]
    random_return: float
    normalised_score: Optional[float]
    n_eval_episodes: int

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def evaluate_against(
    policy: Any,
    env_id: str,
    expert_return: Optional[float],
    random_value: Optional[float] = None,
    n_episodes: int = 20,
    seed: int = 0,
) -> Evaluation:
    """Evaluate ``policy`` and score it between the random policy (0) and ``expert_return`` (1)."""
    mean, std = evaluate(policy, env_id, n_episodes=n_episodes, seed=seed)
    if random_value is None:
        random_value, _ = random_return(env_id, n_episodes=n_episodes, seed=seed)
    return Evaluation(mean, std, expert_return, random_value, normalised_score(mean, random_value, expert_return), n_episodes)
