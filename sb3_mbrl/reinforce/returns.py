"""
REINFORCE's returns and advantages, in numpy: the discounted Monte-Carlo returns of a rollout, the
baselines subtracted from them and the rescaling of the advantages.
"""
from typing import Optional, Tuple

import numpy as np

BASELINES = ("value", "mean", None)
PARTIAL_EPISODES = ("bootstrap", "drop")


def check_partial_episodes(baseline: Optional[str], partial_episodes: Optional[str]) -> str:
    """
    The checked ``partial_episodes`` for a ``baseline``: None gives ``"bootstrap"`` with the value
    baseline, ``"drop"`` otherwise (bootstrapping needs the value head).

    :param baseline: One of :data:`BASELINES`.
    :param partial_episodes: One of :data:`PARTIAL_EPISODES` or None.
    :return: ``"bootstrap"`` or ``"drop"``.
    """
    if baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}, got {baseline!r}")
    if partial_episodes is None:
        partial_episodes = "bootstrap" if baseline == "value" else "drop"
    if partial_episodes not in PARTIAL_EPISODES:
        raise ValueError(f"partial_episodes must be one of {PARTIAL_EPISODES} or None, got {partial_episodes!r}")
    if partial_episodes == "bootstrap" and baseline != "value":
        raise ValueError(f'partial_episodes="bootstrap" needs baseline="value" (got baseline={baseline!r}); use "drop"')
    return partial_episodes


def discounted_returns(
    rewards: np.ndarray,
    dones: np.ndarray,
    gamma: float,
    last_values: Optional[np.ndarray] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """
    Discounted Monte-Carlo returns ``G_t = r_t + gamma * G_{t+1}`` of every step of a rollout,
    restarted at each episode end, computed backwards in float64.

    Steps of an episode still running after the last step of the rollout have no complete return:
    with ``last_values`` their return is bootstrapped with the value of the observation that follows
    the last step; without it they are marked incomplete (and their returns stop at the rollout end).

    :param rewards: Rewards, shape ``(n_steps, n_envs)``
    :param dones: Whether the episode ended with the step (terminated or truncated), shape ``(n_steps, n_envs)``
    :param gamma: Discount factor
    :param last_values: Values of the observations after the last step, shape ``(n_envs,)``, or None
    :return: ``(returns, complete)``: the returns (float64) and whether each step's return is a
        Monte-Carlo return of a finished episode or a bootstrapped one (bool), both ``(n_steps, n_envs)``
    """
    rewards = np.asarray(rewards, dtype=np.float64)  # (T, n_envs)
    dones = np.asarray(dones, dtype=bool)  # (T, n_envs)
    if rewards.ndim != 2 or rewards.shape != dones.shape:
        raise ValueError(f"rewards and dones must both have shape (n_steps, n_envs), got {rewards.shape} and {dones.shape}")
    n_steps, n_envs = rewards.shape
    returns = np.zeros((n_steps, n_envs), dtype=np.float64)
    complete = np.zeros((n_steps, n_envs), dtype=bool)
    if last_values is None:
        next_return = np.zeros(n_envs, dtype=np.float64)
        next_complete = np.zeros(n_envs, dtype=bool)
    else:
        next_return = np.asarray(last_values, dtype=np.float64).reshape(n_envs)
        next_complete = np.ones(n_envs, dtype=bool)
    for step in reversed(range(n_steps)):
        not_done = ~dones[step]
        next_return = rewards[step] + gamma * np.where(not_done, next_return, 0.0)
        next_complete = dones[step] | next_complete
        returns[step] = next_return
        complete[step] = next_complete
    return returns, complete


def baseline_advantages(returns: np.ndarray, complete: np.ndarray, values: np.ndarray, baseline: Optional[str]) -> np.ndarray:
    """
    ``A_t = G_t`` minus the baseline: the value ``V(s_t)`` (``"value"``), the mean of the complete
    returns of the batch (``"mean"``) or nothing (None).

    :param returns: Returns ``(n_steps, n_envs)``.
    :param complete: Whether each return is known (see :func:`discounted_returns`), same shape.
    :param values: Value estimates of the steps, same shape (used by ``"value"`` only).
    :param baseline: One of :data:`BASELINES`.
    :return: The advantages, same shape.
    """
    if baseline == "value":
        return returns - values
    if baseline == "mean":
        return returns - (returns[complete].mean() if complete.any() else 0.0)
    return returns


def rescale_advantages(advantages: np.ndarray) -> np.ndarray:
    """
    Advantages divided by their root mean square, ``A / (sqrt(mean(A^2)) + 1e-8)``: a positive factor,
    no shift, so the baseline alone centres them (``baseline=None`` stays plain REINFORCE).

    :param advantages: Advantages of the steps that enter the loss.
    :return: The rescaled advantages.
    """
    return advantages / (np.sqrt(np.mean(np.square(advantages))) + 1e-8)
