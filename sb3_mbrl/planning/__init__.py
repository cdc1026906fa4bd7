"""Trajectory optimisers for planning: pure torch, batched over start states and candidates."""
from typing import Any, Dict, Type

from sb3_mbrl.planning.base import Objective, TrajectoryOptimizer, finite_or_worst, truncated_standard_normal
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


__all__ = [
    "CEMOptimizer",
    "ICEMOptimizer",
    "MPPIOptimizer",
    "OPTIMIZERS",
    "Objective",
    "RandomShootingOptimizer",
    "TrajectoryOptimizer",
    "colored_noise",
    "finite_or_worst",
    "make_optimizer",
    "truncated_standard_normal",
]
