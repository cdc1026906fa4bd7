"""
Diagnostics of the learned dynamics model during training.

:class:`ModelDiagnosticsCallback` measures the ensemble of PETS or MBPO on real transitions it
has not been trained on and logs the results under ``model/`` through SB3's logger, so they
reach stdout, csv and tensorboard like every other SB3 metric.

Which transitions: the ones collected since the model's last fit. PETS and MBPO refit on
*every* real transition in the replay buffer, so the rows added after a fit are exactly the
data the current model has never seen. They cost nothing extra (no evaluation episodes: for
PETS each evaluation step would be a full MPC plan), and they come from the states the
training policy visits now, which is where model errors hurt. The callback recognises a fit
by the algorithm's ``EnsembleTrainer.n_fits`` counter and measures just before the next refit can happen (at the end of a rollout,
after the rollout's last transition is stored, before SB3 calls ``train()``).
"""
import warnings
from typing import Dict, Optional, Tuple

import numpy as np
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback

from sb3_mbrl.dynamics.ensemble import ProbabilisticEnsemble

# Two-sided 95% interval of a Gaussian.
_Z_95 = 1.959963984540054


def get_dynamics_ensemble(model: BaseAlgorithm) -> ProbabilisticEnsemble:
    """
    The dynamics ensemble of a model-based algorithm.

    PETS keeps it in its MPC policy (``model.policy.dynamics``), MBPO on the algorithm
    (``model.dynamics``).

    :param model: The algorithm.
    :return: Its :class:`ProbabilisticEnsemble`.
    :raises TypeError: When the algorithm has no dynamics ensemble (SAC, PPO, REINFORCE ...).
    """
    for owner in (model, getattr(model, "policy", None)):
        ensemble = getattr(owner, "dynamics", None)
        if isinstance(ensemble, ProbabilisticEnsemble):
            return ensemble
    raise TypeError(
        f"{type(model).__name__} has no dynamics ensemble: model diagnostics need a model-based algorithm "
        "with a ProbabilisticEnsemble (sb3_mbrl's PETS keeps it in policy.dynamics, MBPO in .dynamics)"
    )


def _members(ensemble: ProbabilisticEnsemble, members: Optional[th.Tensor]) -> Optional[th.Tensor]:
    """The elites by default, as the algorithms predict with them; ``None`` when that is every member."""
    if members is None:
        members = ensemble.elite_indices
    return None if members.shape[0] == ensemble.ensemble_size else members


@th.no_grad()
def one_step_metrics(
    ensemble: ProbabilisticEnsemble,
    obs: th.Tensor,
    actions: th.Tensor,
    next_obs: th.Tensor,
    rewards: Optional[th.Tensor] = None,
    members: Optional[th.Tensor] = None,
) -> Dict[str, float]:
    """
    One-step errors, calibration and disagreement of the ensemble on real transitions.

    The prediction is the mixture of the members used (the elites by default): its mean is the
    mean of the member means, its variance the mean of the member variances (aleatoric) plus
    the variance of the member means (epistemic).

    :param ensemble: The model.
    :param obs: ``(N, obs_dim)`` raw observations.
    :param actions: ``(N, action_dim)`` actions in env units.
    :param next_obs: ``(N, obs_dim)`` raw next observations.
    :param rewards: ``(N,)``; required when the model has a reward head.
    :param members: Member indices to use (default: the elites).
    :return: ``one_step_mse`` (squared error of the mixture mean on the model's normalised
        targets ``[next_obs - obs, reward]``, mean over rows and target dims: the units of
        ``train/model_holdout_mse``), ``one_step_mse_raw`` (next observation, raw units, mean
        over rows and observation dims), ``reward_mse`` (raw units; only with a reward head),
        ``calibration_95`` (share of target entries inside mean +- 1.96 total std) and
        ``disagreement`` (std of the member means in normalised target units, mean over rows
        and dims).
    """
    obs_dim = ensemble.obs_dim
    targets = next_obs - obs  # (N, obs_dim)
    if ensemble.learn_reward:
        if rewards is None:
            raise ValueError("The model has a reward head, so rewards are required")
        targets = th.cat([targets, rewards.reshape(-1, 1)], dim=1)  # (N, obs_dim + 1)
    mean, var = ensemble.predict(obs, actions, members=_members(ensemble, members))  # (E', N, out) each
    mixture_mean = mean.mean(dim=0)  # (N, out)
    mixture_var = var.mean(dim=0) + mean.var(dim=0, unbiased=False)  # (N, out)
    error = mixture_mean - targets  # (N, out), raw units
    target_std = ensemble.target_std  # (1, out)
    metrics = {
        "one_step_mse": (error / target_std).pow(2).mean().item(),
        "one_step_mse_raw": error[:, :obs_dim].pow(2).mean().item(),
        # <=: an exact prediction counts as inside even when the predicted variance is 0.
        "calibration_95": (error.abs() <= _Z_95 * mixture_var.sqrt()).float().mean().item(),
        "disagreement": (mean / target_std).std(dim=0, unbiased=False).mean().item(),
    }
    if ensemble.learn_reward:
        metrics["reward_mse"] = error[:, obs_dim].pow(2).mean().item()
    return metrics


