"""Known reward, termination and terminal-value functions, batched in torch and keyed by env id.

Reward and termination functions take ``(obs, action, next_obs)``, each ``(B, dim)``, and return
``(B,)``: a float reward or a bool "terminated" flag, exactly as the real environment computes it.
Terminal values take ``obs (B, obs_dim)`` and return ``(B,)`` floats: a planning aid for the last
state of a candidate (:mod:`sb3_mbrl.envs.terminal_values`), not part of the environment.
Observation processing takes ``obs (..., obs_dim)`` and returns what the dynamics model reads of it
(:mod:`sb3_mbrl.envs.model_inputs`).
"""
from sb3_mbrl.envs.registry import (
    OBS_PROCESS_FNS,
    PLANNING_TERMINATION_FNS,
    REWARD_FNS,
    TERMINAL_VALUE_FNS,
    TERMINATION_FNS,
    get_obs_process_fn,
    get_planning_termination_fn,
    get_reward_fn,
    get_terminal_value_fn,
    get_termination_fn,
    has_terminal_states,
)
from sb3_mbrl.envs.types import ObsProcessFn, StateValueFn, TransitionFn

__all__ = [
    "OBS_PROCESS_FNS",
    "ObsProcessFn",
    "PLANNING_TERMINATION_FNS",
    "REWARD_FNS",
    "TERMINAL_VALUE_FNS",
    "TERMINATION_FNS",
    "StateValueFn",
    "TransitionFn",
    "get_obs_process_fn",
    "get_planning_termination_fn",
    "get_reward_fn",
    "get_terminal_value_fn",
    "get_termination_fn",
    "has_terminal_states",
]
