"""Lookup of known reward, termination and terminal-value functions by env id."""
from typing import Dict, Optional

from sb3_mbrl.envs import model_inputs, rewards, terminal_values, terminations
from sb3_mbrl.envs.types import ObsProcessFn, StateValueFn, TransitionFn

REWARD_FNS: Dict[str, TransitionFn] = {
    "Pendulum-v1": rewards.pendulum_reward,
    "InvertedPendulum-v4": rewards.alive_bonus_reward,
    "Reacher-v4": rewards.reacher_reward,
    "CartPole-v1": rewards.alive_bonus_reward,
    "Acrobot-v1": rewards.acrobot_reward,
    "MountainCar-v0": rewards.constant_minus_one_reward,
}

TERMINATION_FNS: Dict[str, TransitionFn] = {
    "Pendulum-v1": terminations.never_terminates,
    "InvertedPendulum-v4": terminations.inverted_pendulum_termination,
    "InvertedDoublePendulum-v4": terminations.inverted_double_pendulum_termination,
    "Hopper-v4": terminations.hopper_termination,
    "Walker2d-v4": terminations.walker2d_termination,
    "Ant-v4": terminations.ant_termination,
    "Humanoid-v4": terminations.humanoid_termination,
    "HalfCheetah-v4": terminations.never_terminates,
    "Reacher-v4": terminations.never_terminates,
    "Swimmer-v4": terminations.never_terminates,
    "CartPole-v1": terminations.cartpole_termination,
    "Acrobot-v1": terminations.acrobot_termination,
    "MountainCar-v0": terminations.mountain_car_termination,
}

# Where a planner should end its plans short of the env's own termination (TERMINATION_FNS elsewhere).
PLANNING_TERMINATION_FNS: Dict[str, TransitionFn] = {
    "InvertedPendulum-v4": terminations.inverted_pendulum_planning_termination,
}

# Values of the last planned state, never negative (sb3_mbrl.envs.terminal_values).
TERMINAL_VALUE_FNS: Dict[str, StateValueFn] = {
    "InvertedPendulum-v4": terminal_values.inverted_pendulum_terminal_value,
    "CartPole-v1": terminal_values.cartpole_terminal_value,
    "Acrobot-v1": terminal_values.acrobot_terminal_value,
}

# What the dynamics model reads of an observation (sb3_mbrl.envs.model_inputs); the whole of it elsewhere.
OBS_PROCESS_FNS: Dict[str, ObsProcessFn] = {
    "InvertedPendulum-v4": model_inputs.cart_rail_contact,
}

# Tasks known to have terminal states; a learner without their termination function is warned.
_TERMINAL_TASK_PREFIXES = (
    "InvertedPendulum",
    "InvertedDoublePendulum",
    "Hopper",
    "Walker2d",
    "Ant",
    "Humanoid",
    "CartPole",
    "Acrobot",
    "MountainCar",  # also MountainCarContinuous, which terminates at the flag too
)


def _strip_namespace(env_id: str) -> str:
    return env_id.split("/")[-1] if env_id.startswith("gymnasium/") or env_id.startswith("gym/") else env_id


def get_reward_fn(env_id: Optional[str]) -> Optional[TransitionFn]:
    """The known reward function of ``env_id``, or ``None``."""
    return REWARD_FNS.get(_strip_namespace(env_id)) if env_id else None


def get_termination_fn(env_id: Optional[str]) -> Optional[TransitionFn]:
    """The known termination function of ``env_id``, or ``None``."""
    return TERMINATION_FNS.get(_strip_namespace(env_id)) if env_id else None


def get_planning_termination_fn(env_id: Optional[str]) -> Optional[TransitionFn]:
    """
    The termination function a planner should use for ``env_id``: the env's own
    (:func:`get_termination_fn`) unless ``PLANNING_TERMINATION_FNS`` has one that also ends plans
    in states the model predicts badly (InvertedPendulum-v4: the end of the rail), or ``None``.
    """
    if not env_id:
        return None
    return PLANNING_TERMINATION_FNS.get(_strip_namespace(env_id)) or get_termination_fn(env_id)


def get_terminal_value_fn(env_id: Optional[str]) -> Optional[StateValueFn]:
    """The known terminal value function of ``env_id``, or ``None``."""
    return TERMINAL_VALUE_FNS.get(_strip_namespace(env_id)) if env_id else None


def get_obs_process_fn(env_id: Optional[str]) -> Optional[ObsProcessFn]:
    """The known observation processing for the dynamics model of ``env_id``, or ``None`` (the whole observation)."""
    return OBS_PROCESS_FNS.get(_strip_namespace(env_id)) if env_id else None


def has_terminal_states(env_id: Optional[str]) -> bool:
    """Whether ``env_id`` is a known task with terminal states (so a termination function matters)."""
    return bool(env_id) and _strip_namespace(env_id).startswith(_TERMINAL_TASK_PREFIXES)  # type: ignore[union-attr]
