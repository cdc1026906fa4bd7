"""Probabilistic ensemble: Gaussian mean and soft-bounded log-variance per member."""
from typing import Optional, Sequence, Tuple, Type

import torch as th
import torch.nn.functional as F
from torch import nn

from sb3_mbrl.dynamics.layers import EnsembleLinear
from sb3_mbrl.envs.types import ObsProcessFn

# Keeps a (near) constant dimension from dividing by zero; such dimensions get std 1.
_STD_FLOOR = 1e-6


def _fit_stats(data: th.Tensor) -> Tuple[th.Tensor, th.Tensor]:
    mean = data.mean(dim=0, keepdim=True)
    std = data.std(dim=0, keepdim=True, unbiased=False) if data.shape[0] > 1 else th.ones_like(mean)
    std = th.where(std < _STD_FLOOR, th.ones_like(std), std)
    return mean, std


def processed_obs_dim(obs_process_fn: Optional[ObsProcessFn], obs_dim: int) -> int:
    """
    Width ``d`` of what ``obs_process_fn`` makes of an observation, checked on a batch and on a
    batch per member (the ensemble calls it on ``(B, obs_dim)`` and ``(E, B, obs_dim)``).

    :raises ValueError: If it does not return a float tensor ``(..., d)`` with the same leading shape.
    """
    if obs_process_fn is None:
        return obs_dim
    name = getattr(obs_process_fn, "__name__", obs_process_fn)
    widths = set()
    for lead in ((3,), (2, 3)):
        out = obs_process_fn(th.zeros(*lead, obs_dim))
        if not isinstance(out, th.Tensor) or not out.is_floating_point() or tuple(out.shape[:-1]) != lead or out.shape[-1] < 1:
            got = f"{type(out).__name__} {tuple(out.shape)}" if isinstance(out, th.Tensor) else type(out).__name__
            raise ValueError(
                f"obs_process_fn {name!r} must map obs (..., {obs_dim}) to a float tensor (..., d) with the "
                f"same leading dimensions; for {(*lead, obs_dim)} it returned {got}"
            )
        widths.add(out.shape[-1])
    if len(widths) != 1:
        raise ValueError(f"obs_process_fn {name!r} returned different widths {sorted(widths)} for a batch and a batch per member")
    return widths.pop()


