"""Common pieces of the trajectory optimisers."""
import math
from abc import ABC, abstractmethod
from typing import Callable, Optional, Union

import numpy as np
import torch as th

# objective(action_sequences (M, P, H, A)) -> value (M, P); higher is better.
Objective = Callable[[th.Tensor], th.Tensor]


def finite_or_worst(values: th.Tensor) -> th.Tensor:
    """NaN and +-inf values become -inf, so such candidates always rank last."""
    return th.where(th.isfinite(values), values, th.full_like(values, -float("inf")))


def truncated_standard_normal(shape, device: th.device, limit: float = 2.0, generator: Optional[th.Generator] = None) -> th.Tensor:
    """Standard normal samples truncated to ``[-limit, limit]`` by inverse-CDF sampling (no rejection loop)."""
    cdf_low = 0.5 * (1 + math.erf(-limit / math.sqrt(2)))
    uniform = th.rand(shape, device=device, generator=generator) * (1 - 2 * cdf_low) + cdf_low
    return (math.sqrt(2) * th.erfinv(2 * uniform - 1)).clamp_(-limit, limit)


def check_search_sizes(horizon: int, population_size: int, iterations: int) -> None:
    """The sizes every trajectory optimiser (continuous or discrete) needs positive."""
    if horizon < 1 or population_size < 1 or iterations < 1:
        raise ValueError(
            f"horizon, population_size and iterations must be positive, got {horizon}, {population_size}, {iterations}"
        )


class TrajectoryOptimizer(ABC):
    """
    Finds the action sequence of length ``horizon`` that maximises an objective, for ``M``
    start states at once. Pure torch, batched; independent of any model.

    :param action_low: Lower action bounds ``(A,)``.
    :param action_high: Upper action bounds ``(A,)``.
    :param horizon: Planning horizon ``H``.
    :param population_size: Candidate sequences per iteration ``P``.
    :param iterations: Optimisation iterations per call.
    :param device: Torch device of the samples.
    """

    def __init__(
        self,
        action_low: Union[np.ndarray, th.Tensor],
        action_high: Union[np.ndarray, th.Tensor],
        horizon: int,
        population_size: int = 100,
        iterations: int = 5,
        device: Union[th.device, str] = "cpu",
    ) -> None:
        check_search_sizes(horizon, population_size, iterations)
        self.device = th.device(device)
        self.low = th.as_tensor(action_low, dtype=th.float32, device=self.device).flatten()  # (A,)
        self.high = th.as_tensor(action_high, dtype=th.float32, device=self.device).flatten()  # (A,)
        if not (th.isfinite(self.low).all() and th.isfinite(self.high).all()) or (self.low >= self.high).any():
            raise ValueError("Planning needs finite action bounds with low < high")
        self.horizon = horizon
        self.population_size = population_size
        self.iterations = iterations
        self.action_dim = self.low.shape[0]

    def initial_mean(self, n_starts: int) -> th.Tensor:
        """The middle of the action box for every step: ``(M, H, A)``."""
        return ((self.low + self.high) / 2).expand(n_starts, self.horizon, self.action_dim).clone()

    def initial_var(self, n_starts: int) -> th.Tensor:
        """``(high - low)^2 / 16`` per action dimension: ``(M, H, A)``."""
        return ((self.high - self.low) ** 2 / 16).expand(n_starts, self.horizon, self.action_dim).clone()

    def clip(self, actions: th.Tensor) -> th.Tensor:
        return th.maximum(th.minimum(actions, self.high), self.low)

    @abstractmethod
    def optimize(self, objective: Objective, initial_mean: Optional[th.Tensor] = None, n_starts: int = 1) -> th.Tensor:
        """
        :param objective: Maps ``(M, P, H, A)`` candidates to values ``(M, P)``.
        :param initial_mean: Warm start ``(M, H, A)``; the middle of the box when ``None``.
        :param n_starts: ``M`` when ``initial_mean`` is ``None``.
        :return: The plan ``(M, H, A)``.
        """

    def _start(self, initial_mean: Optional[th.Tensor], n_starts: int) -> th.Tensor:
        if initial_mean is None:
            return self.initial_mean(n_starts)
        if initial_mean.dim() != 3 or initial_mean.shape[1:] != (self.horizon, self.action_dim):
            raise ValueError(
                f"initial_mean must have shape (M, {self.horizon}, {self.action_dim}), got {tuple(initial_mean.shape)}"
            )
        return initial_mean.to(self.device, th.float32).clone()


def gather_candidates(samples: th.Tensor, indices: th.Tensor) -> th.Tensor:
    """``samples (M, P, H, A)``, ``indices (M, K)`` -> ``(M, K, H, A)``."""
    _, _, horizon, action_dim = samples.shape
    index = indices[:, :, None, None].expand(-1, -1, horizon, action_dim)
    return th.gather(samples, 1, index)
