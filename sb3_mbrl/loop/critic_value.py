"""SAC's critic as the terminal value of a planned action sequence (LOOP)."""
from typing import Callable

import torch as th
from stable_baselines3 import SAC

# terminal_value_fn names LOOP takes besides None and a callable.
CRITIC_VALUES = ("critic", "soft_critic")


def check_critic_value(name: object) -> None:
    """A string ``terminal_value_fn`` must be one of :data:`CRITIC_VALUES`."""
    if isinstance(name, str) and name not in CRITIC_VALUES:
        raise ValueError(f"LOOP: terminal_value_fn must be one of {CRITIC_VALUES}, None or a callable; got {name!r}")


def critic_value_fn(sac: SAC, name: str) -> Callable[[th.Tensor], th.Tensor]:
    """
    The value ``obs (B, obs_dim) -> (B,)`` of the last predicted state of a candidate, read from
    SAC's current networks at every call (so it follows training, and a loaded model's weights):

    - ``"critic"``: the smaller of the twin Q's at the actor's mean action, ``min_i Q_i(s, mu(s))``;
    - ``"soft_critic"``: SAC's soft state value at a sampled action,
      ``min_i Q_i(s, a) - alpha * log pi(a | s)``, ``a ~ pi(. | s)`` (what SAC's target bootstraps from).

    :param sac: The SAC (LOOP) whose actor, critic and entropy coefficient are read.
    :param name: One of :data:`CRITIC_VALUES`.
    """
    check_critic_value(name)

    @th.no_grad()
    def value(obs: th.Tensor) -> th.Tensor:
        if name == "critic":
            actions = sac.actor(obs, deterministic=True)
            return th.cat(sac.critic(obs, actions), dim=1).min(dim=1).values
        actions, log_prob = sac.actor.action_log_prob(obs)
        if sac.log_ent_coef is not None:
            ent_coef = th.exp(sac.log_ent_coef.detach())
        else:
            ent_coef = sac.ent_coef_tensor
        return th.cat(sac.critic(obs, actions), dim=1).min(dim=1).values - ent_coef * log_prob.reshape(-1)

    value.__name__ = f"{name}_value"
    return value
