"""Replay buffers of MBPO: model transitions in a torch ring buffer, mixed into SAC's samples."""
from typing import Any, Dict, Optional, Union

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from stable_baselines3.common.vec_env import VecNormalize


class ModelTransitionBuffer:
    """
    Fixed-capacity ring buffer of model-generated transitions, stored as torch tensors on the
    device; batches are added and sampled in one vectorised operation each.

    :param capacity: Maximum number of transitions (oldest dropped first).
    :param obs_dim: Observation size.
    :param action_dim: Action size.
    :param device: Torch device.
    """

    def __init__(self, capacity: int, obs_dim: int, action_dim: int, device: Union[th.device, str] = "cpu") -> None:
        if capacity < 1:
            raise ValueError(f"Model buffer capacity must be positive, got {capacity}")
        self.capacity = capacity
        self.device = th.device(device)
        self.obs = th.zeros(capacity, obs_dim, device=self.device)
        self.actions = th.zeros(capacity, action_dim, device=self.device)
        self.next_obs = th.zeros(capacity, obs_dim, device=self.device)
        self.rewards = th.zeros(capacity, 1, device=self.device)
        self.dones = th.zeros(capacity, 1, device=self.device)
        self.pos = 0
        self.size = 0

    def add(self, obs: th.Tensor, actions: th.Tensor, next_obs: th.Tensor, rewards: th.Tensor, dones: th.Tensor) -> None:
        """Add ``N`` transitions: ``(N, obs_dim)``, ``(N, A)`` (scaled to [-1, 1]), ``(N, obs_dim)``, ``(N,)``, ``(N,)``."""
        n_rows = obs.shape[0]
        if n_rows == 0:
            return
        if n_rows > self.capacity:  # only the newest rows fit
            obs, actions, next_obs, rewards, dones = (x[-self.capacity :] for x in (obs, actions, next_obs, rewards, dones))
            n_rows = self.capacity
        idx = (self.pos + th.arange(n_rows, device=self.device)) % self.capacity
        self.obs[idx] = obs
        self.actions[idx] = actions
        self.next_obs[idx] = next_obs
        self.rewards[idx] = rewards.reshape(-1, 1).float()
        self.dones[idx] = dones.reshape(-1, 1).float()
        self.pos = int((self.pos + n_rows) % self.capacity)
        self.size = min(self.size + n_rows, self.capacity)

    def resize(self, capacity: int) -> None:
        """Change the capacity, keeping the newest transitions that fit."""
        if capacity == self.capacity:
            return
        order = (self.pos - self.size + th.arange(self.size, device=self.device)) % self.capacity  # oldest first
        kept = [x[order][-capacity:] for x in (self.obs, self.actions, self.next_obs, self.rewards, self.dones)]
        self.__init__(capacity, self.obs.shape[1], self.actions.shape[1], self.device)  # type: ignore[misc]
        self.add(*kept)

    def sample(self, batch_size: int) -> ReplayBufferSamples:
        idx = th.randint(0, self.size, (batch_size,), device=self.device)
        return ReplayBufferSamples(self.obs[idx], self.actions[idx], self.next_obs[idx], self.dones[idx], self.rewards[idx])


class MixedReplayBuffer(ReplayBuffer):
    """
    SAC's replay buffer of real transitions that mixes model transitions into every sample:
    ``real_ratio`` of each batch comes from the real data, the rest from :attr:`model_buffer`
    (all real until the model buffer holds data). Plugs into SAC's ``train()`` unchanged.

    The model buffer is not saved with ``save_replay_buffer``: it is rebuilt from the model.

    :param real_ratio: Share of real transitions in each batch.
    :param kwargs: See SB3's ``ReplayBuffer``.
    """

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: Union[th.device, str] = "auto",
        n_envs: int = 1,
        optimize_memory_usage: bool = False,
        handle_timeout_termination: bool = True,
        real_ratio: float = 0.05,
    ) -> None:
        super().__init__(buffer_size, observation_space, action_space, device, n_envs, optimize_memory_usage, handle_timeout_termination)
        if not 0.0 <= real_ratio <= 1.0:
            raise ValueError(f"real_ratio must be in [0, 1], got {real_ratio}")
        self.real_ratio = real_ratio
        self.model_buffer: Optional[ModelTransitionBuffer] = None

    def sample(self, batch_size: int, env: Optional[VecNormalize] = None) -> ReplayBufferSamples:
        model_buffer = self.model_buffer
        n_model = 0 if model_buffer is None or model_buffer.size == 0 else batch_size - int(round(self.real_ratio * batch_size))
        if n_model == 0:
            return super().sample(batch_size, env=env)
        model = model_buffer.sample(n_model)  # type: ignore[union-attr]
        if n_model == batch_size:
            return model
        real = super().sample(batch_size - n_model, env=env)
        return ReplayBufferSamples(*(th.cat([r, m.to(r.device)], dim=0) for r, m in zip(real, model)))

    def __getstate__(self) -> Dict[str, Any]:
        state = self.__dict__.copy()
        state["model_buffer"] = None  # rebuilt from the dynamics model, never saved
        return state


def rollout_capacity(rollout_batch_size: int, rollout_length: int, epoch_length: int, model_train_freq: int, retain_epochs: int) -> int:
    """Transitions generated in ``retain_epochs`` epochs: rollouts per epoch x length x epochs."""
    rollouts_per_epoch = rollout_batch_size * max(1, epoch_length // model_train_freq)
    return int(max(1, rollouts_per_epoch * rollout_length * retain_epochs))


def scale_actions(actions: th.Tensor, low: np.ndarray, high: np.ndarray) -> th.Tensor:
    """Env units -> [-1, 1], as SAC stores actions."""
    low_t = th.as_tensor(low, dtype=actions.dtype, device=actions.device)
    high_t = th.as_tensor(high, dtype=actions.dtype, device=actions.device)
    return 2.0 * (actions - low_t) / (high_t - low_t) - 1.0


def unscale_actions(actions: th.Tensor, low: np.ndarray, high: np.ndarray) -> th.Tensor:
    """[-1, 1] -> env units."""
    low_t = th.as_tensor(low, dtype=actions.dtype, device=actions.device)
    high_t = th.as_tensor(high, dtype=actions.dtype, device=actions.device)
    return low_t + 0.5 * (actions + 1.0) * (high_t - low_t)