@th.no_grad()
def open_loop_mse(
    ensemble: ProbabilisticEnsemble,
    start_obs: th.Tensor,
    actions: th.Tensor,
    real_next_obs: th.Tensor,
    members: Optional[th.Tensor] = None,
) -> th.Tensor:
    """
    Open-loop error: replay real action sequences through the model from real start states.

    The state is propagated with the mean of the members' mean predictions (no sampling), so
    the error measures the model's bias, not its noise.

    :param ensemble: The model.
    :param start_obs: ``(S, obs_dim)`` real start states.
    :param actions: ``(S, k, action_dim)`` the actions taken in the real env, env units.
    :param real_next_obs: ``(S, k, obs_dim)`` the real states after each of those actions.
    :param members: Member indices to use (default: the elites).
    :return: ``(k,)`` squared error of the predicted state after ``1 .. k`` steps, raw units,
        mean over segments and observation dims.
    """
    if start_obs.shape[0] == 0:
        raise ValueError("open_loop_mse needs at least one segment")
    members = _members(ensemble, members)
    obs = start_obs  # (S, obs_dim)
    errors = []
    # A loop over the k time steps; every step is one batched forward over all segments.
    for step in range(actions.shape[1]):
        mean, _ = ensemble.predict(obs, actions[:, step], members=members)  # (E', S, out)
        obs = obs + mean.mean(dim=0)[:, : ensemble.obs_dim]  # (S, obs_dim)
        errors.append((obs - real_next_obs[:, step]).pow(2).mean())
    return th.stack(errors)  # (k,)


def open_loop_segments(dones: th.Tensor, horizon: int) -> Tuple[th.Tensor, th.Tensor]:
    """
    Every window of ``horizon`` consecutive transitions of one env within one episode.

    A window starting at row ``t`` is valid when none of rows ``t .. t + horizon - 2`` ends an
    episode (the last transition may end it: its next observation is still the real one).
    Windows overlap (stride 1).

    :param dones: ``(T, n_envs)`` episode ends (termination or truncation), rows in time order.
    :param horizon: Window length ``k >= 1``.
    :return: Start rows ``(S,)`` and env columns ``(S,)`` of the valid windows.
    """
    if horizon < 1:
        raise ValueError(f"horizon must be at least 1, got {horizon}")
    n_rows, n_envs = dones.shape
    if n_rows < horizon:
        empty = th.zeros(0, dtype=th.long, device=dones.device)
        return empty, empty
    # ends_before[i] = episode ends among rows < i, per env: (T + 1, n_envs)
    ends_before = th.cat([th.zeros(1, n_envs, device=dones.device), dones.float().cumsum(dim=0)])
    starts = th.arange(n_rows - horizon + 1, device=dones.device)
    ends_inside = ends_before[starts + horizon - 1] - ends_before[starts]  # (T - k + 1, n_envs)
    start_rows, env_cols = (ends_inside == 0).nonzero(as_tuple=True)
    return start_rows, env_cols


def model_diagnostics(
    ensemble: ProbabilisticEnsemble,
    obs: th.Tensor,
    actions: th.Tensor,
    next_obs: th.Tensor,
    rewards: th.Tensor,
    dones: th.Tensor,
    horizon: int = 5,
    members: Optional[th.Tensor] = None,
) -> Dict[str, float]:
    """
    All diagnostics on a block of consecutive transitions laid out as SB3's replay buffer.

    :param ensemble: The model.
    :param obs: ``(T, n_envs, obs_dim)`` raw observations, rows in time order.
    :param actions: ``(T, n_envs, action_dim)`` actions in env units.
    :param next_obs: ``(T, n_envs, obs_dim)``
    :param rewards: ``(T, n_envs)``
    :param dones: ``(T, n_envs)`` episode ends.
    :param horizon: ``k`` of the open-loop error.
    :param members: Member indices to use (default: the elites).
    :return: The metrics of :func:`one_step_metrics`, plus ``k_step_mse`` (raw units, see
        :func:`open_loop_mse`; absent when no window of ``k`` steps fits in the data),
        ``n_transitions`` and ``n_segments``.
    """
    n_rows, n_envs, obs_dim = obs.shape
    flat = lambda x: x.reshape(n_rows * n_envs, *x.shape[2:])  # noqa: E731
    metrics = one_step_metrics(ensemble, flat(obs), flat(actions), flat(next_obs), flat(rewards), members)
    start_rows, env_cols = open_loop_segments(dones, horizon)
    if start_rows.shape[0] > 0:
        rows = start_rows[:, None] + th.arange(horizon, device=obs.device)  # (S, k)
        cols = env_cols[:, None].expand(-1, horizon)  # (S, k)
        errors = open_loop_mse(ensemble, obs[start_rows, env_cols], actions[rows, cols], next_obs[rows, cols], members)
        metrics["k_step_mse"] = errors[-1].item()
    metrics["n_transitions"] = float(n_rows * n_envs)
    metrics["n_segments"] = float(start_rows.shape[0])
    return metrics


