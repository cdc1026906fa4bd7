"""
Planning over discrete actions (``Discrete(n)`` action spaces).

The interface matches the continuous optimisers so the MPC policy's warm-start code (shift the
plan by one step, append ``initial_mean(M)[:, :1]``) works unchanged:

- a *plan* is a float tensor ``(M, H, n)`` holding per-step action **probabilities** (every row
  sums to 1); ``initial_mean(M)`` is the uniform plan;
- the *candidates* passed to the objective are **one-hot** float sequences ``(M, P, H, n)``, so
  the dynamics model takes one-hot actions;
- the action to take is the most likely first action of the returned plan,
  :meth:`DiscreteTrajectoryOptimizer.first_actions` (``plan[:, 0].argmax(-1)``).
"""
from abc import ABC, abstractmethod
from typing import Optional, Union

import torch as th
import torch.nn.functional as F

from sb3_mbrl.planning.base import Objective, check_search_sizes, finite_or_worst


def floor_probabilities(probs: th.Tensor, min_prob: float) -> th.Tensor:
    """
    Give every action at least ``min_prob`` (along the last axis) and keep rows summing to 1.

    Entries below the floor are raised to it and the mass above the floor is scaled down to pay
    for it, so a row that already satisfies the floor is left unchanged. Needs rows that sum to 1
    and ``0 <= min_prob < 1 / n``.
    """
    if min_prob <= 0:
        return probs
    n_actions = probs.shape[-1]
    above = (probs - min_prob).clamp_min(0.0)
    # Some entry of a normalised row is >= 1/n > min_prob, so the sum is positive.
    return min_prob + above * ((1.0 - n_actions * min_prob) / above.sum(dim=-1, keepdim=True))


def sample_indices(probs: th.Tensor, n_samples: int) -> th.Tensor:
    """``probs (M, H, n)`` -> ``n_samples`` index sequences per start ``(M, P, H)``, one categorical draw per step."""
    n_starts, horizon, n_actions = probs.shape
    flat = th.multinomial(probs.reshape(-1, n_actions), n_samples, replacement=True)  # (M * H, P)
    return flat.reshape(n_starts, horizon, n_samples).transpose(1, 2)


