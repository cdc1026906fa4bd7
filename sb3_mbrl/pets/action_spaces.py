"""What PETS does differently for Box and Discrete action spaces: planner, random actions, the action taken.

A ``Discrete(n)`` action enters the dynamics model as a one-hot vector of ``n`` floats; its plans
are per-step action probabilities ``(M, H, n)`` (categorical CEM) and the action taken is the most
likely first one. A ``Box`` action enters as itself; its plans are action sequences ``(M, H, A)``.
"""
from typing import Any, Dict

import numpy as np
import torch as th
from gymnasium import spaces

from sb3_mbrl.planning import TrajectoryOptimizer, make_discrete_optimizer, make_optimizer


def check_action_space(space: spaces.Space) -> None:
    """PETS plans over ``Box`` (finite bounds) or ``Discrete`` actions; anything else is refused."""
    if isinstance(space, spaces.Discrete):
        if space.start != 0:
            raise ValueError(f"PETS needs Discrete actions starting at 0; got {space}")
        return
    if not isinstance(space, spaces.Box):
        raise ValueError(f"PETS plans over Box or Discrete actions; got {space}")


def model_action_dim(space: spaces.Space) -> int:
    """Width of the action input of the dynamics model: ``n`` (one-hot) or the Box's size."""
    if isinstance(space, spaces.Discrete):
        return int(space.n)
    return int(np.prod(space.shape))  # type: ignore[arg-type]


def make_planner(
    name: str, space: spaces.Space, horizon: int, device: th.device, planner_kwargs: Dict[str, Any]
) -> TrajectoryOptimizer:
    """The trajectory optimiser ``name`` for this action space (categorical for ``Discrete``)."""
    if isinstance(space, spaces.Discrete):
        return make_discrete_optimizer(name, int(space.n), horizon, device=device, **planner_kwargs)
    return make_optimizer(name, space.low, space.high, horizon, device=device, **planner_kwargs)  # type: ignore[attr-defined]


def random_actions(space: spaces.Space, n_starts: int, device: th.device) -> th.Tensor:
    """Uniform random actions before the first fit: indices ``(M,)`` or Box actions ``(M, A)``."""
    if isinstance(space, spaces.Discrete):
        return th.randint(int(space.n), (n_starts,), device=device)
    low = th.as_tensor(space.low, dtype=th.float32, device=device).flatten()  # type: ignore[attr-defined]
    high = th.as_tensor(space.high, dtype=th.float32, device=device).flatten()  # type: ignore[attr-defined]
    return low + (high - low) * th.rand(n_starts, low.numel(), device=device)


def first_actions(plan: th.Tensor, space: spaces.Space) -> th.Tensor:
    """The action taken from a plan ``(M, H, A)``: the most likely first action ``(M,)`` or the first step ``(M, A)``."""
    if isinstance(space, spaces.Discrete):
        return plan[:, 0].argmax(dim=-1)
    return plan[:, 0]
