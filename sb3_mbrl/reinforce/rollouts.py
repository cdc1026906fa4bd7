"""
REINFORCE's data collection on SB3's rollout buffer: ``n_steps`` steps per env, or until
``n_episodes`` episodes have ended, with the episode ends of every step recorded, then the
Monte-Carlo returns and advantages filled in (see the :class:`REINFORCE` docstring).
"""
from typing import Any, Optional

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.utils import obs_as_tensor
from stable_baselines3.common.vec_env import VecEnv

from sb3_mbrl.reinforce.returns import baseline_advantages, discounted_returns


def collect_rollout(algo: Any, env: VecEnv, callback: BaseCallback, rollout_buffer: RolloutBuffer, n_rollout_steps: int) -> bool:
    """
    Collect a rollout with the current policy into the ``RolloutBuffer`` and fill in its
    Monte-Carlo returns and advantages (REINFORCE's ``collect_rollouts``).

    :param algo: The REINFORCE model.
    :param env: The training environment
    :param callback: Callback that will be called at each step
        (and at the beginning and end of the rollout)
    :param rollout_buffer: Buffer to fill with rollouts
    :param n_rollout_steps: Most steps per env (the rollout ends earlier once ``n_episodes`` episodes ended)
    :return: True if the rollout finished, False if the callback stopped training.
    """
    assert algo._last_obs is not None, "No previous observation was provided"
    algo.policy.set_training_mode(False)

    n_steps = 0
    n_episodes_ended = 0
    rollout_buffer.reset()
    algo._rollout_dones = np.zeros((rollout_buffer.buffer_size, env.num_envs), dtype=bool)
    if algo.use_sde:
        algo.policy.reset_noise(env.num_envs)

    callback.on_rollout_start()

    while n_steps < n_rollout_steps:
        if algo.n_episodes is not None and n_episodes_ended >= algo.n_episodes:
            break
        if algo.use_sde and algo.sde_sample_freq > 0 and n_steps % algo.sde_sample_freq == 0:
            algo.policy.reset_noise(env.num_envs)

        with th.no_grad():
            obs_tensor = obs_as_tensor(algo._last_obs, algo.device)  # type: ignore[arg-type]
            actions, values, log_probs = algo.policy(obs_tensor)
        actions = actions.cpu().numpy()

        clipped_actions = actions
        if isinstance(algo.action_space, spaces.Box):
            if algo.policy.squash_output:
                clipped_actions = algo.policy.unscale_action(clipped_actions)
            else:
                clipped_actions = np.clip(actions, algo.action_space.low, algo.action_space.high)

        new_obs, rewards, dones, infos = env.step(clipped_actions)
        algo.num_timesteps += env.num_envs

        callback.update_locals(locals())
        if not callback.on_step():
            return False

        algo._update_info_buffer(infos)

        if isinstance(algo.action_space, spaces.Discrete):
            actions = actions.reshape(-1, 1)

        if algo.bootstrap:
            # Time-limit truncation: bootstrap with the value of the last observation (SB3 issue #633).
            for idx, done in enumerate(dones):
                if done and infos[idx].get("terminal_observation") is not None and infos[idx].get("TimeLimit.truncated", False):
                    terminal_obs = algo.policy.obs_to_tensor(infos[idx]["terminal_observation"])[0]
                    with th.no_grad():
                        terminal_value = algo.policy.predict_values(terminal_obs)[0]  # type: ignore[arg-type]
                    rewards[idx] += algo.gamma * terminal_value.item()

        rollout_buffer.add(
            algo._last_obs,  # type: ignore[arg-type]
            actions,
            rewards,
            algo._last_episode_starts,  # type: ignore[arg-type]
            values,
            log_probs,
        )
        algo._rollout_dones[n_steps] = dones
        n_steps += 1
        n_episodes_ended += int(np.sum(dones))
        algo._last_obs = new_obs  # type: ignore[assignment]
        algo._last_episode_starts = dones

    last_values = None
    if algo.bootstrap:
        with th.no_grad():
            last_values = algo.policy.predict_values(obs_as_tensor(new_obs, algo.device))  # type: ignore[arg-type]
        last_values = last_values.cpu().numpy().flatten()  # (n_envs,)
    fill_returns_and_advantages(algo, rollout_buffer, n_steps, last_values)

    callback.update_locals(locals())
    callback.on_rollout_end()
    return True


def fill_returns_and_advantages(algo: Any, rollout_buffer: RolloutBuffer, n_steps: int, last_values: Optional[np.ndarray]) -> None:
    """
    Fill ``returns`` and ``advantages`` of the first ``n_steps`` rows of the buffer and the mask of the
    steps that enter the loss, ``algo._rollout_mask`` (rows past ``n_steps`` of an early-ended rollout
    stay zero, masked out).
    """
    returns, complete = discounted_returns(
        rollout_buffer.rewards[:n_steps], algo._rollout_dones[:n_steps], algo.gamma, last_values
    )  # (n_steps, n_envs)
    advantages = baseline_advantages(returns, complete, rollout_buffer.values[:n_steps], algo.baseline)
    rollout_buffer.returns[:n_steps] = returns
    rollout_buffer.advantages[:n_steps] = advantages
    algo._rollout_mask = np.zeros((rollout_buffer.buffer_size, rollout_buffer.n_envs), dtype=bool)
    algo._rollout_mask[:n_steps] = complete
    # The buffer yields data only once full; rows past n_steps are never used (masked out).
    rollout_buffer.full = True