class DiscreteTrajectoryOptimizer(ABC):
    """
    Finds the sequence of ``horizon`` discrete actions that maximises an objective, for ``M``
    start states at once. Pure torch, batched; independent of any model.

    :param n_actions: Number of actions ``n`` of the ``Discrete(n)`` space (at least 2).
    :param horizon: Planning horizon ``H``.
    :param population_size: Candidate sequences per iteration ``P``.
    :param iterations: Optimisation iterations per call.
    :param device: Torch device of the samples.
    """

    def __init__(
        self,
        n_actions: int,
        horizon: int,
        population_size: int = 100,
        iterations: int = 5,
        device: Union[th.device, str] = "cpu",
    ) -> None:
        if isinstance(n_actions, bool) or int(n_actions) != n_actions or n_actions < 2:
            raise ValueError(f"n_actions must be an integer >= 2, got {n_actions}")
        check_search_sizes(horizon, population_size, iterations)
        self.device = th.device(device)
        self.n_actions = int(n_actions)
        self.action_dim = self.n_actions  # the last axis of plans and candidates
        self.horizon = horizon
        self.population_size = population_size
        self.iterations = iterations
        self._best_sequences: Optional[th.Tensor] = None
        self._best_values: Optional[th.Tensor] = None

    def initial_mean(self, n_starts: int) -> th.Tensor:
        """The uniform plan: probability ``1 / n`` for every action at every step, ``(M, H, n)``."""
        return th.full((n_starts, self.horizon, self.n_actions), 1.0 / self.n_actions, device=self.device)

    @staticmethod
    def first_actions(plan: th.Tensor) -> th.Tensor:
        """The actions to take now: the most likely first action of each plan, ``(M, H, n)`` -> ``(M,)`` indices."""
        return plan[:, 0].argmax(dim=-1)

    def one_hot(self, indices: th.Tensor) -> th.Tensor:
        """Index sequences ``(..., H)`` -> one-hot float sequences ``(..., H, n)``."""
        return F.one_hot(indices, self.n_actions).to(th.float32)

    def best_sequences(self) -> th.Tensor:
        """The best index sequences ``(M, H)`` sampled during the last :meth:`optimize` call."""
        if self._best_sequences is None:
            raise RuntimeError("best_sequences() is only available after optimize()")
        return self._best_sequences

    def best_values(self) -> th.Tensor:
        """Their objective values ``(M,)`` (``-inf`` where every candidate was NaN/inf)."""
        if self._best_values is None:
            raise RuntimeError("best_values() is only available after optimize()")
        return self._best_values

    @abstractmethod
    def optimize(self, objective: Objective, initial_mean: Optional[th.Tensor] = None, n_starts: int = 1) -> th.Tensor:
        """
        :param objective: Maps one-hot candidates ``(M, P, H, n)`` to values ``(M, P)``.
        :param initial_mean: Warm-start probabilities ``(M, H, n)`` (rows are renormalised);
            uniform when ``None``.
        :param n_starts: ``M`` when ``initial_mean`` is ``None``.
        :return: The plan: per-step action probabilities ``(M, H, n)``.
        """

    def _start(self, initial_mean: Optional[th.Tensor], n_starts: int) -> th.Tensor:
        if initial_mean is None:
            if n_starts < 1:
                raise ValueError(f"n_starts must be positive, got {n_starts}")
            return self.initial_mean(n_starts)
        if initial_mean.dim() != 3 or initial_mean.shape[1:] != (self.horizon, self.n_actions):
            raise ValueError(
                f"initial_mean must have shape (M, {self.horizon}, {self.n_actions}) (per-step action probabilities), "
                f"got {tuple(initial_mean.shape)}"
            )
        probs = initial_mean.to(self.device, th.float32)
        total = probs.sum(dim=-1, keepdim=True)
        if not bool(th.isfinite(probs).all()) or bool((probs < 0).any()) or bool((total <= 0).any()):
            raise ValueError("initial_mean must hold finite, non-negative probabilities with a positive sum per step")
        return probs / total

    def _score(self, objective: Objective, indices: th.Tensor) -> th.Tensor:
        """Values ``(M, P)`` of index sequences ``(M, P, H)``; NaN/inf become ``-inf``."""
        values = objective(self.one_hot(indices))
        if values.shape != indices.shape[:2]:
            raise ValueError(
                f"The objective must return values of shape {tuple(indices.shape[:2])}, got {tuple(values.shape)}"
            )
        return finite_or_worst(values.to(th.float32))

    def _keep_best(self, indices: th.Tensor, values: th.Tensor) -> None:
        """Update the best sequence seen in this call with candidates ``(M, P, H)`` and values ``(M, P)``."""
        top_value, top_idx = values.max(dim=1)
        top = th.gather(indices, 1, top_idx[:, None, None].expand(-1, 1, self.horizon))[:, 0]  # (M, H)
        if self._best_sequences is None or self._best_values is None:
            self._best_sequences, self._best_values = top, top_value
            return
        improved = top_value > self._best_values
        self._best_sequences = th.where(improved[:, None], top, self._best_sequences)
        self._best_values = th.where(improved, top_value, self._best_values)


