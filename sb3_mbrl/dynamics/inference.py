"""Inference-only ensemble forward: weights cast once, activations written into reused buffers."""
import functools
import warnings
from typing import Dict, List, Optional, Tuple, Union

import torch as th
import torch.nn.functional as F
from torch import nn

from sb3_mbrl.dynamics.ensemble import ProbabilisticEnsemble


def _parameter_versions(model: ProbabilisticEnsemble) -> Tuple[Tuple[int, int], ...]:
    """Identity and in-place version of every tensor the forward reads: changes after any optimiser
    step, ``load_state_dict``, normaliser refit or elite update."""
    tensors = [*model.parameters(), *model.buffers()]
    return tuple((t.data_ptr(), t._version) for t in tensors)


@functools.lru_cache(maxsize=None)
def cpu_capabilities() -> Dict[str, object]:
    """The CPU's features as torch detects them (``{}`` on a torch without ``torch.cpu.get_capabilities``)."""
    return dict(th.cpu.get_capabilities()) if hasattr(th.cpu, "get_capabilities") else {}


def _cpu_has_bf16_units() -> bool:
    capabilities = cpu_capabilities()
    return bool(capabilities.get("avx512_bf16") or capabilities.get("amx_bf16"))


def has_fast_bfloat16(device: th.device) -> bool:
    """
    Whether bfloat16 matrix products run natively on ``device``: a CUDA GPU that supports them, or
    a CPU with AVX512-BF16 or AMX-BF16 units. Elsewhere torch emulates bf16 and a bf16 product is
    far slower than a float32 one (20x at 5 x 2,000 x 200 x 200 on an AVX2-only AMD EPYC).
    """
    device = th.device(device)
    if device.type == "cuda":
        return th.cuda.is_available() and th.cuda.is_bf16_supported()
    if device.type == "cpu":
        return _cpu_has_bf16_units()
    return False


def warn_emulated_bf16(work: str, device: th.device, param: str, stacklevel: int) -> None:
    """
    Warn that ``work`` (``"planning"``, ``"model fits"``) runs in bfloat16 on a device without native
    bf16 matrix units, where torch emulates them.

    :param work: What runs in bf16.
    :param device: Where.
    :param param: The argument that chose bf16, named in the advice.
    :param stacklevel: ``warnings.warn``'s, counted from the caller of this function.
    """
    warnings.warn(
        f"bfloat16 {work} on {device.type}, which has no native bf16 matrix units: torch emulates them, "
        f"far slower than float32 (20x for a planning step on an AVX2-only CPU). "
        f"Use {param}='auto' (bf16 only where it is fast) or 'float32'.",
        UserWarning,
        stacklevel=stacklevel + 1,
    )


def resolve_compute_dtype(compute_dtype: Union[None, str, th.dtype], device: th.device) -> th.dtype:
    """
    The dtype to compute in on ``device``: ``"auto"`` is bfloat16 where it runs natively
    (:func:`has_fast_bfloat16`) and float32 elsewhere; ``None`` is float32; a dtype is kept.
    """
    if compute_dtype is None:
        return th.float32
    if isinstance(compute_dtype, str):
        if compute_dtype != "auto":
            raise ValueError(f"compute_dtype must be a torch dtype, None or 'auto', got {compute_dtype!r}")
        return th.bfloat16 if has_fast_bfloat16(device) else th.float32
    return compute_dtype


# The names of ``planning_dtype`` (PETS, LOOP) and ``model_fit_dtype`` (PETS, MBPO, LOOP) as ``compute_dtype`` values.
DTYPE_NAMES: Dict[str, Union[None, str, th.dtype]] = {"float32": None, "bfloat16": th.bfloat16, "auto": "auto"}


def compute_dtype_of_name(name: str, param: str = "planning_dtype") -> Union[None, str, th.dtype]:
    """
    The ``compute_dtype`` of a dtype name (``"float32"``, ``"bfloat16"``, ``"auto"``).

    :param name: The name.
    :param param: The argument it was given as, for the error on an unknown name.
    """
    if name not in DTYPE_NAMES:
        raise ValueError(f"{param} must be one of {sorted(DTYPE_NAMES)}, got {name!r}")
    return DTYPE_NAMES[name]


def planning_compute_dtype(planning_dtype: str) -> Union[None, str, th.dtype]:
    """The ``compute_dtype`` of a ``planning_dtype`` name (``"float32"``, ``"bfloat16"``, ``"auto"``)."""
    return compute_dtype_of_name(planning_dtype, "planning_dtype")


