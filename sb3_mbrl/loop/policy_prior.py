"""LOOP's policy prior: the actor's own action sequences over the model, as candidates for the planner."""
import numpy as np
import torch as th
from stable_baselines3.sac.policies import Actor

from sb3_mbrl.dynamics import ModelEnv
from sb3_mbrl.mbpo.buffers import unscale_actions


@th.no_grad()
def actor_rollouts(
    actor: Actor, model_env: ModelEnv, obs: th.Tensor, n_samples: int, horizon: int, low: np.ndarray, high: np.ndarray
) -> th.Tensor:
    """
    ``n_samples`` action sequences per start state, made by rolling SAC's actor out over the model
    for ``horizon`` steps: the first with its mean (deterministic) actions, the others sampled.
    All rows step together; the model steps as ``model_env`` propagates (it is reset here).

    :param actor: SAC's actor (actions in [-1, 1]).
    :param model_env: The model to step.
    :param obs: Start states ``(M, obs_dim)``.
    :param n_samples: Sequences per start state ``K`` (at least 1).
    :param horizon: Steps per sequence ``H``.
    :param low: Lower action bound (env units).
    :param high: Upper action bound (env units).
    :return: ``(M, K, H, A)`` in env units.
    """
    n_starts = obs.shape[0]
    state = obs.repeat_interleave(n_samples, dim=0)  # (M*K, obs_dim), the K samples of a start adjacent
    use_mean = (th.arange(state.shape[0], device=obs.device) % n_samples == 0)[:, None]  # (M*K, 1)
    model_env.reset(state.shape[0])
    low_t, high_t = (th.as_tensor(bound, dtype=obs.dtype, device=obs.device) for bound in (low, high))  # once, not per step
    steps = []
    for _ in range(horizon):
        # One actor forward for both: the distribution's sample, and its mode (the mean action).
        mean_actions, log_std, kwargs = actor.get_action_dist_params(state)
        sampled = actor.action_dist.actions_from_params(mean_actions, log_std, deterministic=False, **kwargs)
        scaled = th.where(use_mean, actor.action_dist.mode(), sampled)  # (M*K, A) in [-1, 1]
        actions = unscale_actions(scaled, low_t, high_t)
        steps.append(actions)
        state, _, _ = model_env.step(state, actions)
    return th.stack(steps, dim=1).view(n_starts, n_samples, horizon, -1)
