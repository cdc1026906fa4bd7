"""REINFORCE (Williams, 1992): Monte-Carlo policy gradient on SB3's on-policy machinery."""
import warnings
from typing import Any, ClassVar, Dict, List, Optional, Tuple, Type, TypeVar, Union

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import ActorCriticCnnPolicy, ActorCriticPolicy, BasePolicy, MultiInputActorCriticPolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import explained_variance, obs_as_tensor
from stable_baselines3.common.vec_env import VecEnv
from torch.nn import functional as F

from sb3_mbrl.common.threads import check_num_threads, torch_threads

SelfREINFORCE = TypeVar("SelfREINFORCE", bound="REINFORCE")

BASELINES = ("value", "mean", None)
PARTIAL_EPISODES = ("bootstrap", "drop")


def discounted_returns(
    rewards: np.ndarray,
    dones: np.ndarray,
    gamma: float,
    last_values: Optional[np.ndarray] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """
    Discounted Monte-Carlo returns ``G_t = r_t + gamma * G_{t+1}`` of every step of a rollout,
    restarted at each episode end, computed backwards in float64.

    Steps of an episode still running after the last step of the rollout have no complete return:
    with ``last_values`` their return is bootstrapped with the value of the observation that follows
    the last step; without it they are marked incomplete (and their returns stop at the rollout end).

    :param rewards: Rewards, shape ``(n_steps, n_envs)``
    :param dones: Whether the episode ended with the step (terminated or truncated), shape ``(n_steps, n_envs)``
    :param gamma: Discount factor
    :param last_values: Values of the observations after the last step, shape ``(n_envs,)``, or None
    :return: ``(returns, complete)``: the returns (float64) and whether each step's return is a
        Monte-Carlo return of a finished episode or a bootstrapped one (bool), both ``(n_steps, n_envs)``
    """
    rewards = np.asarray(rewards, dtype=np.float64)  # (T, n_envs)
    dones = np.asarray(dones, dtype=bool)  # (T, n_envs)
    if rewards.ndim != 2 or rewards.shape != dones.shape:
        raise ValueError(f"rewards and dones must both have shape (n_steps, n_envs), got {rewards.shape} and {dones.shape}")
    n_steps, n_envs = rewards.shape
    returns = np.zeros((n_steps, n_envs), dtype=np.float64)
    complete = np.zeros((n_steps, n_envs), dtype=bool)
    if last_values is None:
        next_return = np.zeros(n_envs, dtype=np.float64)
        next_complete = np.zeros(n_envs, dtype=bool)
    else:
        next_return = np.asarray(last_values, dtype=np.float64).reshape(n_envs)
        next_complete = np.ones(n_envs, dtype=bool)
    for step in reversed(range(n_steps)):
        not_done = ~dones[step]
        next_return = rewards[step] + gamma * np.where(not_done, next_return, 0.0)
        next_complete = dones[step] | next_complete
        returns[step] = next_return
        complete[step] = next_complete
    return returns, complete


class REINFORCE(OnPolicyAlgorithm):
    """
    REINFORCE: Monte-Carlo policy gradient (Williams, 1992), with an optional baseline.

    The loss of a batch is ``-(A_t * log pi(a_t | s_t)).mean() + ent_coef * entropy_loss
    (+ vf_coef * value_loss with the value baseline)``, where ``A_t`` is the discounted return ``G_t``
    of the rest of the episode, minus the baseline: the learned value ``V(s_t)`` (``baseline="value"``),
    the mean return of the batch (``"mean"``) or nothing (``None``). With ``normalize_advantage`` the
    ``A_t`` are then divided by their root mean square over the batch: a rescaling only, no shift, so
    that the centring of the weights comes from the baseline alone and ``baseline=None`` stays plain
    REINFORCE (the gradient of ``-(G_t * log pi).mean()`` times a positive per-batch factor), not the
    mean baseline again. The 3 x 2 choices of ``baseline`` and ``normalize_advantage`` are 6 different
    updates.

    Rollouts: with ``n_episodes``, a rollout lasts until ``n_episodes`` episodes have ended (counted over
    all envs of the VecEnv), ``n_steps`` steps per env at most. Without it, a rollout is ``n_steps`` steps
    per env. An episode that started in an earlier rollout contributes its remaining steps (their returns
    only need future rewards). An episode still running when the rollout ends (other envs of a VecEnv in
    ``n_episodes`` mode, any env in ``n_steps`` mode) is handled by ``partial_episodes``: ``"bootstrap"``
    completes its returns with the value head, ``"drop"`` leaves its steps out of the loss (the env carries
    on, and the next rollout uses the rest of that episode). Time-limit truncations are bootstrapped with
    the value of the last observation in ``"bootstrap"`` mode, as SB3 does, and are episode ends otherwise.

    :param policy: The policy model to use (MlpPolicy, CnnPolicy, MultiInputPolicy, ...)
    :param env: The environment to learn from (if registered in Gym, can be str)
    :param learning_rate: The learning rate, it can be a function of the current progress remaining (from 1 to 0)
    :param n_steps: Steps per env per rollout; with ``n_episodes``, the most steps per env a rollout may
        take (the rollout buffer's size)
    :param n_episodes: Number of episode ends (over all envs) that close a rollout, or None for rollouts of
        ``n_steps`` steps per env
    :param gamma: Discount factor
    :param baseline: ``"value"`` (learned value head, trained on the returns), ``"mean"`` (mean return of
        the batch) or None (no baseline: plain REINFORCE, ``A_t = G_t``; the value head is frozen and
        never trained). The baseline is the only thing that centres the advantages.
    :param normalize_advantage: Whether to rescale the advantages to unit root mean square over the
        batch, ``A_t / (sqrt(mean(A^2)) + 1e-8)``, without subtracting their mean (unlike SB3's A2C/PPO):
        a positive factor per batch, which leaves the direction of the update unchanged. With the mean
        baseline the advantages already have zero mean, so this is the usual zero-mean unit-std
        normalisation; with ``baseline=None`` it keeps plain REINFORCE (centring would make it the
        mean baseline); with the value baseline the mean of ``G_t - V(s_t)`` is kept.
    :param ent_coef: Entropy coefficient for the loss calculation
    :param vf_coef: Value function coefficient for the loss calculation (``baseline="value"`` only)
    :param max_grad_norm: The maximum value for the gradient clipping
    :param n_epochs: Number of passes over each batch (1: one gradient step per batch, as in REINFORCE)
    :param batch_size: Mini-batch size of each gradient step, or None for the whole batch
    :param partial_episodes: ``"bootstrap"`` or ``"drop"``, see above; None: ``"bootstrap"`` with
        ``baseline="value"``, ``"drop"`` otherwise (``"bootstrap"`` needs the value baseline)
    :param use_sde: Whether to use generalized State Dependent Exploration (gSDE)
        instead of action noise exploration (default: False)
    :param sde_sample_freq: Sample a new noise matrix every n steps when using gSDE
        Default: -1 (only sample at the beginning of the rollout)
    :param rollout_buffer_class: Rollout buffer class to use. If ``None``, it will be automatically selected.
    :param rollout_buffer_kwargs: Keyword arguments to pass to the rollout buffer on creation.
    :param stats_window_size: Window size for the rollout logging, specifying the number of episodes to average
        the reported success rate, mean episode length, and mean reward over
    :param tensorboard_log: the log location for tensorboard (if None, no logging)
    :param policy_kwargs: additional arguments to be passed to the policy on creation
    :param verbose: Verbosity level: 0 for no output, 1 for info messages (such as device or wrappers used), 2 for
        debug messages
    :param seed: Seed for the pseudo random generators
    :param device: Device (cpu, cuda, ...) on which the code should be run.
        Setting it to auto, the code will be run on the GPU if possible.
    :param num_threads: Torch intra-op threads while ``learn()`` runs (the caller's setting is
        restored after): 1 by default, which stays fast when other jobs share the cores (README,
        "Threads"); ``None`` keeps torch's own setting.
    :param _init_setup_model: Whether or not to build the network at the creation of the instance
    """

    policy_aliases: ClassVar[Dict[str, Type[BasePolicy]]] = {
        "MlpPolicy": ActorCriticPolicy,
        "CnnPolicy": ActorCriticCnnPolicy,
        "MultiInputPolicy": MultiInputActorCriticPolicy,
    }

    def __init__(
        self,
        policy: Union[str, Type[ActorCriticPolicy]],
        env: Union[GymEnv, str],
        learning_rate: Union[float, Schedule] = 1e-3,
        n_steps: int = 2048,
        n_episodes: Optional[int] = None,
        gamma: float = 0.99,
        baseline: Optional[str] = "value",
        normalize_advantage: bool = True,
        ent_coef: float = 0.0,
        vf_coef: float = 0.5,
        max_grad_norm: float = 0.5,
        n_epochs: int = 1,
        batch_size: Optional[int] = None,
        partial_episodes: Optional[str] = None,
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        rollout_buffer_class: Optional[Type[RolloutBuffer]] = None,
        rollout_buffer_kwargs: Optional[Dict[str, Any]] = None,
        stats_window_size: int = 100,
        tensorboard_log: Optional[str] = None,
        policy_kwargs: Optional[Dict[str, Any]] = None,
        verbose: int = 0,
        seed: Optional[int] = None,
        device: Union[th.device, str] = "auto",
        num_threads: Optional[int] = 1,
        _init_setup_model: bool = True,
    ):
        if baseline not in BASELINES:
            raise ValueError(f"baseline must be one of {BASELINES}, got {baseline!r}")
        if partial_episodes is None:
            partial_episodes = "bootstrap" if baseline == "value" else "drop"
        if partial_episodes not in PARTIAL_EPISODES:
            raise ValueError(f"partial_episodes must be one of {PARTIAL_EPISODES} or None, got {partial_episodes!r}")
        if partial_episodes == "bootstrap" and baseline != "value":
            raise ValueError(f'partial_episodes="bootstrap" needs baseline="value" (got baseline={baseline!r}); use "drop"')
        if n_episodes is not None and (isinstance(n_episodes, bool) or int(n_episodes) != n_episodes or n_episodes < 1):
            raise ValueError(f"n_episodes must be None or an integer >= 1, got {n_episodes!r}")
        if int(n_steps) != n_steps or n_steps < 1:
            raise ValueError(f"n_steps must be an integer >= 1, got {n_steps!r}")
        if int(n_epochs) != n_epochs or n_epochs < 1:
            raise ValueError(f"n_epochs must be an integer >= 1, got {n_epochs!r}")
        if batch_size is not None and (int(batch_size) != batch_size or batch_size < 1):
            raise ValueError(f"batch_size must be None or an integer >= 1, got {batch_size!r}")
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {gamma!r}")

        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            n_steps=int(n_steps),
            gamma=gamma,
            gae_lambda=1.0,
            ent_coef=ent_coef,
            vf_coef=vf_coef,
            max_grad_norm=max_grad_norm,
            use_sde=use_sde,
            sde_sample_freq=sde_sample_freq,
            rollout_buffer_class=rollout_buffer_class,
            rollout_buffer_kwargs=rollout_buffer_kwargs,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            seed=seed,
            device=device,
            _init_setup_model=False,
            supported_action_spaces=(
                spaces.Box,
                spaces.Discrete,
                spaces.MultiDiscrete,
                spaces.MultiBinary,
            ),
        )
        self.n_episodes = None if n_episodes is None else int(n_episodes)
        self.baseline = baseline
        self.partial_episodes = partial_episodes
        self.normalize_advantage = normalize_advantage
        self.n_epochs = int(n_epochs)
        self.batch_size = None if batch_size is None else int(batch_size)
        # Per rollout: episode ends of each step and which steps enter the loss, both (n_steps, n_envs)
        self._rollout_dones = np.zeros((0, 0), dtype=bool)
        self._rollout_mask = np.zeros((0, 0), dtype=bool)
        self.num_threads = check_num_threads(num_threads)

        if _init_setup_model:
            self._setup_model()

    @property
    def bootstrap(self) -> bool:
        """Whether unfinished and time-limit-truncated episodes are completed with the value head."""
        return self.partial_episodes == "bootstrap"

    def _setup_model(self) -> None:
        super()._setup_model()
        if self.baseline != "value":
            # No value baseline: the value head is never trained (its parameters get no gradient).
            for parameter in self._value_only_parameters():
                parameter.requires_grad_(False)

    def _value_only_parameters(self) -> List[th.nn.Parameter]:
        """Parameters used by the value head only (not by the actor)."""
        modules: List[th.nn.Module] = [self.policy.value_net]
        extractor_value_net = getattr(self.policy.mlp_extractor, "value_net", None)
        if isinstance(extractor_value_net, th.nn.Module):
            modules.append(extractor_value_net)
        if not self.policy.share_features_extractor:
            modules.append(self.policy.vf_features_extractor)
        return [parameter for module in modules for parameter in module.parameters()]

    def _excluded_save_params(self) -> List[str]:
        return [*super()._excluded_save_params(), "_rollout_dones", "_rollout_mask"]

    def collect_rollouts(
        self,
        env: VecEnv,
        callback: BaseCallback,
        rollout_buffer: RolloutBuffer,
        n_rollout_steps: int,
    ) -> bool:
        """
        Collect a rollout with the current policy into the ``RolloutBuffer`` and fill in its
        Monte-Carlo returns and advantages.

        :param env: The training environment
        :param callback: Callback that will be called at each step
            (and at the beginning and end of the rollout)
        :param rollout_buffer: Buffer to fill with rollouts
        :param n_rollout_steps: Most steps per env (the rollout ends earlier once ``n_episodes`` episodes ended)
        :return: True if the rollout finished, False if the callback stopped training.
        """
        assert self._last_obs is not None, "No previous observation was provided"
        self.policy.set_training_mode(False)

        n_steps = 0
        n_episodes_ended = 0
        rollout_buffer.reset()
        self._rollout_dones = np.zeros((rollout_buffer.buffer_size, env.num_envs), dtype=bool)
        if self.use_sde:
            self.policy.reset_noise(env.num_envs)

        callback.on_rollout_start()

        while n_steps < n_rollout_steps:
            if self.n_episodes is not None and n_episodes_ended >= self.n_episodes:
                break
            if self.use_sde and self.sde_sample_freq > 0 and n_steps % self.sde_sample_freq == 0:
                self.policy.reset_noise(env.num_envs)

            with th.no_grad():
                obs_tensor = obs_as_tensor(self._last_obs, self.device)  # type: ignore[arg-type]
                actions, values, log_probs = self.policy(obs_tensor)
            actions = actions.cpu().numpy()

            clipped_actions = actions
            if isinstance(self.action_space, spaces.Box):
                if self.policy.squash_output:
                    clipped_actions = self.policy.unscale_action(clipped_actions)
                else:
                    clipped_actions = np.clip(actions, self.action_space.low, self.action_space.high)

            new_obs, rewards, dones, infos = env.step(clipped_actions)
            self.num_timesteps += env.num_envs

            callback.update_locals(locals())
            if not callback.on_step():
                return False

            self._update_info_buffer(infos)

            if isinstance(self.action_space, spaces.Discrete):
                actions = actions.reshape(-1, 1)

            if self.bootstrap:
                # Time-limit truncation: bootstrap with the value of the last observation (SB3 issue #633).
                for idx, done in enumerate(dones):
                    if done and infos[idx].get("terminal_observation") is not None and infos[idx].get("TimeLimit.truncated", False):
                        terminal_obs = self.policy.obs_to_tensor(infos[idx]["terminal_observation"])[0]
                        with th.no_grad():
                            terminal_value = self.policy.predict_values(terminal_obs)[0]  # type: ignore[arg-type]
                        rewards[idx] += self.gamma * terminal_value.item()

            rollout_buffer.add(
                self._last_obs,  # type: ignore[arg-type]
                actions,
                rewards,
                self._last_episode_starts,  # type: ignore[arg-type]
                values,
                log_probs,
            )
            self._rollout_dones[n_steps] = dones
            n_steps += 1
            n_episodes_ended += int(np.sum(dones))
            self._last_obs = new_obs  # type: ignore[assignment]
            self._last_episode_starts = dones

        last_values = None
        if self.bootstrap:
            with th.no_grad():
                last_values = self.policy.predict_values(obs_as_tensor(new_obs, self.device))  # type: ignore[arg-type]
            last_values = last_values.cpu().numpy().flatten()  # (n_envs,)
        self._compute_returns_and_advantages(rollout_buffer, n_steps, last_values)

        callback.update_locals(locals())
        callback.on_rollout_end()
        return True

    def _compute_returns_and_advantages(
        self, rollout_buffer: RolloutBuffer, n_steps: int, last_values: Optional[np.ndarray]
    ) -> None:
        """
        Fill ``returns`` and ``advantages`` of the first ``n_steps`` rows of the buffer and the mask of the
        steps that enter the loss (rows past ``n_steps`` of an early-ended rollout stay zero, masked out).
        """
        returns, complete = discounted_returns(
            rollout_buffer.rewards[:n_steps], self._rollout_dones[:n_steps], self.gamma, last_values
        )  # (n_steps, n_envs)
        if self.baseline == "value":
            advantages = returns - rollout_buffer.values[:n_steps]
        elif self.baseline == "mean":
            advantages = returns - (returns[complete].mean() if complete.any() else 0.0)
        else:
            advantages = returns
        rollout_buffer.returns[:n_steps] = returns
        rollout_buffer.advantages[:n_steps] = advantages
        self._rollout_mask = np.zeros((rollout_buffer.buffer_size, rollout_buffer.n_envs), dtype=bool)
        self._rollout_mask[:n_steps] = complete
        # The buffer yields data only once full; rows past n_steps are never used (masked out).
        rollout_buffer.full = True

    def train(self) -> None:
        """
        Update the policy with the current rollout: ``n_epochs`` passes over the steps whose returns are
        known, in mini-batches of ``batch_size`` (one gradient step on the whole batch by default).
        """
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)

        buffer = self.rollout_buffer
        valid = np.flatnonzero(RolloutBuffer.swap_and_flatten(self._rollout_mask).ravel())  # (n_valid,)
        self.logger.record("train/n_samples", len(valid))
        if len(valid) == 0:
            warnings.warn(
                "REINFORCE: no step of this rollout has a complete return (no episode ended and "
                'partial_episodes="drop"); skipping the update. Use longer rollouts (n_steps) or n_episodes.'
            )
            return
        if not buffer.generator_ready:
            next(buffer.get(batch_size=1))  # the buffer flattens its arrays (n_steps, n_envs, ...) -> (n_envs * n_steps, ...)

        advantages = buffer.advantages  # (n_envs * n_steps,)
        if self.normalize_advantage:
            # Rescale only: the baseline alone centres (see the class docstring).
            valid_advantages = advantages[valid]
            advantages[valid] = valid_advantages / (np.sqrt(np.mean(np.square(valid_advantages))) + 1e-8)

        batch_size = len(valid) if self.batch_size is None else self.batch_size
        policy_losses, value_losses, entropy_losses = [], [], []
        for _ in range(self.n_epochs):
            order = valid if batch_size >= len(valid) else np.random.permutation(valid)
            for start in range(0, len(order), batch_size):
                rollout_data = buffer._get_samples(order[start : start + batch_size])
                actions = rollout_data.actions
                if isinstance(self.action_space, spaces.Discrete):
                    actions = actions.long().flatten()

                values, log_prob, entropy = self.policy.evaluate_actions(rollout_data.observations, actions)  # (B,)

                policy_loss = -(rollout_data.advantages * log_prob).mean()
                if entropy is None:
                    entropy_loss = -th.mean(-log_prob)
                else:
                    entropy_loss = -th.mean(entropy)
                loss = policy_loss + self.ent_coef * entropy_loss
                if self.baseline == "value":
                    value_loss = F.mse_loss(rollout_data.returns, values.flatten())
                    loss = loss + self.vf_coef * value_loss
                    value_losses.append(value_loss.item())

                self.policy.optimizer.zero_grad()
                loss.backward()
                th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
                self.policy.optimizer.step()
                self._n_updates += 1

                policy_losses.append(policy_loss.item())
                entropy_losses.append(entropy_loss.item())

        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/policy_loss", float(np.mean(policy_losses)))
        self.logger.record("train/entropy_loss", float(np.mean(entropy_losses)))
        if self.baseline == "value":
            self.logger.record("train/value_loss", float(np.mean(value_losses)))
            self.logger.record("train/explained_variance", explained_variance(buffer.values[valid].ravel(), buffer.returns[valid].ravel()))
        if hasattr(self.policy, "log_std"):
            self.logger.record("train/std", th.exp(self.policy.log_std).mean().item())

    def learn(
        self: SelfREINFORCE,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "REINFORCE",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfREINFORCE:
        with torch_threads(getattr(self, "num_threads", 1)):  # models saved before it existed: 1
            return super().learn(
                total_timesteps=total_timesteps,
                callback=callback,
                log_interval=log_interval,
                tb_log_name=tb_log_name,
                reset_num_timesteps=reset_num_timesteps,
                progress_bar=progress_bar,
            )