class ProbabilisticEnsemble(nn.Module):
    """
    Ensemble of Gaussian MLPs predicting ``[next_obs - obs, reward]`` from ``[obs, action]``
    (``[obs_process_fn(obs), action]`` when given).

    Inputs and targets are normalised with statistics fitted on the training data
    (:meth:`fit_normalizer`); the statistics are buffers, so they are saved with ``state_dict``.
    The network works in normalised units; :meth:`predict` converts back to raw units.

    :param obs_dim: Observation size.
    :param action_dim: Action size.
    :param ensemble_size: Number of members ``E``.
    :param hidden_sizes: Width of each hidden layer.
    :param activation_fn: Activation between layers (SiLU is the "Swish" of the PETS paper).
    :param learn_reward: Whether the last output is a reward head.
    :param num_elites: How many members are used for prediction after a fit.
    :param weight_decays: One L2 coefficient per layer (hidden layers then the output layer).
    :param init_max_logvar: Initial upper soft bound of the log-variance.
    :param init_min_logvar: Initial lower soft bound of the log-variance.
    :param learn_logvar_bounds: Whether the bounds are trained (as in the original PETS/MBPO code).
    :param logvar_penalty: Coefficient of ``sum(max_logvar) - sum(min_logvar)`` in the loss.
    :param obs_process_fn: What the network reads of an observation, ``obs (..., obs_dim) ->
        (..., d)`` (e.g. :func:`sb3_mbrl.envs.model_inputs.drop_cart_position`); the targets stay
        the change of the whole observation. ``None`` reads all of it.
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        ensemble_size: int = 5,
        hidden_sizes: Sequence[int] = (200, 200, 200, 200),
        activation_fn: Type[nn.Module] = nn.SiLU,
        learn_reward: bool = True,
        num_elites: Optional[int] = None,
        weight_decays: Optional[Sequence[float]] = None,
        init_max_logvar: float = 0.5,
        init_min_logvar: float = -10.0,
        learn_logvar_bounds: bool = True,
        logvar_penalty: float = 0.01,
        obs_process_fn: Optional[ObsProcessFn] = None,
    ) -> None:
        super().__init__()
        if obs_dim < 1 or action_dim < 1:
            raise ValueError(f"obs_dim and action_dim must be positive, got {obs_dim} and {action_dim}")
        if ensemble_size < 1:
            raise ValueError(f"ensemble_size must be at least 1, got {ensemble_size}")
        num_elites = ensemble_size if num_elites is None else num_elites
        if not 1 <= num_elites <= ensemble_size:
            raise ValueError(f"num_elites must be in [1, ensemble_size={ensemble_size}], got {num_elites}")
        if len(hidden_sizes) < 1:
            raise ValueError("hidden_sizes needs at least one layer")
        self.obs_process_fn = obs_process_fn
        self.processed_obs_dim = processed_obs_dim(obs_process_fn, obs_dim)
        sizes = [self.processed_obs_dim + action_dim, *hidden_sizes]
        if weight_decays is None:
            weight_decays = [0.0] * len(sizes)
        if len(weight_decays) != len(sizes):
            raise ValueError(f"weight_decays needs {len(sizes)} entries (hidden layers + output), got {len(weight_decays)}")

        self.obs_dim = obs_dim
        self.action_dim = action_dim
        self.ensemble_size = ensemble_size
        self.num_elites = num_elites
        self.learn_reward = learn_reward
        self.logvar_penalty = logvar_penalty
        self.input_dim = self.processed_obs_dim + action_dim
        self.output_dim = obs_dim + int(learn_reward)

        self.hidden_layers = nn.ModuleList(
            EnsembleLinear(ensemble_size, n_in, n_out, wd) for n_in, n_out, wd in zip(sizes[:-1], sizes[1:], weight_decays)
        )
        self.activation = activation_fn()
        # One layer outputs mean and raw log-variance together: (E, B, 2 * out).
        self.output_layer = EnsembleLinear(ensemble_size, sizes[-1], 2 * self.output_dim, weight_decays[-1])
        self.max_logvar = nn.Parameter(
            th.full((ensemble_size, 1, self.output_dim), float(init_max_logvar)), requires_grad=learn_logvar_bounds
        )
        self.min_logvar = nn.Parameter(
            th.full((ensemble_size, 1, self.output_dim), float(init_min_logvar)), requires_grad=learn_logvar_bounds
        )

        self.register_buffer("input_mean", th.zeros(1, self.input_dim))
        self.register_buffer("input_std", th.ones(1, self.input_dim))
        self.register_buffer("target_mean", th.zeros(1, self.output_dim))
        self.register_buffer("target_std", th.ones(1, self.output_dim))
        self.register_buffer("elite_indices", th.arange(num_elites))

    # ------------------------------------------------------------------ normalisation
    def fit_normalizer(self, inputs: th.Tensor, targets: th.Tensor) -> None:
        """Fit input and target mean/std on raw training data ``(N, in)`` and ``(N, out)``."""
        in_mean, in_std = _fit_stats(inputs)
        out_mean, out_std = _fit_stats(targets)
        self.input_mean.copy_(in_mean)
        self.input_std.copy_(in_std)
        self.target_mean.copy_(out_mean)
        self.target_std.copy_(out_std)

    @property
    def normalizer_fitted(self) -> bool:
        """Whether :meth:`fit_normalizer` has set the statistics (they are no longer mean 0, std 1)."""
        initial = (
            bool((self.input_mean == 0).all())
            and bool((self.input_std == 1).all())
            and bool((self.target_mean == 0).all())
            and bool((self.target_std == 1).all())
        )
        return not initial

    @th.no_grad()
    def refit_normalizer_keeping_predictions(self, inputs: th.Tensor, targets: th.Tensor) -> None:
        """
        Fit the normaliser on new raw data ``(N, in)``, ``(N, out)`` and re-express the weights
        so that the model predicts exactly what it did before (in raw units).

        A warm start under a refitted normaliser otherwise begins from a different function:
        every input moves by the change of the statistics, and the first epochs of the new fit
        are spent undoing that instead of learning the new data. The first layer absorbs the
        input change (``W' = diag(s'/s) W``, ``b' = b + ((m' - m) / s) W``); the output layer
        the target change of the mean (``(t / t')`` and ``(mu - mu') / t'``) and of the
        log-variance (``+ 2 log(t / t')``, which the soft bounds shift with, so the bounded
        log-variance moves by exactly that).

        :param inputs: Raw training inputs ``[obs, action]``.
        :param targets: Raw training targets ``[next_obs - obs, reward]``.
        """
        old_in_mean, old_in_std = self.input_mean.clone(), self.input_std.clone()  # (1, in)
        old_out_mean, old_out_std = self.target_mean.clone(), self.target_std.clone()  # (1, out)
        self.fit_normalizer(inputs, targets)
        first = self.hidden_layers[0]
        scale_in = (self.input_std / old_in_std).reshape(-1, 1)  # (in, 1)
        shift_in = (self.input_mean - old_in_mean) / old_in_std  # (1, in)
        first.bias.add_(th.matmul(shift_in, first.weight))  # (E, 1, hidden): old weights
        first.weight.mul_(scale_in)  # (E, in, hidden)
        out = self.output_layer
        dim = self.output_dim
        ratio = old_out_std / self.target_std  # (1, out)
        out.weight[..., :dim].mul_(ratio)  # mean columns (E, hidden, out)
        out.bias[..., :dim].mul_(ratio).add_((old_out_mean - self.target_mean) / self.target_std)
        logvar_shift = 2.0 * th.log(ratio)  # (1, out)
        out.bias[..., dim:].add_(logvar_shift)
        self.max_logvar.add_(logvar_shift)
        self.min_logvar.add_(logvar_shift)

    def model_inputs(self, obs: th.Tensor, actions: th.Tensor) -> th.Tensor:
        """Raw network inputs ``[obs_process_fn(obs), actions]`` ``(..., input_dim)`` of ``obs (..., obs_dim)``."""
        if self.obs_process_fn is not None:
            obs = self.obs_process_fn(obs)
        return th.cat([obs, actions], dim=-1)

    def normalize_inputs(self, inputs: th.Tensor) -> th.Tensor:
        return (inputs - self.input_mean) / self.input_std

    def normalize_targets(self, targets: th.Tensor) -> th.Tensor:
        return (targets - self.target_mean) / self.target_std

    # ------------------------------------------------------------------ network
    def forward(self, x: th.Tensor, members: Optional[th.Tensor] = None) -> Tuple[th.Tensor, th.Tensor]:
        """
        :param x: Normalised inputs ``(E', B, in)``.
        :param members: Optional member indices (``E'`` of them); all members when ``None``.
        :return: Normalised mean and log-variance, each ``(E', B, out)``.
        """
        for layer in self.hidden_layers:
            x = self.activation(layer(x, members))
        # (E', B, 2 * out) in the parameters' dtype: under autocast the product is bf16; the bounds and loss need float32
        out = self.output_layer(x, members).to(self.max_logvar.dtype)
        mean, raw_logvar = out[..., : self.output_dim], out[..., self.output_dim :]
        max_lv = self.max_logvar if members is None else self.max_logvar[members]
        min_lv = self.min_logvar if members is None else self.min_logvar[members]
        logvar = max_lv - F.softplus(max_lv - raw_logvar)
        logvar = min_lv + F.softplus(logvar - min_lv)
        return mean, logvar

    def decay_loss(self) -> th.Tensor:
        """Per-member weight decay, shape ``(E,)``."""
        return sum(layer.decay_loss() for layer in (*self.hidden_layers, self.output_layer))  # type: ignore[return-value]

    def nll_loss(self, x: th.Tensor, y: th.Tensor) -> th.Tensor:
        """
        Gaussian negative log-likelihood per member (mean over batch and dims, constant dropped)
        plus the log-variance bound penalty.

        :param x: Normalised inputs ``(E, B, in)``.
        :param y: Normalised targets ``(E, B, out)``.
        :return: Loss per member ``(E,)``.
        """
        mean, logvar = self(x)
        nll = ((mean - y).pow(2) * th.exp(-logvar) + logvar).mean(dim=(1, 2))  # (E,)
        bound = self.max_logvar.sum(dim=(1, 2)) - self.min_logvar.sum(dim=(1, 2))  # (E,)
        return nll + self.logvar_penalty * bound

    # ------------------------------------------------------------------ prediction
    def predict(
        self, obs: th.Tensor, actions: th.Tensor, members: Optional[th.Tensor] = None
    ) -> Tuple[th.Tensor, th.Tensor]:
        """
        Raw-unit prediction of ``[next_obs - obs, reward]``.

        :param obs: ``(E', B, obs_dim)`` or ``(B, obs_dim)`` (then broadcast to every member used).
        :param actions: Same leading shape as ``obs`` with ``action_dim`` last.
        :param members: Member indices to use; all members when ``None``.
        :return: Mean and variance in raw units, each ``(E', B, out)``.
        """
        x = self.normalize_inputs(self.model_inputs(obs, actions))
        if x.dim() == 2:
            n_members = self.ensemble_size if members is None else len(members)
            x = x.unsqueeze(0).expand(n_members, -1, -1)
        mean, logvar = self(x, members)
        return mean * self.target_std + self.target_mean, logvar.exp() * self.target_std.pow(2)
