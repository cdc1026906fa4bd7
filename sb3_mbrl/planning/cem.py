"""Cross-entropy method (PETS)."""
from typing import Optional

import torch as th

from sb3_mbrl.planning.base import (
    Objective,
    TrajectoryOptimizer,
    finite_or_worst,
    gather_candidates,
    truncated_standard_normal,
)


class CEMOptimizer(TrajectoryOptimizer):
    """
    CEM as in PETS: samples from a normal truncated at 2 sigma whose variance is capped by the
    distance to the action bounds (so samples stay inside the box), refits mean and variance to
    the elites with smoothing ``alpha``, and returns the elite mean (returning the single best
    sample overfits the model's errors).

    :param num_elites: Elites per iteration ``K`` (default: 10% of the population).
    :param alpha: Weight of the previous mean/variance in each update.
    :param return_mean_elites: Return the final mean (default) instead of the best sample seen.
    :param kwargs: See :class:`TrajectoryOptimizer`.
    """

    def __init__(
        self, *args, num_elites: Optional[int] = None, alpha: float = 0.1, return_mean_elites: bool = True, **kwargs
    ) -> None:
        super().__init__(*args, **kwargs)
        num_elites = max(1, self.population_size // 10) if num_elites is None else num_elites
        if not 1 <= num_elites <= self.population_size:
            raise ValueError(f"num_elites must be in [1, population_size={self.population_size}], got {num_elites}")
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"alpha must be in [0, 1), got {alpha}")
        self.num_elites = num_elites
        self.alpha = alpha
        self.return_mean_elites = return_mean_elites

    def optimize(self, objective: Objective, initial_mean: Optional[th.Tensor] = None, n_starts: int = 1) -> th.Tensor:
        mean = self._start(initial_mean, n_starts)  # (M, H, A)
        n_starts = mean.shape[0]
        var = self.initial_var(n_starts)
        best_value = th.full((n_starts,), -float("inf"), device=self.device)
        best = mean.clone()
        for _ in range(self.iterations):
            to_bound = th.minimum(mean - self.low, self.high - mean).clamp_min(0.0)
            std = th.minimum((to_bound / 2) ** 2, var).sqrt()
            noise = truncated_standard_normal((n_starts, self.population_size, self.horizon, self.action_dim), self.device)
            samples = self.clip(mean[:, None] + std[:, None] * noise)  # (M, P, H, A)
            values = finite_or_worst(objective(samples))  # (M, P)
            top_values, top_idx = values.topk(self.num_elites, dim=1)
            elites = gather_candidates(samples, top_idx)  # (M, K, H, A)
            mean = self.alpha * mean + (1 - self.alpha) * elites.mean(dim=1)
            var = self.alpha * var + (1 - self.alpha) * elites.var(dim=1, unbiased=False)
            improved = top_values[:, 0] > best_value
            best = th.where(improved[:, None, None], elites[:, 0], best)
            best_value = th.where(improved, top_values[:, 0], best_value)
        return mean if self.return_mean_elites else best
