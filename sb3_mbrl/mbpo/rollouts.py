"""MBPO's model data: short rollouts of the current policy over the model, branched from real states."""
from typing import Callable

import numpy as np
import torch as th

from sb3_mbrl.dynamics import ModelEnv
from sb3_mbrl.mbpo.buffers import ModelTransitionBuffer, unscale_actions


@th.no_grad()
def branched_rollouts(
    actor: Callable[..., th.Tensor],
    model_env: ModelEnv,
    model_buffer: ModelTransitionBuffer,
    real_obs: th.Tensor,
    n_rollouts: int,
    length: int,
    low: np.ndarray,
    high: np.ndarray,
    env_step: int = 0,
) -> int:
    """
    Branch ``n_rollouts`` rollouts of ``length`` steps from random real states with the policy;
    all rows step together, terminated rows leave the batch. Actions are stored scaled to [-1, 1],
    as SAC stores its real actions.

    :param actor: SAC's actor: ``actor(obs, deterministic=False)`` gives actions in [-1, 1].
    :param model_env: The model to step.
    :param model_buffer: Where the model transitions go.
    :param real_obs: Real observations to start from ``(N, obs_dim)``.
    :param n_rollouts: Rollouts to branch (start states drawn with replacement).
    :param length: Steps per rollout.
    :param low: Lower bound of the action space (env units).
    :param high: Upper bound of the action space.
    :param env_step: Env step named in the error message.
    :return: Number of model transitions added.
    """
    starts = th.randint(0, real_obs.shape[0], (n_rollouts,), device=real_obs.device)
    obs = real_obs[starts]  # (B, obs_dim)
    added = 0
    for _ in range(length):
        scaled = actor(obs, deterministic=False)  # (B, A) in [-1, 1], like SAC's real actions
        next_obs, reward, terminated = model_env.step(obs, unscale_actions(scaled, low, high))
        finite = th.isfinite(next_obs).all(dim=1) & th.isfinite(reward)
        if not bool(finite.all()):
            raise RuntimeError(
                f"MBPO: the dynamics model predicted NaN or inf for {int((~finite).sum())} of {obs.shape[0]} rollout "
                f"rows at env step {env_step}. The real data is kept in the replay buffer "
                "(save_replay_buffer); try a smaller learning rate or model, or more weight decay."
            )
        model_buffer.add(obs, scaled, next_obs, reward, terminated)
        added += obs.shape[0]
        alive = ~terminated
        if not bool(alive.any()):
            break
        obs = next_obs[alive]
    return added
