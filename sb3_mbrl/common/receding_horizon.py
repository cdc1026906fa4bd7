"""Receding-horizon planning: warm starts per env and per caller, shared by PETS's MPC policy and LOOP."""
import contextlib
from typing import Callable, Dict, Iterator, Optional, Tuple, Union

import numpy as np
import torch as th

from sb3_mbrl.planning import DiscreteTrajectoryOptimizer, ICEMOptimizer, Objective, TrajectoryOptimizer

Planner = Union[TrajectoryOptimizer, DiscreteTrajectoryOptimizer]


@contextlib.contextmanager
def seeded_draws(seed: int, device: th.device) -> Iterator[None]:
    """
    torch's global random draws seeded with ``seed`` inside the block; the global random state
    (and a CUDA device's) is left as it was.
    """
    devices = [device] if device.type == "cuda" else []
    with th.random.fork_rng(devices=devices):
        th.manual_seed(seed)
        yield


class RecedingHorizon:
    """
    Plans ``(M, H, A)`` action sequences for ``M`` envs with a trajectory optimiser and keeps each
    plan, shifted by one step (the box's middle appended), as the next call's warm start; iCEM
    also carries its kept elites, shifted. Plans reset at episode starts, per env.

    Warm starts are kept per *slot*: an algorithm's own data collection plans in ``"collect"``,
    everything else (``evaluate_policy``, an ``EvalCallback`` in the middle of a training episode)
    in ``"predict"``, so one caller never warm-starts from another's plan.

    :param make_planner: Builds the optimiser on a device; called once at construction (on the
        CPU, so bad planner settings fail there) and again whenever the observations move device.
    """

    def __init__(self, make_planner: Callable[[th.device], Planner]) -> None:
        self._make_planner = make_planner
        self.planner = make_planner(th.device("cpu"))
        self.plan: Optional[th.Tensor] = None  # (M, H, A): warm start of the next call
        self.elites: Optional[th.Tensor] = None  # iCEM's kept elites, shifted: (M, k, H, A)
        self._saved: Dict[str, Tuple[Optional[th.Tensor], Optional[th.Tensor]]] = {}
        self.active_slot = "predict"

    @contextlib.contextmanager
    def plan_slot(self, name: str) -> Iterator[None]:
        """Plan in the warm-start slot ``name`` inside the block, back in ``"predict"`` after it."""
        self.use_plan_slot(name)
        try:
            yield
        finally:
            self.use_plan_slot("predict")

    def use_plan_slot(self, name: str) -> None:
        """Switch the warm-start state to the one kept under ``name``."""
        if name == self.active_slot:
            return
        self._saved[self.active_slot] = (self.plan, self.elites)
        self.plan, self.elites = self._saved.pop(name, (None, None))
        self.active_slot = name

    def reset(self, episode_start: Optional[np.ndarray] = None) -> None:
        """Forget the warm start of the envs whose episode starts (all envs when ``None``)."""
        if episode_start is None or self.plan is None or len(episode_start) != self.plan.shape[0]:
            self.plan, self.elites = None, None
            return
        mask = th.as_tensor(np.asarray(episode_start, dtype=bool), device=self.plan.device)
        if bool(mask.any()):
            fresh = self.planner.initial_mean(self.plan.shape[0])
            self.plan = th.where(mask[:, None, None], fresh, self.plan)
            self.elites = None

    def step(
        self,
        n_starts: int,
        device: th.device,
        objective: Objective,
        prior: Optional[th.Tensor] = None,
        initial_mean: Optional[th.Tensor] = None,
    ) -> th.Tensor:
        """
        Optimise the plans of ``n_starts`` envs from their warm starts, keep them shifted for the
        next call, and return them.

        :param n_starts: ``M``, the envs planned for.
        :param device: Device of the plans (the observations').
        :param objective: Maps candidates ``(M, P, H, A)`` to values ``(M, P)`` (one-hot ``A = n`` for a
            discrete planner, whose plans are per-step action probabilities).
        :param prior: Extra candidates ``(M, K, H, A)`` put into the first iteration's population
            (iCEM only: its kept-elites entry), e.g. a policy's own rollouts.
        :param initial_mean: The search's mean ``(M, H, A)`` for this call instead of the warm start.
        :return: The plans ``(M, H, A)``.
        """
        if self.planner.device != device:
            self.planner = self._make_planner(device)
            self.plan, self.elites = None, None
        if self.plan is None or self.plan.shape[0] != n_starts or self.plan.device != device:
            self.plan, self.elites = self.planner.initial_mean(n_starts), None
        if initial_mean is not None:
            self.plan = initial_mean
        if isinstance(self.planner, ICEMOptimizer):
            seeds = [extra for extra in (self.elites, prior) if extra is not None]
            initial = th.cat(seeds, dim=1) if seeds else None
            plan = self.planner.optimize(objective, self.plan, initial_elites=initial)
            self.elites = self.planner.shifted_elites()
        else:
            if prior is not None:
                raise ValueError(f"{type(self.planner).__name__} takes no extra candidates; plan with 'icem' to use a prior")
            plan = self.planner.optimize(objective, self.plan)  # (M, H, A)
        tail = self.planner.initial_mean(n_starts)[:, :1]
        self.plan = th.cat([plan[:, 1:], tail], dim=1)
        return plan
