"""Known reward functions: ``(obs, action, next_obs) -> (B,)``."""
import math

import torch as th

from sb3_mbrl.envs.terminations import acrobot_termination


def _angle_normalize(x: th.Tensor) -> th.Tensor:
    return ((x + math.pi) % (2 * math.pi)) - math.pi


def pendulum_reward(obs: th.Tensor, action: th.Tensor, next_obs: th.Tensor) -> th.Tensor:
    """Pendulum-v1: ``-(theta^2 + 0.1 thetadot^2 + 0.001 u^2)`` on the state *before* the step."""
    theta = th.atan2(obs[:, 1], obs[:, 0])
    torque = action[:, 0].clamp(-2.0, 2.0)
    return -(_angle_normalize(theta).pow(2) + 0.1 * obs[:, 2].pow(2) + 0.001 * torque.pow(2))


def reacher_reward(obs: th.Tensor, action: th.Tensor, next_obs: th.Tensor) -> th.Tensor:
    """
    Reacher-v4: ``-|fingertip - target| - |a|^2``. The env measures the distance before it steps,
    and the observation's last three entries are that vector, so it is read from ``obs``.
    """
    return -(obs[:, 8:11].norm(dim=1) + action.pow(2).sum(dim=1))


def alive_bonus_reward(obs: th.Tensor, action: th.Tensor, next_obs: th.Tensor) -> th.Tensor:
    """InvertedPendulum-v4 and CartPole-v1: 1 for every step, including the terminal one."""
    return th.ones(obs.shape[0], device=obs.device, dtype=obs.dtype)


def constant_minus_one_reward(obs: th.Tensor, action: th.Tensor, next_obs: th.Tensor) -> th.Tensor:
    """MountainCar-v0: -1 for every step, including the one that reaches the flag."""
    return -th.ones(obs.shape[0], device=obs.device, dtype=obs.dtype)


def acrobot_reward(obs: th.Tensor, action: th.Tensor, next_obs: th.Tensor) -> th.Tensor:
    """Acrobot-v1: -1 for a step that does not reach the goal height, 0 for the one that does."""
    terminated = acrobot_termination(obs, action, next_obs)
    return terminated.to(next_obs.dtype) - 1.0
