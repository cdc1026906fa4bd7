"""iCEM: CEM with coloured noise, population decay and kept elites (Pinneri et al., 2020)."""
from typing import Optional

import torch as th

from sb3_mbrl.planning.base import Objective, TrajectoryOptimizer, finite_or_worst, gather_candidates


def colored_noise(beta: float, shape, device: th.device, generator: Optional[th.Generator] = None) -> th.Tensor:
    """
    Gaussian noise with power spectrum ``1 / f**beta`` along the last axis, unit variance.

    ``beta = 0`` is white noise; larger ``beta`` gives smoother, low-frequency action sequences.
    Built in the frequency domain and brought back with an inverse real FFT.
    """
    length = shape[-1]
    freqs = th.fft.rfftfreq(length, device=device)  # (L // 2 + 1,)
    freqs[0] = 1.0 / length  # cap the DC component at the lowest representable frequency
    scale = freqs.pow(-beta / 2.0)
    # Exact std of the inverse FFT below: DC and (even length) Nyquist terms are real with
    # variance 2 s^2, every other frequency contributes 4 s^2; irfft divides by the length.
    power = 4 * scale.pow(2)
    power[0] = 2 * scale[0] ** 2
    if length % 2 == 0:
        power[-1] = 2 * scale[-1] ** 2
    sigma = power.sum().sqrt() / length
    n_freq = freqs.shape[0]
    real = th.randn((*shape[:-1], n_freq), device=device, generator=generator) * scale
    imag = th.randn((*shape[:-1], n_freq), device=device, generator=generator) * scale
    if length % 2 == 0:
        imag[..., -1] = 0.0
        real[..., -1] *= 2**0.5
    imag[..., 0] = 0.0
    real[..., 0] *= 2**0.5
    return th.fft.irfft(th.complex(real, imag), n=length, dim=-1) / sigma


class ICEMOptimizer(TrajectoryOptimizer):
    """
    Improved CEM.

    - samples coloured noise (``noise_beta``; 0 is white, 2-3 suits smooth control),
    - shrinks the population by ``population_decay`` each iteration (never below ``2 K``),
    - keeps ``keep_elites_fraction`` of the elites into the next iteration, and shifted by one
      step into the next call (``optimize(..., initial_elites=...)``),
    - adds the mean itself as a candidate in the last iteration,
    - returns the best sequence found.

    :param num_elites: Elites per iteration ``K`` (default: 10% of the population).
    :param alpha: Momentum on the mean and standard deviation.
    :param noise_beta: Colour exponent of the sampling noise.
    :param population_decay: Population divisor per iteration.
    :param keep_elites_fraction: Share of elites carried over.
    :param kwargs: See :class:`TrajectoryOptimizer`.
    """

    def __init__(
        self,
        *args,
        num_elites: Optional[int] = None,
        alpha: float = 0.1,
        noise_beta: float = 2.0,
        population_decay: float = 1.25,
        keep_elites_fraction: float = 0.3,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        num_elites = max(1, self.population_size // 10) if num_elites is None else num_elites
        if not 1 <= num_elites <= self.population_size:
            raise ValueError(f"num_elites must be in [1, population_size={self.population_size}], got {num_elites}")
        if population_decay < 1.0 or not 0.0 <= keep_elites_fraction <= 1.0 or noise_beta < 0:
            raise ValueError("population_decay must be >= 1, keep_elites_fraction in [0, 1] and noise_beta >= 0")
        self.num_elites = num_elites
        self.alpha = alpha
        self.noise_beta = noise_beta
        self.population_decay = population_decay
        self.keep_elites_fraction = keep_elites_fraction
        self.last_elites: Optional[th.Tensor] = None  # (M, K, H, A) of the last call

    def shifted_elites(self) -> Optional[th.Tensor]:
        """The last call's kept elites moved one step ahead (last step repeated): ``(M, k, H, A)``."""
        if self.last_elites is None:
            return None
        n_keep = int(round(self.keep_elites_fraction * self.num_elites))
        if n_keep == 0:
            return None
        kept = self.last_elites[:, :n_keep]
        return th.cat([kept[:, :, 1:], kept[:, :, -1:]], dim=2)

    def optimize(
        self,
        objective: Objective,
        initial_mean: Optional[th.Tensor] = None,
        n_starts: int = 1,
        initial_elites: Optional[th.Tensor] = None,
    ) -> th.Tensor:
        mean = self._start(initial_mean, n_starts)  # (M, H, A)
        n_starts = mean.shape[0]
        std = self.initial_var(n_starts).sqrt()
        best_value = th.full((n_starts,), -float("inf"), device=self.device)
        best = mean.clone()
        elites: Optional[th.Tensor] = None
        n_keep = int(round(self.keep_elites_fraction * self.num_elites))
        for i in range(self.iterations):
            population = max(int(self.population_size / self.population_decay**i), 2 * self.num_elites)
            noise = colored_noise(self.noise_beta, (n_starts, population, self.action_dim, self.horizon), self.device)
            samples = self.clip(mean[:, None] + std[:, None] * noise.transpose(2, 3))  # (M, P_i, H, A)
            extra = []
            if i == 0 and initial_elites is not None:
                extra.append(initial_elites.to(self.device))
            if elites is not None and n_keep > 0:
                extra.append(elites[:, :n_keep])
            if i == self.iterations - 1:
                extra.append(mean[:, None])
            if extra:
                samples = th.cat([samples, *extra], dim=1)
            values = finite_or_worst(objective(samples))  # (M, P')
            top_values, top_idx = values.topk(self.num_elites, dim=1)
            elites = gather_candidates(samples, top_idx)  # (M, K, H, A), best first
            mean = self.alpha * mean + (1 - self.alpha) * elites.mean(dim=1)
            std = self.alpha * std + (1 - self.alpha) * elites.std(dim=1, unbiased=False)
            improved = top_values[:, 0] > best_value
            best = th.where(improved[:, None, None], elites[:, 0], best)
            best_value = th.where(improved, top_values[:, 0], best_value)
        self.last_elites = elites
        return best
