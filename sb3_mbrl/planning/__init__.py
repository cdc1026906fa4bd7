"""Trajectory optimisers for planning: pure torch, batched over start states and candidates."""
from typing import Any, Dict, Type, Union

import torch as th

from sb3_mbrl.planning.base import Objective, TrajectoryOptimizer, finite_or_worst, truncated_standard_normal
from sb3_mbrl.planning.categorical import (
    CategoricalCEMOptimizer,
    CategoricalRandomShootingOptimizer,
    DiscreteTrajectoryOptimizer,
    floor_probabilities,
)
from sb3_mbrl.planning.cem import CEMOptimizer
from sb3_mbrl.planning.icem import ICEMOptimizer, colored_noise
from sb3_mbrl.planning.mppi import MPPIOptimizer
from sb3_mbrl.planning.random_shooting import RandomShootingOptimizer

OPTIMIZERS: Dict[str, Type[TrajectoryOptimizer]] = {
    "cem": CEMOptimizer,
    "icem": ICEMOptimizer,
    "mppi": MPPIOptimizer,
    "random": RandomShootingOptimizer,
}


def make_optimizer(name: str, *args: Any, **kwargs: Any) -> TrajectoryOptimizer:
    """Build an optimiser by name (``cem``, ``icem``, ``mppi``, ``random``)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"Unknown optimizer {name!r}; choose one of {sorted(OPTIMIZERS)}")
    return OPTIMIZERS[name](*args, **kwargs)


# Planners for Discrete(n) action spaces: plans are per-step action probabilities (M, H, n),
# candidates are one-hot sequences (M, P, H, n).
DISCRETE_OPTIMIZERS: Dict[str, Type[DiscreteTrajectoryOptimizer]] = {
    "cem": CategoricalCEMOptimizer,
    "random": CategoricalRandomShootingOptimizer,
}


def make_discrete_optimizer(
    name: str, n_actions: int, horizon: int, device: Union[th.device, str] = "cpu", **kwargs: Any
) -> DiscreteTrajectoryOptimizer:
    """Build a planner for a ``Discrete(n_actions)`` action space by name (``cem``, ``random``)."""
    if name not in DISCRETE_OPTIMIZERS:
        discrete = " or ".join(repr(key) for key in DISCRETE_OPTIMIZERS)
        if name in OPTIMIZERS:
            continuous_only = "/".join(repr(key) for key in sorted(set(OPTIMIZERS) - set(DISCRETE_OPTIMIZERS)))
            raise ValueError(
                f"Planner {name!r} cannot plan discrete actions: {continuous_only} plan continuous actions only; "
                f"for Discrete action spaces use {discrete}"
            )
        raise ValueError(f"Unknown discrete optimizer {name!r}; for Discrete action spaces use {discrete}")
    return DISCRETE_OPTIMIZERS[name](n_actions, horizon, device=device, **kwargs)


__all__ = [
    "CEMOptimizer",
    "CategoricalCEMOptimizer",
    "CategoricalRandomShootingOptimizer",
    "DISCRETE_OPTIMIZERS",
    "DiscreteTrajectoryOptimizer",
    "ICEMOptimizer",
    "MPPIOptimizer",
    "OPTIMIZERS",
    "Objective",
    "RandomShootingOptimizer",
    "TrajectoryOptimizer",
    "colored_noise",
    "finite_or_worst",
    "floor_probabilities",
    "make_discrete_optimizer",
    "make_optimizer",
    "truncated_standard_normal",
]
