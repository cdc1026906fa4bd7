"""ModelEnv: the learned model used as a batched, differentiable-free simulator."""
from typing import Callable, Optional, Tuple, Union

import torch as th

from sb3_mbrl.dynamics.ensemble import ProbabilisticEnsemble
from sb3_mbrl.dynamics.inference import EnsembleInference
from sb3_mbrl.envs.types import StateValueFn, TransitionFn

PROPAGATION_METHODS = ("random_model", "fixed_model", "expectation")


def check_transition_fn_outputs(
    reward_fn: Optional[TransitionFn],
    termination_fn: Optional[TransitionFn],
    reward: object,
    terminated: object,
    obs: th.Tensor,
    actions: th.Tensor,
) -> None:
    """
    Check once what a user's reward / termination function returned for ``B`` rows: a ``(B,)``
    float tensor and a ``(B,)`` bool (or 0/1 integer) tensor. A ``(B, 1)`` reward would broadcast
    against ``(B,)`` returns into a ``(B, B)`` matrix without an error, so it is refused here.
    """
    n_rows = obs.shape[0]
    inputs = f"for obs {tuple(obs.shape)}, action {tuple(actions.shape)}, next_obs {tuple(obs.shape)}"
    if reward_fn is not None:
        if not isinstance(reward, th.Tensor) or reward.shape != (n_rows,) or not reward.is_floating_point():
            got = f"{type(reward).__name__} {tuple(reward.shape)} {reward.dtype}" if isinstance(reward, th.Tensor) else type(reward).__name__
            raise ValueError(
                f"reward_fn {getattr(reward_fn, '__name__', reward_fn)!r} must return a float tensor of shape ({n_rows},) "
                f"{inputs}; it returned {got}"
            )
    if termination_fn is not None:
        ok_dtype = isinstance(terminated, th.Tensor) and (terminated.dtype == th.bool or not terminated.is_floating_point())
        if not ok_dtype or terminated.shape != (n_rows,):  # type: ignore[union-attr]
            got = (
                f"{type(terminated).__name__} {tuple(terminated.shape)} {terminated.dtype}"
                if isinstance(terminated, th.Tensor)
                else type(terminated).__name__
            )
            raise ValueError(
                f"termination_fn {getattr(termination_fn, '__name__', termination_fn)!r} must return a bool tensor of "
                f"shape ({n_rows},) {inputs}; it returned {got}"
            )


def _inverse_permutation(perm: th.Tensor) -> th.Tensor:
    """``position`` with ``position[perm[k]] = k``: where each row went when sorted by ``perm``."""
    position = th.empty_like(perm)
    position[perm] = th.arange(perm.shape[0], device=perm.device)
    return position


