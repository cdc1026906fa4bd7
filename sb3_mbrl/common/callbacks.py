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

The error maths (pure torch) lives with the model, in :mod:`sb3_mbrl.dynamics.diagnostics`.
"""
import warnings
from typing import Dict, Optional, Tuple

import numpy as np
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback

from sb3_mbrl.common.buffers import replay_buffer_transitions
from sb3_mbrl.dynamics.diagnostics import model_diagnostics
from sb3_mbrl.dynamics.ensemble import ProbabilisticEnsemble


def get_dynamics_ensemble(model: BaseAlgorithm) -> ProbabilisticEnsemble:
    """
    The dynamics ensemble of a model-based algorithm: ``model.dynamics`` (PETS and MBPO).

    :param model: The algorithm.
    :return: Its :class:`ProbabilisticEnsemble`.
    :raises TypeError: When the algorithm has no dynamics ensemble (SAC, PPO, REINFORCE ...).
    """
    ensemble = getattr(model, "dynamics", None)
    if not isinstance(ensemble, ProbabilisticEnsemble):
        raise TypeError(
            f"{type(model).__name__} has no dynamics ensemble: model diagnostics need a model-based algorithm "
            "whose ProbabilisticEnsemble is model.dynamics (sb3_mbrl's PETS and MBPO)"
        )
    return ensemble


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
        :return: The metrics of :func:`sb3_mbrl.dynamics.diagnostics.model_diagnostics`.
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
        device = self.ensemble.input_mean.device  # type: ignore[union-attr]
        obs, actions, next_obs, rewards = replay_buffer_transitions(buffer, self.model.policy, device, rows, by_env=True)
        dones = th.as_tensor(buffer.dones[rows] > 0, device=device)  # (T, n_envs): where open-loop windows stop
        return obs, actions, next_obs, rewards, dones

    def _rows_stored(self) -> int:
        """Rows stored in this ``learn()`` call's frame of reference: env steps per env so far."""
        return self.model.num_timesteps // self.model.replay_buffer.n_envs  # type: ignore[union-attr]

    def _fit_count(self) -> int:
        trainer = getattr(self.model, "model_trainer", None)
        if trainer is None:
            raise TypeError(f"{type(self.model).__name__} has no model_trainer: model diagnostics need PETS or MBPO")
        return trainer.n_fits
