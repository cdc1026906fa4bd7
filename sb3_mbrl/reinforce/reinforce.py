"""REINFORCE (Williams, 1992): Monte-Carlo policy gradient on SB3's on-policy machinery."""
import warnings
from typing import Any, ClassVar, Dict, List, Optional, Type, TypeVar, Union

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import ActorCriticCnnPolicy, ActorCriticPolicy, BasePolicy, MultiInputActorCriticPolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import explained_variance
from stable_baselines3.common.vec_env import VecEnv
from torch.nn import functional as F

from sb3_mbrl.common.threads import check_num_threads, torch_threads
from sb3_mbrl.reinforce.returns import check_partial_episodes, rescale_advantages
from sb3_mbrl.reinforce.rollouts import collect_rollout

SelfREINFORCE = TypeVar("SelfREINFORCE", bound="REINFORCE")


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
        partial_episodes = check_partial_episodes(baseline, partial_episodes)
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

    def collect_rollouts(self, env: VecEnv, callback: BaseCallback, rollout_buffer: RolloutBuffer, n_rollout_steps: int) -> bool:
        """A rollout of ``n_steps`` per env or ``n_episodes`` episodes, with its returns and advantages: see :func:`collect_rollout`."""
        return collect_rollout(self, env, callback, rollout_buffer, n_rollout_steps)

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
            advantages[valid] = rescale_advantages(advantages[valid])

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
            return super().learn(total_timesteps, callback, log_interval, tb_log_name, reset_num_timesteps, progress_bar)
