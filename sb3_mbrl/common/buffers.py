"""Real transitions out of an SB3 replay buffer, as the tensors the dynamics model takes."""
from typing import Optional, Tuple

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.policies import BasePolicy


def replay_buffer_transitions(
    buffer: ReplayBuffer,
    policy: BasePolicy,
    device: th.device,
    rows: Optional[np.ndarray] = None,
    by_env: bool = False,
) -> Tuple[th.Tensor, th.Tensor, th.Tensor, th.Tensor]:
    """
    Real transitions of an SB3 replay buffer as float32 tensors, actions in env units.

    :param buffer: The replay buffer: ``(buffer_size, n_envs, ...)`` arrays, one row per env step.
    :param policy: The policy that stored the actions: the buffer holds Box actions scaled to
        ``[-1, 1]`` (SB3's convention), its ``unscale_action`` maps them back to env units;
        ``Discrete(n)`` actions (stored as indices) come back one-hot, ``(N, n)``.
    :param device: Device of the tensors.
    :param rows: Buffer rows ``(T,)`` to read, in the order wanted; by default every stored row
        (in buffer order, which is time order until the buffer wraps around).
    :param by_env: Keep the rows x envs layout ``(T, n_envs, ...)`` instead of one row per
        transition ``(T * n_envs, ...)`` (row-major: the envs of a step are consecutive).
    :return: ``obs (N, obs_dim)``, ``actions (N, A)``, ``next_obs (N, obs_dim)``, ``rewards (N,)``
        with ``N = T * n_envs``, or with leading dims ``(T, n_envs)`` when ``by_env``.
    """
    if rows is None:
        n_rows = buffer.buffer_size if buffer.full else buffer.pos
        index = slice(0, n_rows)  # a view, not a copy of the whole buffer
        next_rows = np.arange(n_rows) + 1
    else:
        n_rows, index, next_rows = len(rows), rows, rows + 1
    obs = buffer.observations[index]  # (T, n_envs, *obs_shape)
    if buffer.optimize_memory_usage:
        # SB3 keeps one observation array: the next observation is in the next row.
        next_obs = buffer.observations[next_rows % buffer.buffer_size]
    else:
        next_obs = buffer.next_observations[index]
    lead = (n_rows, buffer.n_envs) if by_env else (n_rows * buffer.n_envs,)
    obs_dim = int(np.prod(buffer.obs_shape))
    stored = buffer.actions[index].reshape(-1, buffer.action_dim)  # (T * n_envs, action_dim)
    if isinstance(policy.action_space, spaces.Discrete):
        # Discrete actions enter the dynamics model one-hot: (T * n_envs, n)
        actions = np.eye(int(policy.action_space.n), dtype=np.float32)[stored[:, 0].astype(np.int64)]
    else:
        actions = policy.unscale_action(stored)  # (T * n_envs, A)
    action_dim = actions.shape[1]
    as_tensor = lambda x: th.as_tensor(np.asarray(x, dtype=np.float32), device=device)  # noqa: E731
    return (
        as_tensor(obs.reshape(*lead, obs_dim)),
        as_tensor(actions.reshape(*lead, action_dim)),
        as_tensor(next_obs.reshape(*lead, obs_dim)),
        as_tensor(buffer.rewards[index].reshape(lead)),
    )
