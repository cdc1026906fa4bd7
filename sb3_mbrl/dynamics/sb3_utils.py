"""Glue between SB3 algorithms and the dynamics model, shared by PETS and MBPO."""
import sys
import time
import warnings
from typing import Callable, Optional, Tuple, Union

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.vec_env import VecEnv, VecNormalize, unwrap_vec_wrapper

from sb3_mbrl.dynamics.model_env import TransitionFn
from sb3_mbrl.envs import get_reward_fn, get_termination_fn, has_terminal_states

# A user passes a callable, None, or "auto" (look the function up by env id).
TransitionFnArg = Union[str, None, Callable]


def env_id_of(env: Optional[VecEnv]) -> Optional[str]:
    """The gymnasium id of a VecEnv's first env, if it was made from a registered id."""
    if env is None:
        return None
    try:
        spec = env.get_attr("spec", indices=[0])[0]
    except (AttributeError, IndexError):
        return None
    return getattr(spec, "id", None)


def check_vector_observations(algo_name: str, env: object) -> None:
    """
    Refuse observation spaces the dynamics model cannot learn: anything but a flat ``Box``
    (a ``Dict``, ``Discrete`` ... or an image). ``env`` is an env, a VecEnv, or an id (not checked
    until it is made). Called before SB3's own checks so that the message names the real problem.
    """
    space = getattr(env, "observation_space", None)
    if space is None:
        return
    if not isinstance(space, spaces.Box):
        raise ValueError(f"{algo_name}'s dynamics model needs a Box observation space; got {space}")
    if is_image_space(space, check_channels=False):
        raise ValueError(
            f"{algo_name}'s dynamics model needs vector observations; got image observations {space}: "
            "flatten them or encode them into a vector first"
        )


def check_no_vec_normalize(algo_name: str, env: object) -> None:
    """
    Refuse ``VecNormalize``: the dynamics model learns from the raw observations and rewards of
    the replay buffer and normalises its own inputs, so normalised observations (to plan from or
    to train the actor on) would not match the model's, and plans or rollouts would be silently wrong.
    """
    if isinstance(env, VecEnv) and unwrap_vec_wrapper(env, VecNormalize) is not None:
        raise ValueError(
            f"{algo_name} does not support VecNormalize: its dynamics model is fitted on the raw observations "
            "and rewards in the replay buffer and normalises its inputs itself, so VecNormalize's normalised "
            "observations would give wrong plans and model rollouts. Remove the VecNormalize wrapper "
            "(with rl-zoo: drop 'normalize: true' from the hyperparameters)."
        )


def resolve_transition_fns(
    algo_name: str, env_id: Optional[str], reward_fn: TransitionFnArg, termination_fn: TransitionFnArg
) -> Tuple[Optional[TransitionFn], Optional[TransitionFn]]:
    """
    Turn ``"auto"`` into the known function for ``env_id`` (or ``None``) and check the rest.

    A task known to have terminal states that ends up with no termination function gets a
    warning saying what to pass.
    """
    for name, value in (("reward_fn", reward_fn), ("termination_fn", termination_fn)):
        if not (value is None or value == "auto" or callable(value)):
            raise ValueError(f"{algo_name}: {name} must be a callable, None or 'auto', got {value!r}")
    reward = get_reward_fn(env_id) if reward_fn == "auto" else reward_fn
    termination = get_termination_fn(env_id) if termination_fn == "auto" else termination_fn
    if termination is None and has_terminal_states(env_id):
        warnings.warn(
            f"{algo_name}: {env_id} has terminal states but no termination function is set, so the model "
            "never predicts termination. Pass termination_fn='auto' or a function "
            "(obs, action, next_obs) -> bool tensor, e.g. from sb3_mbrl.envs.",
            stacklevel=3,
        )
    return reward, termination  # type: ignore[return-value]


def check_finite_transition(algo_name: str, new_obs: np.ndarray, rewards: np.ndarray, num_timesteps: int) -> None:
    """Stop with a clear error when the environment returns NaN/inf (instead of training a NaN model)."""
    obs_ok = np.isfinite(new_obs).all() if isinstance(new_obs, np.ndarray) else True
    if not obs_ok or not np.isfinite(rewards).all():
        what = "observations" if not obs_ok else "rewards"
        raise ValueError(
            f"{algo_name}: the environment returned NaN or inf {what} at env step {num_timesteps}; "
            "training stopped before they reach the dynamics model"
        )


def replay_buffer_transitions(
    buffer: ReplayBuffer, policy: BasePolicy, device: th.device
) -> Tuple[th.Tensor, th.Tensor, th.Tensor, th.Tensor]:
    """
    All real transitions of an SB3 replay buffer as tensors, actions in env units.

    :return: ``obs (N, obs_dim)``, ``actions (N, A)``, ``next_obs (N, obs_dim)``, ``rewards (N,)``
    """
    upper = buffer.buffer_size if buffer.full else buffer.pos
    obs = buffer.observations[:upper]
    if buffer.optimize_memory_usage:
        next_obs = buffer.observations[(np.arange(upper) + 1) % buffer.buffer_size]
    else:
        next_obs = buffer.next_observations[:upper]
    obs_dim = int(np.prod(buffer.obs_shape))
    actions = policy.unscale_action(buffer.actions[:upper].reshape(-1, buffer.action_dim))
    as_tensor = lambda x: th.as_tensor(np.asarray(x, dtype=np.float32), device=device)  # noqa: E731
    return (
        as_tensor(obs.reshape(-1, obs_dim)),
        as_tensor(actions),
        as_tensor(next_obs.reshape(-1, obs_dim)),
        as_tensor(buffer.rewards[:upper].reshape(-1)),
    )


def env_steps_per_second(algo: BaseAlgorithm) -> float:
    """Env steps per wall second in the current ``learn()`` call, as SB3 computes ``time/fps``."""
    elapsed = max((time.time_ns() - algo.start_time) / 1e9, sys.float_info.epsilon)
    return (algo.num_timesteps - algo._num_timesteps_at_start) / elapsed
