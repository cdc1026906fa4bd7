"""Fitting the ensemble: holdout split, bootstrap per member, early stopping, elites."""
from typing import Any, Callable, Dict, Optional, Union

import numpy as np
import torch as th

from sb3_mbrl.dynamics.ensemble import ProbabilisticEnsemble

ArrayLike = Union[np.ndarray, th.Tensor]


def _as_2d(name: str, data: ArrayLike, device: th.device) -> th.Tensor:
    tensor = th.as_tensor(data, dtype=th.float32, device=device)
    if tensor.dim() == 1:
        tensor = tensor.unsqueeze(-1)
    if tensor.dim() != 2:
        raise ValueError(f"{name} must have shape (N, dim), got {tuple(tensor.shape)}")
    return tensor


def make_training_data(
    model: ProbabilisticEnsemble,
    obs: ArrayLike,
    actions: ArrayLike,
    next_obs: ArrayLike,
    rewards: Optional[ArrayLike],
    device: th.device,
) -> tuple:
    """
    Check shapes and values and build ``inputs = [obs, action]`` and
    ``targets = [next_obs - obs, reward]`` on ``device``.

    :raises ValueError: on empty data, mismatched shapes, or NaN/inf rows (with their count).
    """
    obs_t = _as_2d("obs", obs, device)
    act_t = _as_2d("actions", actions, device)
    next_t = _as_2d("next_obs", next_obs, device)
    n_rows = obs_t.shape[0]
    if n_rows == 0:
        raise ValueError("Cannot fit the dynamics model on empty data (0 transitions)")
    if obs_t.shape[1] != model.obs_dim or next_t.shape[1] != model.obs_dim:
        raise ValueError(
            f"obs and next_obs must have {model.obs_dim} columns, got {obs_t.shape[1]} and {next_t.shape[1]}"
        )
    if act_t.shape[1] != model.action_dim:
        raise ValueError(f"actions must have {model.action_dim} columns, got {act_t.shape[1]}")
    parts = {"obs": obs_t, "actions": act_t, "next_obs": next_t}
    if model.learn_reward:
        if rewards is None:
            raise ValueError("The model has a reward head, so rewards are required")
        rew_t = _as_2d("rewards", rewards, device)
        if rew_t.shape[1] != 1:
            raise ValueError(f"rewards must have shape (N,) or (N, 1), got {tuple(rew_t.shape)}")
        parts["rewards"] = rew_t
    for name, tensor in parts.items():
        if tensor.shape[0] != n_rows:
            raise ValueError(f"{name} has {tensor.shape[0]} rows but obs has {n_rows}")
    bad = th.zeros(n_rows, dtype=th.bool, device=device)
    for tensor in parts.values():
        bad |= ~th.isfinite(tensor).all(dim=1)
    n_bad = int(bad.sum())
    if n_bad:
        raise ValueError(f"{n_bad} of {n_rows} training rows contain NaN or inf; refusing to fit the dynamics model")
    inputs = th.cat([obs_t, act_t], dim=1)  # (N, obs_dim + action_dim)
    targets = next_t - obs_t  # (N, obs_dim)
    if model.learn_reward:
        targets = th.cat([targets, parts["rewards"]], dim=1)  # (N, obs_dim + 1)
    return inputs, targets