class ModelDiagnosticsCallback(BaseCallback):
    """
    Measures the dynamics model of PETS or MBPO on fresh real transitions and logs under ``model/``.

    Every ``eval_freq`` env steps (a measurement is then due and happens at the end of the
    current rollout, as soon as at least ``min_transitions`` transitions were collected since
    the model's last fit) it takes the transitions collected since that fit (the most recent
    ``max_transitions`` of them) and records:

    - ``model/one_step_mse``: 1-step error of the ensemble mean on normalised targets
      ``[next_obs - obs, reward]`` (same units as ``train/model_holdout_mse``);
      ``model/one_step_mse_raw``: next observation, raw units;
    - ``model/k_step_mse``: open-loop error after ``horizon`` steps, raw observation units;
    - ``model/calibration_95``: share of real targets inside the predicted 95% interval of the
      member mixture (aim: about 0.95);
    - ``model/disagreement``: std of the member means, normalised units, mean over dims;
    - ``model/reward_mse``: raw units, when the model learns the reward;
    - ``model/n_transitions``, ``model/n_segments``: how much data the numbers rest on.

    The metrics use the elite members (those the algorithm predicts with). After recording
    them the callback dumps the logger at the current step, as SB3's ``EvalCallback`` does, so
    csv and tensorboard get them at the step they were measured. Nothing is measured before
    the first fit seen during ``learn()``.

    :param eval_freq: Env steps (summed over envs) between measurements.
    :param horizon: ``k`` of ``model/k_step_mse``.
    :param min_transitions: Fewest fresh transitions (rows x envs) to measure on; must stay
        below the number of steps between model fits (a warning says so otherwise).
    :param max_transitions: Most recent fresh transitions used at most (bounds the cost).
    :param verbose: 1 prints a line per measurement.
    """

    def __init__(
        self,
        eval_freq: int = 1000,
        horizon: int = 5,
        min_transitions: int = 20,
        max_transitions: int = 10_000,
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose)
        if eval_freq < 1:
            raise ValueError(f"eval_freq must be at least 1, got {eval_freq}")
        if horizon < 1:
            raise ValueError(f"horizon must be at least 1, got {horizon}")
        if not 1 <= min_transitions <= max_transitions:
            raise ValueError(
                f"need 1 <= min_transitions <= max_transitions, got {min_transitions} and {max_transitions}"
            )
        self.eval_freq = eval_freq
        self.horizon = horizon
        self.min_transitions = min_transitions
        self.max_transitions = max_transitions
        self.ensemble: Optional[ProbabilisticEnsemble] = None
        self.last_metrics: Dict[str, float] = {}
        # Replay-buffer row indices of the last measurement (oldest first), for inspection.
        self.last_rows: Optional[np.ndarray] = None
        self._fits_seen = 0
        self._rows_at_fit: Optional[int] = None
        self._next_due = 0
        self._pending = False
        self._warned = False

    # ------------------------------------------------------------------ SB3 hooks
    def _init_callback(self) -> None:
        self.ensemble = get_dynamics_ensemble(self.model)
        buffer = getattr(self.model, "replay_buffer", None)
        if not isinstance(buffer, ReplayBuffer):
            raise TypeError(
                f"{type(self.model).__name__}: model diagnostics read fresh transitions from an SB3 ReplayBuffer, "
                f"got {type(buffer).__name__}"
            )
        self._fits_seen = self._fit_count()
        self._rows_at_fit = None  # unknown until a fit is seen: the model may hold any data so far
        self._next_due = self.model.num_timesteps + self.eval_freq
        self._pending = False

    def _on_step(self) -> bool:
        fits = self._fit_count()
        if fits != self._fits_seen:
            # SB3 stores this step's transition after on_step, so the fit used every row stored so far.
            rows_at_fit = self._rows_stored() - 1
            if self._pending and self._rows_at_fit is not None and not self._warned:
                self._warned = True
                warnings.warn(
                    f"ModelDiagnosticsCallback: the model was refitted after only {rows_at_fit - self._rows_at_fit} "
                    f"new transition(s) per env, fewer than min_transitions={self.min_transitions}; "
                    "lower min_transitions to get measurements",
                    stacklevel=2,
                )
            self._fits_seen = fits
            self._rows_at_fit = rows_at_fit
        if self.model.num_timesteps >= self._next_due:
            self._pending = True
            missed = (self.model.num_timesteps - self._next_due) // self.eval_freq
            self._next_due += (missed + 1) * self.eval_freq
        return True

    def _on_rollout_end(self) -> None:
        # Every transition of the rollout is stored now, and train() (a possible refit) comes next.
        if not self._pending or self._rows_at_fit is None:
            return
        n_envs = self.model.replay_buffer.n_envs  # type: ignore[union-attr]
        fresh_rows = self._rows_stored() - self._rows_at_fit
        if fresh_rows * n_envs < self.min_transitions:
            return
        self._pending = False
        self.last_metrics = self.measure(fresh_rows)
        for key, value in self.last_metrics.items():
            self.logger.record(f"model/{key}", value)
        self.logger.record("time/total_timesteps", self.model.num_timesteps, exclude="tensorboard")
        self.logger.dump(self.model.num_timesteps)
        if self.verbose >= 1:
            shown = ", ".join(f"{key} {value:.4g}" for key, value in self.last_metrics.items())
            print(f"Model diagnostics at step {self.model.num_timesteps}: {shown}")

    # ------------------------------------------------------------------ measuring
    def measure(self, fresh_rows: int) -> Dict[str, float]:
        """
        Metrics on the ``fresh_rows`` most recent replay-buffer rows (capped by
        ``max_transitions`` and the buffer size).

        :param fresh_rows: Rows (per env) stored since the last fit.
        :return: The metrics of :func:`model_diagnostics`.
        """
        assert self.ensemble is not None, "the callback is not initialised: pass it to learn()"
        buffer: ReplayBuffer = self.model.replay_buffer  # type: ignore[assignment]
        stored = buffer.buffer_size if buffer.full else buffer.pos
        n_rows = min(fresh_rows, max(1, self.max_transitions // buffer.n_envs), stored)
        rows = (buffer.pos - n_rows + np.arange(n_rows)) % buffer.buffer_size  # oldest first
        self.last_rows = rows
        obs, actions, next_obs, rewards, dones = self._buffer_rows(buffer, rows)
        return model_diagnostics(self.ensemble, obs, actions, next_obs, rewards, dones, self.horizon)

    def _buffer_rows(self, buffer: ReplayBuffer, rows: np.ndarray) -> Tuple[th.Tensor, ...]:
        """Replay-buffer rows as tensors on the model's device, actions in env units, ``(T, n_envs, ...)``."""
        n_envs, obs_dim = buffer.n_envs, int(np.prod(buffer.obs_shape))
        obs = buffer.observations[rows].reshape(len(rows), n_envs, obs_dim)
        if buffer.optimize_memory_usage:
            next_obs = buffer.observations[(rows + 1) % buffer.buffer_size]
        else:
            next_obs = buffer.next_observations[rows]
        # The buffer holds actions scaled to [-1, 1] (SB3's convention); the model takes env units.
        actions = self.model.policy.unscale_action(buffer.actions[rows].reshape(len(rows), n_envs, buffer.action_dim))
        device = self.ensemble.input_mean.device  # type: ignore[union-attr]
        as_tensor = lambda x: th.as_tensor(np.asarray(x, dtype=np.float32), device=device)  # noqa: E731
        return (
            as_tensor(obs),
            as_tensor(actions),
            as_tensor(next_obs.reshape(len(rows), n_envs, obs_dim)),
            as_tensor(buffer.rewards[rows]),
            th.as_tensor(buffer.dones[rows] > 0, device=device),
        )

    def _rows_stored(self) -> int:
        """Rows stored in this ``learn()`` call's frame of reference: env steps per env so far."""
        return self.model.num_timesteps // self.model.replay_buffer.n_envs  # type: ignore[union-attr]

    def _fit_count(self) -> int:
        trainer = getattr(self.model, "model_trainer", None)
        if trainer is None:
            raise TypeError(f"{type(self.model).__name__} has no model_trainer: model diagnostics need PETS or MBPO")
        return trainer.n_fits
