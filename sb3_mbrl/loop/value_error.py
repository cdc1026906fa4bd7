"""How far SAC's value is from the real returns of the episodes LOOP collects: the gate of the value in its plans."""
from typing import Callable, List, Optional

import numpy as np
import torch as th

ValueFn = Callable[[th.Tensor], th.Tensor]


def discounted_returns_to_go(rewards: np.ndarray, gamma: float, bootstrap: float = 0.0) -> np.ndarray:
    """
    ``G_t = r_t + gamma * G_{t+1}`` for every step of one episode, with ``G_T = bootstrap`` after its
    last step (the value of the last state when the episode was truncated, 0 when it terminated).
    One reverse pass per ended episode, as SB3's rollout buffer computes its returns.

    :param rewards: The episode's rewards ``(T,)``.
    :param gamma: Discount factor.
    :param bootstrap: Value after the last step.
    :return: ``(T,)`` float64 returns-to-go.
    """
    returns = np.empty(len(rewards), dtype=np.float64)
    running = float(bootstrap)
    for t in range(len(rewards) - 1, -1, -1):
        running = float(rewards[t]) + gamma * running
        returns[t] = running
    return returns


def relative_value_error(values: np.ndarray, returns: np.ndarray, real_returns: Optional[np.ndarray] = None) -> float:
    """
    ``|mean(values) - mean(returns)| / mean(|real_returns|)`` over the first half of an episode's
    states (at least one): the value's bias against what the episode returned, on the scale of the
    rewards it really collected. The first half, because the returns of the last states are mostly
    the bootstrap, which is the value itself; the scale leaves the bootstrap out for the same reason
    (a value 1,000 too high, bootstrapped into the returns, would otherwise look close to them).

    :param values: The value of each state of the episode ``(T,)``.
    :param returns: Their discounted returns-to-go, bootstrapped where the episode was truncated ``(T,)``.
    :param real_returns: The same without the bootstrap (default: ``returns``).
    """
    half = max(1, len(returns) // 2)
    real = returns if real_returns is None else real_returns
    scale = max(float(np.mean(np.abs(real[:half]))), 1e-8)
    return abs(float(np.mean(values[:half])) - float(np.mean(returns[:half]))) / scale


class EpisodeValueError:
    """
    Keeps the states and rewards of each env's current episode and, when one ends, measures the
    value's relative error on it (:func:`relative_value_error`; the value of every state in one batch).

    :param n_envs: Number of envs collecting.
    :param gamma: Discount factor of the returns (SAC's ``gamma``).
    """

    def __init__(self, n_envs: int, gamma: float) -> None:
        self.gamma = gamma
        self.n_envs = n_envs
        self.restart()

    def restart(self) -> None:
        """Forget the episodes in progress (the envs were reset)."""
        self.obs: List[List[np.ndarray]] = [[] for _ in range(self.n_envs)]
        self.rewards: List[List[float]] = [[] for _ in range(self.n_envs)]

    def record(
        self,
        obs: np.ndarray,
        rewards: np.ndarray,
        dones: np.ndarray,
        infos: List[dict],
        value_fn: ValueFn,
        device: th.device,
    ) -> List[float]:
        """
        One collection step of every env; returns the relative errors of the episodes that ended.

        :param obs: The observations the actions were taken in ``(n_envs, obs_dim)``.
        :param rewards: ``(n_envs,)``.
        :param dones: ``(n_envs,)``.
        :param infos: The envs' infos (``terminal_observation``, ``TimeLimit.truncated``).
        :param value_fn: The value ``obs (B, obs_dim) -> (B,)``.
        :param device: Where the value runs.
        """
        errors = []
        for i in range(self.n_envs):
            self.obs[i].append(np.asarray(obs[i], dtype=np.float32).reshape(-1))
            self.rewards[i].append(float(rewards[i]))
            if not dones[i]:
                continue
            truncated = bool(infos[i].get("TimeLimit.truncated", False))
            states = np.stack(self.obs[i])  # (T, obs_dim)
            if truncated:
                last = np.asarray(infos[i]["terminal_observation"], dtype=np.float32).reshape(1, -1)
                states = np.concatenate([states, last])  # (T + 1, obs_dim): the last state bootstraps
            with th.no_grad():
                values = value_fn(th.as_tensor(states, device=device)).double().cpu().numpy()  # one batch per episode
            bootstrap = float(values[-1]) if truncated else 0.0
            rewards = np.asarray(self.rewards[i])
            returns = discounted_returns_to_go(rewards, self.gamma, bootstrap)
            real_returns = discounted_returns_to_go(rewards, self.gamma) if truncated else returns
            errors.append(relative_value_error(values[: len(returns)], returns, real_returns))
            self.obs[i], self.rewards[i] = [], []
        return errors


def value_trusted(error: Optional[float], max_error: Optional[float]) -> bool:
    """Whether the value may enter the plans: no gate (``max_error is None``), or a measured error within it."""
    return max_error is None or (error is not None and error <= max_error)