class EnsembleInference:
    """
    The forward of a :class:`ProbabilisticEnsemble` for planning and model rollouts, where the same
    weights serve thousands of calls between two fits.

    ``ProbabilisticEnsemble.forward`` under autocast re-casts every weight at every call, gathers the
    elites' weights at every layer when they are not all members, and allocates fresh activations
    (large allocations are fresh pages, so every call pays page faults). Here the chosen members'
    weights are gathered and cast once (again only when a parameter, buffer or the elite set
    changes), each layer writes into a buffer kept per batch shape, and the activation runs in place.
    Normalisation and the log-variance bounds stay in float32, as under autocast.

    :param model: The ensemble (read, never modified).
    :param compute_dtype: Dtype of the matrix products and activations (``None``: float32;
        ``"auto"``: bfloat16 on a device where it runs natively, float32 elsewhere). An explicit
        bfloat16 on a device without native bf16 warns once: it runs, but far slower than float32.
    """

    def __init__(self, model: ProbabilisticEnsemble, compute_dtype: Union[None, str, th.dtype] = None) -> None:
        self.model = model
        self.requested_dtype = compute_dtype
        self.compute_dtype = resolve_compute_dtype(compute_dtype, model.input_mean.device)
        self._warned_slow_bf16 = False
        self._device: Optional[th.device] = None  # the device compute_dtype was resolved for
        self._key: Optional[tuple] = None
        self._weights: List[Tuple[th.Tensor, th.Tensor]] = []  # per layer: (E', in, out), (E', 1, out)
        self._logvar_bounds: Tuple[th.Tensor, th.Tensor] = (th.empty(0), th.empty(0))
        self._buffers: Dict[tuple, List[th.Tensor]] = {}

    def _prepare(self, members: Optional[th.Tensor]) -> None:
        model = self.model
        # Identity, not values: reading the indices would sync a GPU at every call.
        member_key = None if members is None else (members.data_ptr(), members._version, tuple(members.shape))
        key = (member_key, _parameter_versions(model), self.compute_dtype)
        if key == self._key:
            return
        layers = [*model.hidden_layers, model.output_layer]
        select = (lambda t: t) if members is None else (lambda t: t[members])  # noqa: E731
        with th.no_grad():
            # copy=True: with the dtype unchanged .to() would return the parameter itself, which a
            # later in-place optimiser step would alter behind the version key.
            self._weights = [
                (select(layer.weight).to(self.compute_dtype, copy=True), select(layer.bias).to(self.compute_dtype, copy=True))
                for layer in layers
            ]
            self._logvar_bounds = (select(model.max_logvar).detach().clone(), select(model.min_logvar).detach().clone())
        self._buffers.clear()
        self._key = key

    def _set_device_dtype(self, device: th.device) -> None:
        """Resolve the dtype for the device the inputs are on (the model may have moved since)."""
        if device == self._device:
            return
        self._device = device
        self.compute_dtype = resolve_compute_dtype(self.requested_dtype, device)
        if self.compute_dtype == th.bfloat16 and not self._warned_slow_bf16 and not has_fast_bfloat16(device):
            self._warned_slow_bf16 = True
            warn_emulated_bf16("planning", device, "planning_dtype", stacklevel=5)

    def _layer_buffers(self, n_members: int, n_rows: int, device: th.device) -> List[th.Tensor]:
        shape = (n_members, n_rows)
        buffers = self._buffers.get(shape)
        if buffers is None:
            buffers = [th.empty(n_members, n_rows, w.shape[-1], dtype=self.compute_dtype, device=device) for w, _ in self._weights]
            self._buffers[shape] = buffers
        return buffers

    @th.no_grad()
    def predict(
        self, obs: th.Tensor, actions: th.Tensor, members: Optional[th.Tensor] = None
    ) -> Tuple[th.Tensor, th.Tensor]:
        """
        Raw-unit mean and variance of ``[next_obs - obs, reward]``, as :meth:`ProbabilisticEnsemble.predict`
        gives them, in float32.

        :param obs: ``(E', G, obs_dim)``: ``G`` rows for each of the ``E'`` members used.
        :param actions: ``(E', G, action_dim)``.
        :param members: Member indices (``E'`` of them); all members when ``None``.
        :return: Mean and variance, each ``(E', G, out)``.
        """
        model = self.model
        self._set_device_dtype(obs.device)
        self._prepare(members)
        n_members, n_rows = obs.shape[0], obs.shape[1]
        x = model.normalize_inputs(model.model_inputs(obs, actions)).to(self.compute_dtype)  # (E', G, in)
        buffers = self._layer_buffers(n_members, n_rows, obs.device)
        n_hidden = len(buffers) - 1
        inplace_activation = isinstance(model.activation, nn.SiLU)
        # float32 on a CPU: one addmm per member beats the batched product by 5-10% (MKL's sgemm
        # against its batched path, measured at 5 x 2,000 rows x 200 wide); bf16 is the other way round.
        per_member = obs.device.type == "cpu" and self.compute_dtype == th.float32
        for i, ((weight, bias), out) in enumerate(zip(self._weights, buffers)):
            if per_member:
                for member in range(n_members):
                    th.addmm(bias[member], x[member], weight[member], out=out[member])  # (G, width)
                x = out
            else:
                x = th.baddbmm(bias, x, weight, out=out)  # (E', G, width)
            if i < n_hidden:
                x = F.silu(x, inplace=True) if inplace_activation else model.activation(x)
        out = x.float()  # (E', G, 2 * out)
        dim = model.output_dim
        mean, raw_logvar = out[..., :dim], out[..., dim:]
        max_lv, min_lv = self._logvar_bounds
        logvar = max_lv - F.softplus(max_lv - raw_logvar)
        logvar = min_lv + F.softplus(logvar - min_lv)
        return mean * model.target_std + model.target_mean, logvar.exp() * model.target_std.pow(2)