class CategoricalCEMOptimizer(DiscreteTrajectoryOptimizer):
    """
    Cross-entropy method over independent per-step categorical distributions.

    Each iteration draws ``P`` index sequences from the per-step categoricals (one batched
    ``torch.multinomial``), scores their one-hot encodings, and refits every step's probabilities
    to the elites' action frequencies: ``new = alpha * old + (1 - alpha) * freq``. After every
    refit (and on the warm start) each action keeps at least ``min_prob``, so no action dies out
    and the shifted plan still explores at the next step.

    **What the plan is.** By default the final refitted probabilities (the analogue of CEM's
    elite mean, which is what warm-starts the next step); acting with their argmax
    (:meth:`first_actions`) picks, at each step, the action most elites agreed on. With
    ``return_mean_elites=False`` the plan is instead the one-hot of the best sequence sampled
    over all iterations (as CEM's option). Either way :meth:`best_sequences` gives that best
    sequence ``(M, H)`` of the last call.

    :param n_actions: Number of actions ``n``.
    :param horizon: Planning horizon ``H``.
    :param population_size: Candidate sequences per iteration ``P``.
    :param num_elites: Elites per iteration ``K`` (default: 10% of the population, at least 1).
    :param iterations: Refits per call.
    :param alpha: Weight of the previous probabilities in each refit, in ``[0, 1)``.
    :param min_prob: Floor of every action's probability, in ``[0, 1 / n)``.
    :param return_mean_elites: Return the probabilities (default) instead of the best sequence seen.
    :param device: Torch device.
    """

    def __init__(
        self,
        n_actions: int,
        horizon: int,
        population_size: int = 100,
        num_elites: Optional[int] = None,
        iterations: int = 5,
        alpha: float = 0.1,
        min_prob: float = 0.01,
        return_mean_elites: bool = True,
        device: Union[th.device, str] = "cpu",
    ) -> None:
        super().__init__(n_actions, horizon, population_size=population_size, iterations=iterations, device=device)
        num_elites = max(1, self.population_size // 10) if num_elites is None else num_elites
        if not 1 <= num_elites <= self.population_size:
            raise ValueError(f"num_elites must be in [1, population_size={self.population_size}], got {num_elites}")
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"alpha must be in [0, 1), got {alpha}")
        if not 0.0 <= min_prob < 1.0 / self.n_actions:
            raise ValueError(f"min_prob must be in [0, 1/n_actions = {1.0 / self.n_actions:.4g}), got {min_prob}")
        self.num_elites = num_elites
        self.alpha = alpha
        self.min_prob = min_prob
        self.return_mean_elites = return_mean_elites

    def optimize(self, objective: Objective, initial_mean: Optional[th.Tensor] = None, n_starts: int = 1) -> th.Tensor:
        probs = floor_probabilities(self._start(initial_mean, n_starts), self.min_prob)  # (M, H, n)
        self._best_sequences, self._best_values = None, None
        for _ in range(self.iterations):
            indices = sample_indices(probs, self.population_size)  # (M, P, H)
            values = self._score(objective, indices)  # (M, P)
            self._keep_best(indices, values)
            top_idx = values.topk(self.num_elites, dim=1).indices  # (M, K)
            elites = th.gather(indices, 1, top_idx[:, :, None].expand(-1, -1, self.horizon))  # (M, K, H)
            freq = self.one_hot(elites).mean(dim=1)  # (M, H, n)
            probs = floor_probabilities(self.alpha * probs + (1 - self.alpha) * freq, self.min_prob)
        if self.return_mean_elites:
            return probs
        return self.one_hot(self.best_sequences())


class CategoricalRandomShootingOptimizer(DiscreteTrajectoryOptimizer):
    """
    Random shooting over discrete actions: samples ``population_size`` uniform index sequences
    per iteration and returns the best one seen as a one-hot plan ``(M, H, n)``. The most likely
    sequence of the warm start (its per-step argmax) is scored too, as continuous random shooting
    scores the warm-start mean.

    :param n_actions: Number of actions ``n``.
    :param horizon: Planning horizon ``H``.
    :param population_size: Candidate sequences per iteration ``P``.
    :param iterations: Rounds of sampling per call (one by default).
    :param device: Torch device.
    """

    def __init__(
        self,
        n_actions: int,
        horizon: int,
        population_size: int = 1000,
        iterations: int = 1,
        device: Union[th.device, str] = "cpu",
    ) -> None:
        super().__init__(n_actions, horizon, population_size=population_size, iterations=iterations, device=device)

    def optimize(self, objective: Objective, initial_mean: Optional[th.Tensor] = None, n_starts: int = 1) -> th.Tensor:
        probs = self._start(initial_mean, n_starts)  # (M, H, n)
        n_starts = probs.shape[0]
        self._best_sequences, self._best_values = None, None
        warm = probs.argmax(dim=-1)[:, None]  # (M, 1, H)
        self._keep_best(warm, self._score(objective, warm))
        for _ in range(self.iterations):
            indices = th.randint(self.n_actions, (n_starts, self.population_size, self.horizon), device=self.device)
            self._keep_best(indices, self._score(objective, indices))
        return self.one_hot(self.best_sequences())
