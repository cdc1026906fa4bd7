"""Model predictive path integral control (as in PDDM, Nagabandi et al., 2019)."""
from typing import Optional

import torch as th

from sb3_mbrl.planning.base import Objective, TrajectoryOptimizer, finite_or_worst


class MPPIOptimizer(TrajectoryOptimizer):
    """
    MPPI: perturbs the mean with time-correlated Gaussian noise and moves it to the
    reward-weighted average of the samples, weights ``softmax(value / temperature)``.

    :param temperature: Softmax temperature, in units of return (lower is greedier).
    :param noise_std: Noise standard deviation as a share of the half-range of each action.
    :param noise_beta: Correlation filter: ``u_t = beta * eps_t + (1 - beta) * u_{t-1}`` (1 is white).
    :param kwargs: See :class:`TrajectoryOptimizer`.
    """

    def __init__(self, *args, temperature: float = 1.0, noise_std: float = 0.5, noise_beta: float = 0.7, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if temperature <= 0 or noise_std <= 0 or not 0 < noise_beta <= 1:
            raise ValueError("temperature and noise_std must be positive and noise_beta in (0, 1]")
        self.temperature = temperature
        self.noise_std = noise_std
        self.noise_beta = noise_beta

    def optimize(self, objective: Objective, initial_mean: Optional[th.Tensor] = None, n_starts: int = 1) -> th.Tensor:
        mean = self._start(initial_mean, n_starts)  # (M, H, A)
        n_starts = mean.shape[0]
        scale = self.noise_std * (self.high - self.low) / 2  # (A,)
        for _ in range(self.iterations):
            eps = th.randn(n_starts, self.population_size, self.horizon, self.action_dim, device=self.device) * scale
            noise = th.empty_like(eps)
            noise[:, :, 0] = self.noise_beta * eps[:, :, 0]
            for t in range(1, self.horizon):  # H small steps: a scan over time, batched over everything else
                noise[:, :, t] = self.noise_beta * eps[:, :, t] + (1 - self.noise_beta) * noise[:, :, t - 1]
            samples = self.clip(mean[:, None] + noise)  # (M, P, H, A)
            values = finite_or_worst(objective(samples))  # (M, P)
            logits = (values - values.max(dim=1, keepdim=True).values) / self.temperature
            # A start state whose candidates are all -inf falls back to uniform weights.
            logits = th.where(th.isfinite(logits), logits, th.full_like(logits, -1e9))
            weights = th.softmax(logits, dim=1)  # (M, P)
            mean = (weights[:, :, None, None] * samples).sum(dim=1)
        return mean