class ModelEnv:
    """
    Steps many states at once through the elite members of an ensemble.

    Propagation:

    - ``random_model`` (TS-1): every row draws a new elite at every step.
    - ``fixed_model`` (TS-inf): every row keeps the elite it drew at :meth:`reset` for the
      whole rollout (rows are particles).
    - ``expectation``: the mean prediction of all elites.

    Rows are grouped by member so that each row goes through one member only; the cost of a
    step is one ensemble forward over ``B`` rows, not ``E * B``. Under ``fixed_model``,
    :meth:`evaluate_action_sequences` sorts the rows by member once per rollout and keeps them in
    that order for every step, instead of gathering and scattering them at each step.

    :param model: The ensemble.
    :param reward_fn: Known reward ``(obs, action, next_obs) -> (B,)``; required when the model
        has no reward head, else it replaces the learned reward.
    :param termination_fn: Known termination ``(obs, action, next_obs) -> (B,) bool``; ``None``
        means never terminate.
    :param terminal_value_fn: Value ``obs (B, obs_dim) -> (B,)`` of the last predicted state, added to
        the return of every row that has not terminated by the end of the horizon; ``None`` adds nothing.
    :param propagation: One of ``PROPAGATION_METHODS``.
    :param deterministic: Use the predicted mean instead of sampling from the Gaussian.
    :param generator: Random generator on the model's device (default: torch's global one).
    :param compute_dtype: Run the ensemble's matrix products and activations in this dtype (e.g.
        ``torch.bfloat16``: about 2x faster on CPUs with bf16 units, planning tolerates it);
        ``None`` keeps float32; ``"auto"`` takes bf16 only on a device where it runs natively.
        Normalisation, the log-variance bounds and the states stay in float32. The forward is :class:`EnsembleInference` (weights cast once per fit).
    :param discount: Weight ``gamma^t`` of the reward of step ``t`` of an action sequence, and
        ``gamma^H`` of its terminal value: 1 (PETS) sums them as they are; LOOP discounts as its critic does.
    """

    def __init__(
        self,
        model: ProbabilisticEnsemble,
        reward_fn: Optional[TransitionFn] = None,
        termination_fn: Optional[TransitionFn] = None,
        propagation: str = "random_model",
        deterministic: bool = False,
        generator: Optional[th.Generator] = None,
        compute_dtype: Union[None, str, th.dtype] = None,
        terminal_value_fn: Optional[StateValueFn] = None,
        discount: float = 1.0,
    ) -> None:
        if not 0.0 < discount <= 1.0:
            raise ValueError(f"discount must be in (0, 1], got {discount}")
        if propagation not in PROPAGATION_METHODS:
            raise ValueError(f"propagation must be one of {PROPAGATION_METHODS}, got {propagation!r}")
        if reward_fn is None and not model.learn_reward:
            raise ValueError("The model has no reward head: pass a reward_fn")
        self.model = model
        self.reward_fn = reward_fn
        self.termination_fn = termination_fn
        self.terminal_value_fn = terminal_value_fn
        self.discount = float(discount)
        self.propagation = propagation
        self.deterministic = deterministic
        self.generator = generator
        self.compute_dtype = compute_dtype
        self.inference = EnsembleInference(model, compute_dtype)
        self._fixed_perm: Optional[th.Tensor] = None
        self._checked_fns = False  # the user's reward/termination outputs are checked on the first step

    @property
    def device(self) -> th.device:
        return self.model.input_mean.device

    def _permutation(self, n_rows: int) -> th.Tensor:
        return th.randperm(n_rows, device=self.device, generator=self.generator)

    def reset(self, batch_size: int) -> None:
        """Start a rollout of ``batch_size`` rows: draws the fixed member assignment for ``fixed_model``."""
        n_elites = self.model.num_elites
        padded = -(-batch_size // n_elites) * n_elites
        self._fixed_perm = self._permutation(padded)

    def member_indices(self, batch_size: int) -> th.Tensor:
        """Elite member (index into the ensemble) that ``fixed_model`` uses for each row ``(B,)``."""
        if self._fixed_perm is None or self._fixed_perm.shape[0] < batch_size:
            raise RuntimeError("Call reset(batch_size) before using fixed_model propagation")
        group_size = self._fixed_perm.shape[0] // self.model.num_elites
        return self.model.elite_indices[_inverse_permutation(self._fixed_perm)[:batch_size] // group_size]

    def _members(self) -> Optional[th.Tensor]:
        """The elites' indices, or ``None`` when every member is an elite (nothing to gather)."""
        elites = self.model.elite_indices
        return None if elites.shape[0] == self.model.ensemble_size else elites

    @th.no_grad()
    def predict_delta(self, obs: th.Tensor, actions: th.Tensor) -> th.Tensor:
        """Sampled (or mean) ``[next_obs - obs, reward]`` for each row, ``(B, out)``."""
        mean, var = self._predict_moments(obs, actions)
        if self.deterministic:
            return mean
        noise = th.randn(mean.shape, device=mean.device, generator=self.generator)
        return mean + var.sqrt() * noise

    @th.no_grad()
    def predict_delta_grouped(self, obs: th.Tensor, actions: th.Tensor, perm: th.Tensor, n_real_rows: int) -> th.Tensor:
        """
        :meth:`predict_delta` for rows already sorted by member: row ``k`` of ``obs (B', obs_dim)``
        belongs to elite ``k // (B' / n_elites)``. ``perm`` is the order they were sorted in
        (``grouped = rows[perm]``); the noise is drawn in the rows' own order and sorted the same
        way, so a grouped rollout samples exactly what the step-by-step one does. The last
        ``B' - n_real_rows`` rows are padding (copies of the first rows).

        :return: ``(B', out)`` in the grouped order.
        """
        n_elites = self.model.num_elites
        n_rows = obs.shape[0]
        mean, var = self.inference.predict(
            obs.view(n_elites, n_rows // n_elites, -1), actions.view(n_elites, n_rows // n_elites, -1), self._members()
        )
        mean, var = mean.view(n_rows, -1), var.view(n_rows, -1)  # (B', out)
        if self.deterministic:
            return mean
        noise = th.randn((n_real_rows, mean.shape[1]), device=mean.device, generator=self.generator)
        if n_rows > n_real_rows:  # padded rows repeat the first rows (their results are dropped)
            noise = th.cat([noise, noise[: n_rows - n_real_rows]], dim=0)
        return mean + var.sqrt() * noise[perm]

    def _predict_moments(self, obs: th.Tensor, actions: th.Tensor) -> Tuple[th.Tensor, th.Tensor]:
        """Mean and variance of ``[next_obs - obs, reward]`` for each row under the propagation mode."""
        n_elites, n_rows = self.model.num_elites, obs.shape[0]
        members = self._members()
        if self.propagation == "expectation":
            shape = (n_elites, n_rows, -1)
            mean, var = self.inference.predict(obs.expand(*shape), actions.expand(*shape), members)  # (n_elites, B, out)
            mean, var = mean.mean(dim=0), var.mean(dim=0)
        else:
            padded = -(-n_rows // n_elites) * n_elites
            if self.propagation == "fixed_model":
                if self._fixed_perm is None or self._fixed_perm.shape[0] != padded:
                    raise RuntimeError(
                        f"fixed_model propagation was reset for a different batch size: call reset({n_rows}) first"
                    )
                perm = self._fixed_perm
            else:
                perm = self._permutation(padded)
            pad = padded - n_rows
            if pad:
                obs = th.cat([obs, obs[:pad]], dim=0)
                actions = th.cat([actions, actions[:pad]], dim=0)
            # Row perm[k] goes to member k // group: (n_elites, group, dim)
            grouped_obs = obs[perm].view(n_elites, padded // n_elites, -1)
            grouped_act = actions[perm].view(n_elites, padded // n_elites, -1)
            g_mean, g_var = self.inference.predict(grouped_obs, grouped_act, members)
            mean = th.empty(padded, g_mean.shape[-1], device=obs.device, dtype=g_mean.dtype)
            var = th.empty_like(mean)
            mean[perm] = g_mean.reshape(padded, -1)
            var[perm] = g_var.reshape(padded, -1)
            mean, var = mean[:n_rows], var[:n_rows]
        return mean, var

    @th.no_grad()
    def step(self, obs: th.Tensor, actions: th.Tensor) -> Tuple[th.Tensor, th.Tensor, th.Tensor]:
        """
        :param obs: ``(B, obs_dim)``
        :param actions: ``(B, action_dim)`` in the env's action units
        :return: ``next_obs (B, obs_dim)``, ``reward (B,)``, ``terminated (B,) bool``
        """
        if obs.dim() != 2 or obs.shape[1] != self.model.obs_dim:
            raise ValueError(f"obs must have shape (B, {self.model.obs_dim}), got {tuple(obs.shape)}")
        if actions.shape != (obs.shape[0], self.model.action_dim):
            raise ValueError(f"actions must have shape ({obs.shape[0]}, {self.model.action_dim}), got {tuple(actions.shape)}")
        delta = self.predict_delta(obs, actions)  # (B, out)
        return self._transition(obs, actions, delta)

    def _transition(self, obs: th.Tensor, actions: th.Tensor, delta: th.Tensor) -> Tuple[th.Tensor, th.Tensor, th.Tensor]:
        """Next states, rewards and terminations ``(B, ...)`` from the sampled ``delta (B, out)``."""
        next_obs = obs + delta[:, : self.model.obs_dim]
        if self.reward_fn is not None:
            reward = self.reward_fn(obs, actions, next_obs)
        else:
            reward = delta[:, -1]
        if self.termination_fn is not None:
            terminated = self.termination_fn(obs, actions, next_obs)
        else:
            terminated = th.zeros(obs.shape[0], dtype=th.bool, device=obs.device)
        if not self._checked_fns:
            check_transition_fn_outputs(self.reward_fn, self.termination_fn, reward, terminated, obs, actions)
            self._checked_fns = True
        return next_obs, reward, terminated.bool()

    @th.no_grad()
    def terminal_value(self, obs: th.Tensor) -> th.Tensor:
        """``terminal_value_fn`` of ``obs (B, obs_dim)``, checked to be a ``(B,)`` float tensor."""
        value = self.terminal_value_fn(obs)  # type: ignore[misc]
        if not isinstance(value, th.Tensor) or value.shape != (obs.shape[0],) or not value.is_floating_point():
            got = f"{type(value).__name__} {tuple(value.shape)} {value.dtype}" if isinstance(value, th.Tensor) else type(value).__name__
            name = getattr(self.terminal_value_fn, "__name__", self.terminal_value_fn)
            raise ValueError(
                f"terminal_value_fn {name!r} must return a float tensor of shape ({obs.shape[0]},) for obs "
                f"{tuple(obs.shape)}; it returned {got}"
            )
        return value.to(th.float32)

    def evaluate_action_sequences(
        self, action_sequences: th.Tensor, initial_obs: th.Tensor, num_particles: int = 1
    ) -> th.Tensor:
        """
        Total predicted reward of each action sequence, averaged over particles.

        Rewards after a predicted termination count as zero; a row alive at the end of the horizon
        adds ``terminal_value_fn`` of its last state. With ``discount < 1`` the reward of step ``t``
        weighs ``discount**t`` and the terminal value ``discount**H``. A sequence whose predicted return
        is NaN or inf gets ``-inf``, so planners rank it last.

        :param action_sequences: ``(M, P, H, action_dim)``: for each of ``M`` start states, ``P``
            candidate sequences of horizon ``H``; ``(P, H, action_dim)`` when ``M == 1``.
        :param initial_obs: ``(M, obs_dim)`` or ``(obs_dim,)``.
        :param num_particles: Particles ``N`` per sequence.
        :return: ``(M, P)`` (or ``(P,)`` for 3-D input) mean return over particles.
        """
        squeeze = action_sequences.dim() == 3
        if squeeze:
            action_sequences = action_sequences.unsqueeze(0)
        if initial_obs.dim() == 1:
            initial_obs = initial_obs.unsqueeze(0)
        n_starts, population, horizon, action_dim = action_sequences.shape
        if initial_obs.shape[0] != n_starts:
            raise ValueError(f"{initial_obs.shape[0]} start states for {n_starts} groups of action sequences")
        n_rows = n_starts * population * num_particles
        # Row order (M, P, N): particles of one sequence are adjacent.
        obs = initial_obs.repeat_interleave(population * num_particles, dim=0)  # (M*P*N, obs_dim)
        actions = action_sequences.repeat_interleave(num_particles, dim=1).reshape(n_rows, horizon, action_dim)
        self.reset(n_rows)
        if self.propagation == "fixed_model":
            total = self._rollout_grouped(obs, actions)
        else:
            total = self._rollout(obs, actions.transpose(0, 1), self.step)
        returns = total.view(n_starts, population, num_particles).mean(dim=2)
        returns = th.where(th.isfinite(returns), returns, th.full_like(returns, -float("inf")))
        return returns[0] if squeeze else returns

    def _rollout(self, obs: th.Tensor, actions_by_step: th.Tensor, step: Callable) -> th.Tensor:
        """Return of each row ``(B,)`` from ``obs (B, obs_dim)`` under ``actions_by_step (H, B, A)``, stepping with ``step``."""
        total = th.zeros(obs.shape[0], device=obs.device)
        alive = th.ones(obs.shape[0], dtype=th.bool, device=obs.device)
        weight = 1.0  # discount ** t
        for step_actions in actions_by_step:
            obs, reward, terminated = step(obs, step_actions)
            if weight != 1.0:
                reward = reward * weight
            # where(), not a product: a diverged dead row (NaN) must not poison the total.
            total += th.where(alive, reward, th.zeros_like(reward))
            alive &= ~terminated
            weight *= self.discount
        if self.terminal_value_fn is not None:
            value = self.terminal_value(obs)
            if weight != 1.0:
                value = value * weight
            total += th.where(alive, value, th.zeros_like(total))
        return total

    def _rollout_grouped(self, obs: th.Tensor, actions: th.Tensor) -> th.Tensor:
        """
        :meth:`_rollout` under ``fixed_model`` with the rows sorted by member once: every step's
        forward reads its rows in place, and the returns are put back in row order at the end.
        Same draws, same trajectories as stepping with :meth:`step`.
        """
        perm = self._fixed_perm  # (B',): row perm[k] goes to member k // (B' / n_elites)
        n_rows = obs.shape[0]
        pad = perm.shape[0] - n_rows
        if pad:  # padded rows repeat the first rows; their returns are dropped
            obs = th.cat([obs, obs[:pad]], dim=0)
            actions = th.cat([actions, actions[:pad]], dim=0)
        obs, actions_by_step = obs[perm], actions[perm].transpose(0, 1).contiguous()  # (B', obs_dim), (H, B', A)

        def grouped_step(obs: th.Tensor, step_actions: th.Tensor) -> Tuple[th.Tensor, th.Tensor, th.Tensor]:
            return self._transition(obs, step_actions, self.predict_delta_grouped(obs, step_actions, perm, n_rows))

        total = self._rollout(obs, actions_by_step, grouped_step)  # (B',) in grouped order
        return total[_inverse_permutation(perm)[:n_rows]]
