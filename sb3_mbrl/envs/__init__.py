"""Known reward and termination functions, batched in torch and keyed by env id.

Every function takes ``(obs, action, next_obs)``, each ``(B, dim)``, and returns ``(B,)``:
a float reward or a bool "terminated" flag, exactly as the real environment computes it.
"""
from sb3_mbrl.envs.registry import (
    REWARD_FNS,
    TERMINATION_FNS,
    get_reward_fn,
    get_termination_fn,
    has_terminal_states,
)
from sb3_mbrl.envs.types import TransitionFn

__all__ = ["REWARD_FNS", "TERMINATION_FNS", "TransitionFn", "get_reward_fn", "get_termination_fn", "has_terminal_states"]
