"""The dynamics model's trainer and one fit on the replay buffer, the same way for PETS and MBPO."""
import sys
import time
from typing import Any, Dict, Optional, Tuple

import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

from sb3_mbrl.common.buffers import replay_buffer_transitions
from sb3_mbrl.dynamics.ensemble import ProbabilisticEnsemble
from sb3_mbrl.dynamics.inference import compute_dtype_of_name
from sb3_mbrl.dynamics.trainer import EnsembleTrainer, fit_progress_printer

Transitions = Tuple[th.Tensor, th.Tensor, th.Tensor, th.Tensor]


def env_steps_per_second(algo: BaseAlgorithm) -> float:
    """
    Env steps per wall second in the current ``learn()`` call, as SB3 computes ``time/fps``.

    :param algo: The algorithm, inside ``learn()``.
    :return: Env steps (summed over envs) per second.
    """
    elapsed = max((time.time_ns() - algo.start_time) / 1e9, sys.float_info.epsilon)
    return (algo.num_timesteps - algo._num_timesteps_at_start) / elapsed


def make_model_trainer(algo: BaseAlgorithm, dynamics: ProbabilisticEnsemble, **kwargs: Any) -> EnsembleTrainer:
    """
    The trainer of an algorithm's ensemble, from its ``model_batch_size``, ``model_holdout_ratio``,
    ``model_epochs``, ``model_patience``, ``model_min_updates``, ``model_max_fit_seconds``,
    ``model_lr_warmup_updates`` and ``model_fit_dtype`` (PETS and MBPO use the same names). SB3's
    ``load()`` builds the algorithm with its defaults before it restores the saved attributes, so
    models saved before the last four existed get the defaults.

    :param algo: PETS or MBPO.
    :param dynamics: Its ensemble.
    :param kwargs: Other :class:`EnsembleTrainer` arguments (``learning_rate``, ``optimizer``).
    :return: The trainer.
    """
    return EnsembleTrainer(
        dynamics,
        batch_size=algo.model_batch_size,  # type: ignore[attr-defined]
        holdout_ratio=algo.model_holdout_ratio,  # type: ignore[attr-defined]
        max_epochs=algo.model_epochs,  # type: ignore[attr-defined]
        patience=algo.model_patience,  # type: ignore[attr-defined]
        min_updates=algo.model_min_updates,  # type: ignore[attr-defined]
        max_seconds=algo.model_max_fit_seconds,  # type: ignore[attr-defined]
        lr_warmup_updates=algo.model_lr_warmup_updates,  # type: ignore[attr-defined]
        compute_dtype=compute_dtype_of_name(algo.model_fit_dtype, "model_fit_dtype"),  # type: ignore[attr-defined]
        **kwargs,
    )


def fit_dynamics(
    algo: OffPolicyAlgorithm,
    trainer: EnsembleTrainer,
    prefix: str,
    transitions: Optional[Transitions] = None,
) -> Dict[str, float]:
    """
    Fit the dynamics ensemble on every real transition of the algorithm's replay buffer and report it.

    Records ``train/model_loss``, ``train/model_holdout_mse`` (elites, normalised targets),
    ``train/model_start_holdout_mse`` and ``train/model_end_holdout_mse`` (mean over members, the
    fit's starting and final weights on the same holdout rows), ``train/model_epochs``,
    ``train/model_gradient_steps``, ``train/model_rows``, ``time/model_fit_s`` and ``time/model_fit_total_s`` in the algorithm's
    logger, adds the fit time to ``algo.model_fit_seconds``, and at ``verbose >= 1`` prints the
    fit's epochs (see :func:`fit_progress_printer`) and one summary line. What else a fit means
    (a learning-rate update, a fitted flag, counters, rollouts) stays with the algorithm.

    :param algo: PETS or MBPO: its ``replay_buffer``, ``policy`` (to unscale the stored
        actions), ``device``, ``logger``, ``verbose`` and ``model_fit_seconds`` are used.
    :param trainer: The trainer of the algorithm's ensemble.
    :param prefix: Name of the algorithm at the start of the printed lines, e.g. ``"PETS"``.
    :param transitions: The buffer's transitions, when the caller has already read them with
        :func:`replay_buffer_transitions` (MBPO branches its rollouts from the same observations).
    :return: ``train_loss``, ``holdout_mse_elites``, ``start_holdout_mse_mean``, ``holdout_mse_mean``,
        ``epochs``, ``gradient_steps`` (of the trainer's metrics),
        ``n_transitions`` (rows fitted on, holdout included) and ``fit_seconds``.
    """
    if transitions is None:
        transitions = replay_buffer_transitions(algo.replay_buffer, algo.policy, algo.device)  # type: ignore[arg-type]
    obs, actions, next_obs, rewards = transitions  # (N, obs_dim), (N, A), (N, obs_dim), (N,)
    start = time.perf_counter()
    show_epoch = fit_progress_printer(f"  {prefix} model", algo.verbose)
    metrics = trainer.fit(obs, actions, next_obs, rewards, epoch_callback=show_epoch)
    fit_seconds = time.perf_counter() - start
    algo.model_fit_seconds += fit_seconds  # type: ignore[attr-defined]
    logger = algo.logger
    logger.record("train/model_loss", metrics["train_loss"])
    logger.record("train/model_holdout_mse", metrics["holdout_mse_elites"])
    logger.record("train/model_start_holdout_mse", metrics["start_holdout_mse_mean"])
    logger.record("train/model_end_holdout_mse", metrics["holdout_mse_mean"])
    logger.record("train/model_epochs", metrics["epochs"])
    logger.record("train/model_gradient_steps", metrics["gradient_steps"])
    logger.record("train/model_rows", obs.shape[0])
    logger.record("time/model_fit_s", fit_seconds)
    logger.record("time/model_fit_total_s", algo.model_fit_seconds)  # type: ignore[attr-defined]
    if algo.verbose >= 1:
        print(
            f"{prefix} step {algo.num_timesteps}: model fit on {obs.shape[0]} transitions: {metrics['epochs']} epochs, "
            f"{metrics['gradient_steps']} gradient steps (stop: {metrics['stop_reason']}, "
            f"{metrics['members_improved']}/{len(metrics['holdout_mse'])} members improved), holdout MSE "
            f"{metrics['start_holdout_mse_mean']:.5f} -> {metrics['holdout_mse_mean']:.5f} "
            f"(elites {metrics['holdout_mse_elites']:.5f}), {fit_seconds:.1f} s "
            f"({algo.model_fit_seconds:.1f} s fitting in all, {env_steps_per_second(algo):.1f} env steps/s)",  # type: ignore[attr-defined]
            flush=True,
        )
    return {
        "train_loss": float(metrics["train_loss"]),
        "holdout_mse_elites": float(metrics["holdout_mse_elites"]),
        "start_holdout_mse_mean": float(metrics["start_holdout_mse_mean"]),
        "holdout_mse_mean": float(metrics["holdout_mse_mean"]),
        "epochs": float(metrics["epochs"]),
        "gradient_steps": float(metrics["gradient_steps"]),
        "n_transitions": float(obs.shape[0]),
        "fit_seconds": fit_seconds,
    }
