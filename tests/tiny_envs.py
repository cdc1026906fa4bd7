"""Tiny environments for the learning tests (tests/test_learning.py): fast, seeded, with known optima."""
from typing import Any, Dict, Optional, Tuple

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces

POINT_MASS_DT = 0.2
POINT_MASS_ACTION_COST = 0.01


class PointMassEnv(gym.Env):
    """
    A 1-D point mass to bring to the origin and hold there.

    Observation ``(x, v)`` (float32), action ``a`` in ``[-1, 1]`` (clipped), dynamics
    ``v' = v + dt * a``, ``x' = x + dt * v'`` (semi-implicit Euler, ``dt = 0.2``), reward
    ``-(x'^2) - 0.01 * a^2`` (see :func:`point_mass_reward`). Each episode starts at rest at a
    position uniform in ``[-1, 1]`` and is truncated after ``max_steps`` (50) steps; it never
    terminates. Per episode, a uniform random policy scores about -220 (its velocity random-walks
    away), doing nothing about -15 and a tuned PD controller about -0.8.
    """

    metadata = {"render_modes": []}

    def __init__(self, max_steps: int = 50) -> None:
        super().__init__()
        self.max_steps = max_steps
        self.observation_space = spaces.Box(low=-np.inf, high=np.inf, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Box(low=-1.0, high=1.0, shape=(1,), dtype=np.float32)
        self.state = np.zeros(2, dtype=np.float32)
        self.t = 0

    def reset(self, *, seed: Optional[int] = None, options: Optional[Dict[str, Any]] = None) -> Tuple[np.ndarray, Dict]:
        super().reset(seed=seed)
        x = self.np_random.uniform(-1.0, 1.0)
        self.state = np.array([x, 0.0], dtype=np.float32)
        self.t = 0
        return self.state.copy(), {}

    def step(self, action: np.ndarray) -> Tuple[np.ndarray, float, bool, bool, Dict]:
        a = np.clip(np.asarray(action, dtype=np.float32).reshape(-1)[0], -1.0, 1.0)
        x, v = self.state
        dt = np.float32(POINT_MASS_DT)
        v_next = np.float32(v + dt * a)
        x_next = np.float32(x + dt * v_next)
        self.state = np.array([x_next, v_next], dtype=np.float32)
        reward = -(x_next * x_next) - np.float32(POINT_MASS_ACTION_COST) * (a * a)
        self.t += 1
        return self.state.copy(), float(reward), False, self.t >= self.max_steps, {}


def point_mass_reward(obs: th.Tensor, action: th.Tensor, next_obs: th.Tensor) -> th.Tensor:
    """The reward of :class:`PointMassEnv`: ``-(x'^2) - 0.01 * clip(a, -1, 1)^2``, shape ``(B,)``."""
    a = action[:, 0].clamp(-1.0, 1.0)
    return -next_obs[:, 0].pow(2) - POINT_MASS_ACTION_COST * a.pow(2)


class CueEnv(gym.Env):
    """
    A contextual bandit in episodes: each step shows a one-hot cue out of ``n_actions``; the
    action that matches the cue earns 1, any other 0. The next cue is drawn uniformly at random
    whatever the action, and an episode ends (terminates) after ``episode_length`` steps.

    The best return is ``episode_length``; a uniform random policy gets ``1 / n_actions`` of it
    in expectation.
    """

    metadata = {"render_modes": []}

    def __init__(self, n_actions: int = 4, episode_length: int = 5) -> None:
        super().__init__()
        self.n_actions = n_actions
        self.episode_length = episode_length
        self.observation_space = spaces.Box(low=0.0, high=1.0, shape=(n_actions,), dtype=np.float32)
        self.action_space = spaces.Discrete(n_actions)
        self.cue = 0
        self.t = 0

    @property
    def max_return(self) -> float:
        return float(self.episode_length)

    def _obs(self) -> np.ndarray:
        obs = np.zeros(self.n_actions, dtype=np.float32)
        obs[self.cue] = 1.0
        return obs

    def reset(self, *, seed: Optional[int] = None, options: Optional[Dict[str, Any]] = None) -> Tuple[np.ndarray, Dict]:
        super().reset(seed=seed)
        self.cue = int(self.np_random.integers(self.n_actions))
        self.t = 0
        return self._obs(), {}

    def step(self, action: int) -> Tuple[np.ndarray, float, bool, bool, Dict]:
        reward = 1.0 if int(action) == self.cue else 0.0
        self.t += 1
        self.cue = int(self.np_random.integers(self.n_actions))
        return self._obs(), reward, self.t >= self.episode_length, False, {}