class EnsembleTrainer:
    """
    Trains a :class:`ProbabilisticEnsemble` with Gaussian NLL.

    Each fit refits the normaliser, splits off a holdout set, gives every member its own
    bootstrap resample of the training rows (so members see different data), trains in
    mini-batches until no member improves its holdout MSE by more than
    ``improvement_threshold`` (relative) for ``patience`` epochs, restores each member's best
    weights, and ranks the members to pick the elites. The optimiser persists across fits, so
    later fits warm-start.

    :param model: The ensemble.
    :param learning_rate: Adam learning rate.
    :param batch_size: Mini-batch size per member.
    :param holdout_ratio: Share of rows held out for early stopping and elite ranking.
    :param max_holdout: Cap on the number of holdout rows.
    :param max_epochs: Upper bound on epochs per fit (``None``: only early stopping).
    :param patience: Epochs without improvement before stopping.
    :param improvement_threshold: Relative holdout MSE improvement that counts.
    :param optimizer: An existing optimiser over the model's parameters (default: a new Adam).
    """

    def __init__(
        self,
        model: ProbabilisticEnsemble,
        learning_rate: float = 1e-3,
        batch_size: int = 256,
        holdout_ratio: float = 0.2,
        max_holdout: int = 5000,
        max_epochs: Optional[int] = None,
        patience: int = 5,
        improvement_threshold: float = 0.01,
        optimizer: Optional[th.optim.Optimizer] = None,
    ) -> None:
        if not 0.0 <= holdout_ratio < 1.0:
            raise ValueError(f"holdout_ratio must be in [0, 1), got {holdout_ratio}")
        if batch_size < 1 or patience < 1:
            raise ValueError("batch_size and patience must be positive")
        if max_epochs is not None and max_epochs < 1:
            raise ValueError(f"max_epochs must be positive or None, got {max_epochs}")
        self.model = model
        self.batch_size = batch_size
        self.holdout_ratio = holdout_ratio
        self.max_holdout = max_holdout
        self.max_epochs = max_epochs
        self.patience = patience
        self.improvement_threshold = improvement_threshold
        self.optimizer = optimizer if optimizer is not None else th.optim.Adam(model.parameters(), lr=learning_rate)
        self.n_fits = 0  # completed fits, so observers (e.g. ModelDiagnosticsCallback) can tell a refit happened

    @property
    def device(self) -> th.device:
        return self.model.input_mean.device

    @property
    def min_transitions(self) -> int:
        """Fewest transitions :meth:`fit` accepts: one holdout row and one training row."""
        if self.holdout_ratio == 0:
            return 1
        return max(2, int(np.ceil(1 / self.holdout_ratio - 1e-9)))

    @th.no_grad()
    def holdout_mse(self, x: th.Tensor, y: th.Tensor, chunk: int = 8192) -> th.Tensor:
        """MSE of each member's mean on normalised data ``(N, in)``, ``(N, out)``: shape ``(E,)``."""
        total = th.zeros(self.model.ensemble_size, device=x.device)
        for start in range(0, x.shape[0], chunk):
            xb = x[start : start + chunk].unsqueeze(0).expand(self.model.ensemble_size, -1, -1)
            mean, _ = self.model(xb)
            total += (mean - y[start : start + chunk]).pow(2).sum(dim=(1, 2))
        return total / (x.shape[0] * y.shape[1])

    def fit(
        self,
        obs: ArrayLike,
        actions: ArrayLike,
        next_obs: ArrayLike,
        rewards: Optional[ArrayLike] = None,
        generator: Optional[th.Generator] = None,
        epoch_callback: Optional[Callable[[int, float, th.Tensor], None]] = None,
    ) -> Dict[str, Any]:
        """
        Fit the model on transitions.

        :param obs: ``(N, obs_dim)``
        :param actions: ``(N, action_dim)``
        :param next_obs: ``(N, obs_dim)``
        :param rewards: ``(N,)``; required when the model has a reward head.
        :param generator: CPU random generator for the split and the shuffles (default: torch's global one).
        :param epoch_callback: Called after each epoch with ``(epoch, train_loss, holdout_mse per member)``.
        :return: ``train_loss`` (last epoch, mean over members), ``holdout_mse`` (best per member,
            normalised targets), ``holdout_mse_elites`` (mean over elites), ``epochs``, ``elites``.
        """
        model = self.model
        device = self.device
        inputs, targets = make_training_data(model, obs, actions, next_obs, rewards, device)
        n_rows = inputs.shape[0]
        n_holdout = min(int(n_rows * self.holdout_ratio), self.max_holdout)
        if self.holdout_ratio > 0 and (n_holdout < 1 or n_rows - n_holdout < 1):
            raise ValueError(
                f"{n_rows} transition(s) are too few for a holdout split of {self.holdout_ratio}: "
                f"need at least {int(np.ceil(1 / self.holdout_ratio))}"
            )
        perm = th.randperm(n_rows, generator=generator).to(device)
        train_idx, holdout_idx = perm[n_holdout:], perm[:n_holdout]
        model.fit_normalizer(inputs[train_idx], targets[train_idx])
        x_all, y_all = model.normalize_inputs(inputs), model.normalize_targets(targets)
        x_train, y_train = x_all[train_idx], y_all[train_idx]
        # Without a holdout set, rank and stop on the training data itself.
        x_hold, y_hold = (x_all[holdout_idx], y_all[holdout_idx]) if n_holdout > 0 else (x_train, y_train)

        n_members, n_train = model.ensemble_size, x_train.shape[0]
        bootstrap = th.randint(n_train, (n_members, n_train), generator=generator)  # (E, n_train)
        params = [p for p in model.parameters() if p.shape[0] == n_members]
        best_params = [p.detach().clone() for p in params]
        best_mse = th.full((n_members,), float("inf"), device=device)

        epoch, since_improved, train_loss = 0, 0, float("nan")
        model.train()
        while True:
            order = th.argsort(th.rand(n_members, n_train, generator=generator), dim=1)
            epoch_idx = th.gather(bootstrap, 1, order).to(device)  # (E, n_train)
            losses = []
            for start in range(0, n_train, self.batch_size):
                batch = epoch_idx[:, start : start + self.batch_size]  # (E, b)
                loss = model.nll_loss(x_train[batch], y_train[batch]) + model.decay_loss()  # (E,)
                self.optimizer.zero_grad(set_to_none=True)
                loss.sum().backward()
                self.optimizer.step()
                losses.append(loss.detach())
            epoch += 1
            train_loss = float(th.stack(losses).mean())
            mse = self.holdout_mse(x_hold, y_hold)
            improved = (best_mse - mse) / best_mse.abs().clamp_min(1e-12) > self.improvement_threshold
            improved |= th.isinf(best_mse) & th.isfinite(mse)
            if bool(improved.any()):
                best_mse = th.where(improved, mse, best_mse)
                with th.no_grad():
                    for param, best in zip(params, best_params):
                        best[improved] = param[improved]
                since_improved = 0
            else:
                since_improved += 1
            if epoch_callback is not None:
                epoch_callback(epoch, train_loss, mse)
            if since_improved >= self.patience or (self.max_epochs is not None and epoch >= self.max_epochs):
                break
        with th.no_grad():
            for param, best in zip(params, best_params):
                param.copy_(best)
        model.eval()
        if not bool(th.isfinite(best_mse).all()):
            raise RuntimeError(f"Dynamics model training diverged: holdout MSE per member {best_mse.tolist()}")
        elites = th.argsort(best_mse)[: model.num_elites]
        model.elite_indices.copy_(elites.sort().values)
        self.n_fits += 1
        return {
            "train_loss": train_loss,
            "holdout_mse": best_mse.tolist(),
            "holdout_mse_elites": float(best_mse[elites].mean()),
            "epochs": epoch,
            "elites": model.elite_indices.tolist(),
            "n_train": n_train,
            "n_holdout": n_holdout,
        }


