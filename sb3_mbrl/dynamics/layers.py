"""Batched linear layer: every ensemble member in one matmul."""
import math
from typing import Optional

import torch as th
from torch import nn


class EnsembleLinear(nn.Module):
    """
    A linear layer holding one weight matrix per ensemble member.

    All members are evaluated with a single ``torch.baddbmm`` call, never a Python loop.

    :param ensemble_size: Number of members ``E``.
    :param in_features: Input width.
    :param out_features: Output width.
    :param weight_decay: L2 coefficient for this layer's weights (used by :meth:`decay_loss`).
    """

    def __init__(self, ensemble_size: int, in_features: int, out_features: int, weight_decay: float = 0.0) -> None:
        super().__init__()
        self.ensemble_size = ensemble_size
        self.in_features = in_features
        self.out_features = out_features
        self.weight_decay = weight_decay
        self.weight = nn.Parameter(th.empty(ensemble_size, in_features, out_features))  # (E, in, out)
        self.bias = nn.Parameter(th.zeros(ensemble_size, 1, out_features))  # (E, 1, out)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Truncated normal with std 1 / (2 sqrt(in)), as the original PETS/MBPO code does.
        std = 1.0 / (2.0 * math.sqrt(self.in_features))
        nn.init.trunc_normal_(self.weight, std=std, a=-2 * std, b=2 * std)
        nn.init.zeros_(self.bias)

    def forward(self, x: th.Tensor, members: Optional[th.Tensor] = None) -> th.Tensor:
        """
        :param x: Input of shape ``(E', B, in)`` where ``E'`` is ``E`` or ``len(members)``.
        :param members: Optional indices of the members to use (for example the elites).
        :return: Output of shape ``(E', B, out)``.
        """
        if members is None:
            return th.baddbmm(self.bias, x, self.weight)
        return th.baddbmm(self.bias[members], x, self.weight[members])

    def decay_loss(self) -> th.Tensor:
        """
        Per-member L2 penalty ``weight_decay * sum(W**2) / 2``, shape ``(E,)``; zeros outside the
        autograd graph without decay (the square of every weight and its backward would add zeros at every fit step).
        """
        if self.weight_decay == 0.0:
            return th.zeros(self.ensemble_size, device=self.weight.device, dtype=self.weight.dtype)
        return self.weight_decay * 0.5 * self.weight.pow(2).sum(dim=(1, 2))

    def extra_repr(self) -> str:
        return f"ensemble_size={self.ensemble_size}, in_features={self.in_features}, out_features={self.out_features}"
