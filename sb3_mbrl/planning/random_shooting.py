"""Random shooting: the best of uniformly sampled sequences."""
from typing import Optional

import torch as th

from sb3_mbrl.planning.base import Objective, TrajectoryOptimizer, finite_or_worst, gather_candidates


class RandomShootingOptimizer(TrajectoryOptimizer):
    """
    Samples ``population_size`` sequences uniformly in the action box (per iteration) and keeps
    the best. The warm start is included as one candidate.
    """

    def optimize(self, objective: Objective, initial_mean: Optional[th.Tensor] = None, n_starts: int = 1) -> th.Tensor:
        mean = self._start(initial_mean, n_starts)  # (M, H, A)
        n_starts = mean.shape[0]
        best, best_value = mean, finite_or_worst(objective(mean[:, None]))[:, 0]
        for _ in range(self.iterations):
            uniform = th.rand(n_starts, self.population_size, self.horizon, self.action_dim, device=self.device)
            samples = self.low + uniform * (self.high - self.low)  # (M, P, H, A)
            values = finite_or_worst(objective(samples))
            top_value, top_idx = values.max(dim=1)
            improved = top_value > best_value
            best = th.where(improved[:, None, None], gather_candidates(samples, top_idx[:, None])[:, 0], best)
            best_value = th.where(improved, top_value, best_value)
        return best
