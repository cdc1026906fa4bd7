"""
Errors of the learned dynamics model on real transitions: one-step error, open-loop k-step error,
calibration, member disagreement and reward error.

Pure torch, tensors in and numbers out, so that any training loop can call them;
:class:`sb3_mbrl.common.ModelDiagnosticsCallback` feeds them the fresh transitions of an SB3
replay buffer and logs the results.
"""
from typing import Dict, Optional, Tuple

import torch as th

from sb3_mbrl.dynamics.ensemble import ProbabilisticEnsemble

# Two-sided 95% interval of a Gaussian.
_Z_95 = 1.959963984540054


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
