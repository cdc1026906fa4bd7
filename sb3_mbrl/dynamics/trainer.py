"""Fitting the ensemble: holdout split, bootstrap per member, early stopping, elites."""
import time
from typing import Any, Callable, Dict, List, Optional, Union

import numpy as np
import torch as th

from sb3_mbrl.dynamics.ensemble import ProbabilisticEnsemble
from sb3_mbrl.dynamics.inference import has_fast_bfloat16, resolve_compute_dtype, warn_emulated_bf16

# Devices where torch's Adam has a fused kernel (one per step instead of a loop over the parameters).
FUSED_ADAM_DEVICE_TYPES = frozenset({"cpu", "cuda"})

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
    Check shapes and values and build ``inputs = [obs, action]`` (``[obs_process_fn(obs), action]``
    when the model has one, :meth:`ProbabilisticEnsemble.model_inputs`) and
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
    inputs = model.model_inputs(obs_t, act_t)  # (N, input_dim)
    targets = next_t - obs_t  # (N, obs_dim)
    if model.learn_reward:
        targets = th.cat([targets, parts["rewards"]], dim=1)  # (N, obs_dim + 1)
    return inputs, targets


class EnsembleTrainer:
    """
    Trains a :class:`ProbabilisticEnsemble` with Gaussian NLL, one fit per call of :meth:`fit`,
    so that every fit ends at a holdout error no worse than where it started.

    Each fit

    - keeps its **holdout rows fixed across fits**: a row held out once stays held out (new rows
      are split at ``holdout_ratio``), so the holdout error of a warm start is measured on data
      the model never trained on and the fits of a run compare on the same footing;
    - **refits the normaliser without changing the model's predictions** (the weights are
      re-expressed in the new units, :meth:`ProbabilisticEnsemble.refit_normalizer_keeping_predictions`),
      so a warm start starts from the model the previous fit ended with;
    - gives every member its own bootstrap resample of the training rows;
    - starts Adam's moment estimates afresh (the optimiser and its learning rate stay): with the
      moments carried over from the end of the previous fit, refits on new data stalled near their
      starting error until patience ended them (README, "Model fits");
    - ramps the learning rate up over the fit's first ``lr_warmup_updates`` gradient steps: a
      fresh Adam's first steps move every weight by about the learning rate whatever the
      gradient, which threw near-converged warm starts 2x-50x off in a refit's first epoch;
    - measures the holdout MSE of the starting weights, then trains in mini-batches and keeps,
      per member, the best weights seen, the starting ones included (any gain on them counts);
    - stops when no member's **trained** weights improved by a relative ``improvement_threshold``
      on their holdout MSE at that member's last counted improvement for ``patience`` epochs
      **and** ``min_updates`` gradient steps, or at ``max_epochs`` / ``max_seconds``. Patience
      follows the trained weights, not the start, so a refit that begins above its start and then
      recovers is not cut off for not yet beating it (on PETS Pendulum such refits ended at the
      minimum of updates and kept their start, so the model stopped learning new episodes); small
      gains add up until they pass the threshold. On small data an epoch is one or two
      mini-batches, and patience in epochs alone would stop a fit after a handful of updates;
    - restores each member's best weights and ranks the members to pick the elites.

    The weights persist across fits (warm start, as in the PETS and MBPO code); with
    ``reset_optimizer_state=False`` Adam's moments do too.

    :param model: The ensemble.
    :param learning_rate: Adam learning rate.
    :param batch_size: Mini-batch size per member.
    :param holdout_ratio: Share of rows held out for early stopping and elite ranking.
    :param max_holdout: Cap on the number of holdout rows.
    :param max_epochs: Upper bound on epochs per fit (``None``: no bound).
    :param patience: Epochs without an improvement of the trained weights before stopping.
    :param min_updates: Gradient steps without improvement before stopping (with ``patience``);
        also the fewest gradient steps of a fit that does not hit ``max_epochs`` / ``max_seconds``.
    :param max_seconds: Wall-clock cap on one fit (``None``: no cap); the fit ends after the
        epoch that passes it.
    :param improvement_threshold: Relative holdout MSE improvement of the trained weights that resets patience.
    :param optimizer: An existing optimiser over the model's parameters (default: a new Adam, fused on CPU and CUDA).
    :param reset_optimizer_state: Clear the optimiser's state (Adam's moments) at the start of each fit.
    :param lr_warmup_updates: Ramp the learning rate linearly from ``lr / n`` to ``lr`` over the
        first ``n`` gradient steps of each fit (0: none). A fresh Adam moves every weight by about
        ``lr`` in its first steps whatever the gradient, which can throw a near-converged warm
        start far off; the optimiser's own learning rate is restored when the ramp ends. With
        ``reset_optimizer_state=False`` the moments carry over and a ramp matters less.
    :param compute_dtype: Dtype of the training forward and backward's matrix products (autocast):
        ``None`` is float32; ``"auto"`` is bfloat16 where it runs natively (a CPU with AVX512-BF16
        or AMX-BF16, a CUDA GPU that supports it) and float32 elsewhere; or a torch dtype. The
        weights, Adam's moments, the log-variance bounds, the loss and the holdout errors that stop
        the fit and pick the kept weights stay in float32, so a bf16 fit still ends no worse than its start.
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
        min_updates: int = 100,
        max_seconds: Optional[float] = None,
        improvement_threshold: float = 0.01,
        optimizer: Optional[th.optim.Optimizer] = None,
        reset_optimizer_state: bool = True,
        lr_warmup_updates: int = 50,
        compute_dtype: Union[None, str, th.dtype] = None,
    ) -> None:
        if not 0.0 <= holdout_ratio < 1.0:
            raise ValueError(f"holdout_ratio must be in [0, 1), got {holdout_ratio}")
        if batch_size < 1 or patience < 1:
            raise ValueError("batch_size and patience must be positive")
        if max_epochs is not None and max_epochs < 1:
            raise ValueError(f"max_epochs must be positive or None, got {max_epochs}")
        if min_updates < 0:
            raise ValueError(f"min_updates must be >= 0, got {min_updates}")
        if lr_warmup_updates < 0:
            raise ValueError(f"lr_warmup_updates must be >= 0, got {lr_warmup_updates}")
        if max_seconds is not None and not max_seconds > 0:
            raise ValueError(f"max_seconds must be positive or None, got {max_seconds}")
        self.model = model
        self.batch_size = batch_size
        self.holdout_ratio = holdout_ratio
        self.max_holdout = max_holdout
        self.max_epochs = max_epochs
        self.patience = patience
        self.min_updates = min_updates
        self.max_seconds = max_seconds
        self.improvement_threshold = improvement_threshold
        if optimizer is None:
            fused = model.input_mean.device.type in FUSED_ADAM_DEVICE_TYPES  # one kernel per step, same update
            optimizer = th.optim.Adam(model.parameters(), lr=learning_rate, fused=fused or None)
        self.optimizer = optimizer
        self.reset_optimizer_state = reset_optimizer_state
        self.lr_warmup_updates = lr_warmup_updates
        self.compute_dtype = resolve_compute_dtype(compute_dtype, self.device)
        self._warned_slow_bf16 = False
        if self.compute_dtype not in (th.float32, th.bfloat16):
            raise ValueError(f"compute_dtype must resolve to float32 or bfloat16, got {self.compute_dtype}")
        self.n_fits = 0  # completed fits, so observers (e.g. ModelDiagnosticsCallback) can tell a refit happened
        # (N_seen,) on the CPU: which row positions are held out; rows keep their role across fits.
        self._holdout_rows = th.zeros(0, dtype=th.bool)

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

    def _split(self, n_rows: int, generator: Optional[th.Generator]) -> th.Tensor:
        """
        Holdout mask ``(n_rows,)`` of this fit. Rows seen by earlier fits keep their role; new
        rows are held out so that the total is ``int(n_rows * holdout_ratio)`` (at most
        ``max_holdout``). Fewer rows than last time means other data: a fresh split.
        """
        n_holdout = min(int(n_rows * self.holdout_ratio), self.max_holdout)
        if self.holdout_ratio > 0 and (n_holdout < 1 or n_rows - n_holdout < 1):
            raise ValueError(
                f"{n_rows} transition(s) are too few for a holdout split of {self.holdout_ratio}: "
                f"need at least {int(np.ceil(1 / self.holdout_ratio))}"
            )
        seen = self._holdout_rows
        if seen.shape[0] > n_rows:
            seen = th.zeros(0, dtype=th.bool)
        n_new = n_rows - seen.shape[0]
        new_rows = th.zeros(n_new, dtype=th.bool)
        n_new_holdout = min(max(n_holdout - int(seen.sum()), 0), n_new)
        new_rows[th.randperm(n_new, generator=generator)[:n_new_holdout]] = True
        self._holdout_rows = th.cat([seen, new_rows])
        return self._holdout_rows

    def _scale_lr(self, base_lrs: List[float], scale: float) -> None:
        for group, base in zip(self.optimizer.param_groups, base_lrs):
            group["lr"] = base * scale

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
            normalised targets), ``holdout_mse_elites`` (mean over elites), ``holdout_mse_mean``
            (mean over members), ``start_holdout_mse_mean`` (the starting weights', mean over members,
            in the same units), ``epochs``, ``gradient_steps``, ``members_improved`` (members that
            ended on trained weights rather than their starting ones), ``stop_reason`` (``"patience"``,
            ``"max_epochs"`` or ``"max_seconds"``), ``fit_seconds``, ``elites``, ``n_train``, ``n_holdout``.
        """
        started = time.perf_counter()
        model = self.model
        device = self.device
        if self.compute_dtype == th.bfloat16 and not self._warned_slow_bf16 and not has_fast_bfloat16(device):
            self._warned_slow_bf16 = True
            warn_emulated_bf16("model fits", device, "model_fit_dtype", stacklevel=2)
        inputs, targets = make_training_data(model, obs, actions, next_obs, rewards, device)
        n_rows = inputs.shape[0]
        is_holdout = self._split(n_rows, generator).to(device)
        train_idx, holdout_idx = th.nonzero(~is_holdout).squeeze(1), th.nonzero(is_holdout).squeeze(1)
        n_holdout = int(holdout_idx.shape[0])
        if model.normalizer_fitted:
            model.refit_normalizer_keeping_predictions(inputs[train_idx], targets[train_idx])
        else:
            model.fit_normalizer(inputs[train_idx], targets[train_idx])
        x_all, y_all = model.normalize_inputs(inputs), model.normalize_targets(targets)
        x_train, y_train = x_all[train_idx], y_all[train_idx]
        # Without a holdout set, rank and stop on the training data itself.
        x_hold, y_hold = (x_all[holdout_idx], y_all[holdout_idx]) if n_holdout > 0 else (x_train, y_train)

        n_members, n_train = model.ensemble_size, x_train.shape[0]
        bootstrap = th.randint(n_train, (n_members, n_train), generator=generator)  # (E, n_train)
        params = [p for p in model.parameters() if p.shape[0] == n_members]
        best_params = [p.detach().clone() for p in params]
        start_mse = self.holdout_mse(x_hold, y_hold)  # (E,): the warm start is a candidate too
        best_mse = th.where(th.isfinite(start_mse), start_mse, th.full_like(start_mse, float("inf")))
        start_best = best_mse.clone()  # best_mse only falls on a strict gain: below this, a member left its start
        # (E,) the trained weights' holdout MSE at each member's last counted improvement. Patience
        # follows it, not best_mse (which includes the start), so a fit whose first steps throw the
        # warm start off keeps going while it recovers; it moves only on a gain above the threshold,
        # so slow steady gains add up over the patience window.
        trained_ref = th.full_like(start_mse, float("inf"))

        if self.reset_optimizer_state:
            self.optimizer.state.clear()  # Adam re-creates its moments at the next step
        epoch, updates, since_improved, updates_since_improved = 0, 0, 0, 0
        train_loss, stop_reason = float("nan"), "patience"
        base_lrs = [group["lr"] for group in self.optimizer.param_groups]
        model.train()
        try:
            while True:
                order = th.argsort(th.rand(n_members, n_train, generator=generator), dim=1)
                epoch_idx = th.gather(bootstrap, 1, order).to(device)  # (E, n_train)
                losses = []
                for start in range(0, n_train, self.batch_size):
                    batch = epoch_idx[:, start : start + self.batch_size]  # (E, b)
                    with th.autocast(device.type, dtype=self.compute_dtype, enabled=self.compute_dtype != th.float32):
                        loss = model.nll_loss(x_train[batch], y_train[batch])  # (E,), float32 (the forward casts its output)
                    loss = loss + model.decay_loss()
                    self.optimizer.zero_grad(set_to_none=True)
                    loss.sum().backward()
                    step = updates + len(losses)  # gradient steps of this fit before this one
                    if self.lr_warmup_updates and step <= self.lr_warmup_updates:  # the step after the ramp: full rate
                        self._scale_lr(base_lrs, min(1.0, (step + 1) / self.lr_warmup_updates))
                    self.optimizer.step()
                    losses.append(loss.detach())
                epoch += 1
                updates += len(losses)
                train_loss = float(th.stack(losses).mean())
                mse = self.holdout_mse(x_hold, y_hold)
                # The restore keeps each member's best weights, the start included: any gain counts.
                better = mse < best_mse
                if bool(better.any()):
                    best_mse = th.where(better, mse, best_mse)
                    with th.no_grad():
                        for param, best in zip(params, best_params):
                            best[better] = param[better]
                # Patience: a member's trained weights beat their error at its last counted gain by the threshold.
                progressed = (trained_ref - mse) / trained_ref.abs().clamp_min(1e-12) > self.improvement_threshold
                progressed |= th.isinf(trained_ref) & th.isfinite(mse)
                trained_ref = th.where(progressed, mse, trained_ref)
                if bool(progressed.any()):
                    since_improved, updates_since_improved = 0, 0
                else:
                    since_improved += 1
                    updates_since_improved += len(losses)
                if epoch_callback is not None:
                    epoch_callback(epoch, train_loss, mse)
                if since_improved >= self.patience and updates_since_improved >= self.min_updates:
                    break
                if self.max_epochs is not None and epoch >= self.max_epochs:
                    stop_reason = "max_epochs"
                    break
                if self.max_seconds is not None and time.perf_counter() - started >= self.max_seconds:
                    stop_reason = "max_seconds"
                    break
        finally:
            self._scale_lr(base_lrs, 1.0)  # the optimiser's own learning rate, also after an error
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
            "holdout_mse_mean": float(best_mse.mean()),
            "start_holdout_mse_mean": float(start_mse.mean()),
            "epochs": epoch,
            "gradient_steps": updates,
            "members_improved": int((best_mse < start_best).sum()),
            "stop_reason": stop_reason,
            "fit_seconds": time.perf_counter() - started,
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
