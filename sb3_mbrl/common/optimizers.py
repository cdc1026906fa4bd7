"""Optimiser settings shared by the algorithms: fused Adam where torch has it."""
from typing import Any, Dict

import torch as th

from sb3_mbrl.dynamics.trainer import FUSED_ADAM_DEVICE_TYPES

# The per-parameter loop of the default Adam costs a tenth of a SAC update at MBPO's sizes
# (README, "MBPO speed"); the fused kernel is the same update.
FUSABLE_OPTIMIZERS = (th.optim.Adam, th.optim.AdamW)


def with_fused_adam(policy_kwargs: Dict[str, Any], device: th.device) -> Dict[str, Any]:
    """
    ``policy_kwargs`` whose optimiser runs fused: ``optimizer_kwargs["fused"] = True`` when the
    optimiser is SB3's default Adam (or Adam / AdamW given as ``optimizer_class``) on a CPU or CUDA
    device and the caller chose no implementation (``fused`` or ``foreach``). Same algorithm, one
    kernel per step instead of a loop over the parameters.

    :param policy_kwargs: The algorithm's ``policy_kwargs`` (not modified).
    :param device: Where the policy lives.
    :return: A new dict, or ``policy_kwargs`` itself when nothing changes.
    """
    optimizer_class = policy_kwargs.get("optimizer_class", th.optim.Adam)
    optimizer_kwargs = dict(policy_kwargs.get("optimizer_kwargs") or {})
    chosen = "fused" in optimizer_kwargs or "foreach" in optimizer_kwargs
    if chosen or optimizer_class not in FUSABLE_OPTIMIZERS or th.device(device).type not in FUSED_ADAM_DEVICE_TYPES:
        return policy_kwargs
    return {**policy_kwargs, "optimizer_kwargs": {**optimizer_kwargs, "fused": True}}