def fit_progress_printer(prefix: str, verbose: int, every: int = 10) -> Optional[Callable[[int, float, th.Tensor], None]]:
    """
    An ``epoch_callback`` for :meth:`EnsembleTrainer.fit` that shows the fit as it runs.

    A fit can take minutes (hundreds of epochs on a growing buffer), so at ``verbose=1`` the
    user sees the epoch, the training loss and the holdout MSE every ``every`` epochs (and on
    epoch 1); at ``verbose>=2`` every epoch.

    :param prefix: Start of each line, e.g. ``"PETS model"``.
    :param verbose: The algorithm's verbosity level; ``0`` returns ``None`` (print nothing).
    :param every: Epoch interval at ``verbose=1``.
    :return: The callback, or ``None`` when nothing is to be printed.
    """
    if verbose < 1:
        return None
    interval = 1 if verbose >= 2 else max(1, every)

    def show_epoch(epoch: int, train_loss: float, holdout_mse: th.Tensor) -> None:
        if epoch == 1 or epoch % interval == 0:
            print(
                f"{prefix} epoch {epoch}: train loss {train_loss:.4f}, "
                f"holdout MSE {holdout_mse.mean().item():.5f} (best member {holdout_mse.min().item():.5f})",
                flush=True,
            )

    return show_epoch
