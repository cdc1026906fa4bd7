"""MBPO: SAC trained on real data plus short branched rollouts of a learned model (Janner et al., 2019)."""
import inspect
import time
from typing import Any, ClassVar, Dict, List, Optional, Sequence, Tuple, Type, TypeVar, Union

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3 import SAC
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, Schedule
from stable_baselines3.common.utils import get_schedule_fn, update_learning_rate
from stable_baselines3.sac.policies import CnnPolicy, MlpPolicy, MultiInputPolicy, SACPolicy
from torch import nn

from sb3_mbrl.common.buffers import replay_buffer_transitions
from sb3_mbrl.common.checks import check_finite_transition, check_no_vec_normalize, check_vector_observations
from sb3_mbrl.common.model_fit import fit_dynamics, make_model_trainer
from sb3_mbrl.common.optimizers import with_fused_adam
from sb3_mbrl.common.threads import check_num_threads, torch_threads
from sb3_mbrl.common.transition_fns import TransitionFnArg, env_id_of, resolve_obs_process_fn, resolve_transition_fns
from sb3_mbrl.dynamics import ModelEnv, ProbabilisticEnsemble, model_weight_decays_for
from sb3_mbrl.mbpo.buffers import MixedReplayBuffer, ModelTransitionBuffer, rollout_capacity
from sb3_mbrl.mbpo.rollouts import branched_rollouts
from sb3_mbrl.mbpo.schedules import RolloutSchedule, check_rollout_schedule, rollout_length_at

SelfMBPO = TypeVar("SelfMBPO", bound="MBPO")
SAC_ARGUMENTS = frozenset(inspect.signature(SAC).parameters) - {"_init_setup_model"}


class MBPO(SAC):
    """
    Model-Based Policy Optimization: SB3's SAC, unchanged, whose replay buffer mixes
    ``real_ratio`` real transitions with transitions from short model rollouts.

    Every ``model_train_freq`` env steps (counted over all envs and across ``learn()`` calls) the
    ensemble is refitted on the real buffer and
    ``rollout_batch_size`` rollouts of ``rollout_length`` steps are branched from real states
    with the current policy (all rows in one batch per step; terminated rows leave the batch)
    into a model buffer that keeps ``model_retain_epochs`` epochs of rollouts. After
    ``load_replay_buffer`` the next SAC update refits first (the model buffer is rebuilt); after
    ``load()`` SAC learns from real data alone until ``model_train_freq`` new env steps are in the
    (new, empty) replay buffer, then the loaded model is refitted on them and rolled out.

    ``VecNormalize`` is refused: the model and its rollouts live in raw observation units.

    SAC's actor and critic optimisers are fused Adam on CPU and CUDA unless ``policy_kwargs``'
    ``optimizer_kwargs`` choose ``fused`` or ``foreach`` (or another optimiser): the same update,
    about 10% cheaper at MBPO's sizes.

    Takes every SAC argument plus:

    :param ensemble_size: Ensemble members.
    :param num_elites: Members used for rollouts.
    :param model_net_arch: Hidden layer sizes of each member.
    :param model_activation_fn: Their activation.
    :param model_weight_decays: L2 coefficient per model layer (hidden then output): ``"auto"`` (the
        papers' decays spread over the layers of ``model_net_arch``), ``None`` (none) or a list.
    :param model_learning_rate: Adam learning rate of the model, a float or a schedule of the
        remaining progress (1 -> 0), applied at every model fit.
    :param model_batch_size: Mini-batch size of model training.
    :param model_holdout_ratio: Share of real data held out to stop fits and rank members.
    :param model_epochs: Maximum epochs per fit (``None``: early stopping only).
    :param model_patience: Epochs without holdout improvement before a fit stops (together with
        ``model_min_updates``).
    :param model_min_updates: Gradient steps without holdout improvement before a fit stops, with
        ``model_patience``: on small data an epoch is one or two mini-batches, and patience in epochs
        alone stops a fit after a handful of updates.
    :param model_lr_warmup_updates: Gradient steps over which each model fit ramps its learning rate
        up linearly (0: none): a fresh Adam moves every weight by about the learning rate in its first
        steps, which threw near-converged warm starts far off on refits (README, "Model fits").
    :param model_max_fit_seconds: Wall-clock cap on one model fit (``None``: no cap).
    :param model_fit_dtype: Dtype of the model fits' matrix products: ``"float32"`` (default),
        ``"bfloat16"`` or ``"auto"`` (bfloat16 where it runs natively: a CPU with AVX512-BF16 or
        AMX-BF16, a CUDA GPU that supports it). The weights, the loss and the holdout errors that stop
        a fit and pick its kept weights stay in float32 (README, "Model fits").
    :param model_train_freq: Env steps between model fits (and rollouts).
    :param rollout_batch_size: Rollouts branched per fit.
    :param rollout_length: Rollout length ``k``: an int, or ``(min_epoch, max_epoch, min_length, max_length)``.
    :param epoch_length: Env steps per epoch (for the rollout schedule and the model buffer size);
        epochs count every env step this model has collected, across ``learn()`` calls and ``load()``.
    :param real_ratio: Share of real transitions in each SAC batch.
    :param model_retain_epochs: Epochs of rollouts kept in the model buffer.
    :param reward_fn: ``"auto"`` (known function of the env id if any, else learned), ``None``
        (learned) or ``(obs, action, next_obs) -> (B,)``.
    :param termination_fn: ``"auto"`` (known function, else never, with a warning for tasks that
        terminate), ``None`` (never) or ``(obs, action, next_obs) -> (B,)`` bool.
    :param obs_process_fn: What the dynamics model reads of an observation (it still predicts the
        change of all of it): ``None`` (all of it, the default: MBPO's benchmarks ran so), ``"auto"``
        (the known processing of the env id, :mod:`sb3_mbrl.envs.model_inputs`) or ``obs (..., obs_dim) -> (..., d)``.
    :param rollout_deterministic: Use the model's mean instead of sampling in rollouts.
    :param num_threads: Torch intra-op threads while ``learn()`` runs (the caller's setting is
        restored after): 1 by default, which stays fast when other jobs share the cores (README,
        "Threads"); ``None`` keeps torch's own setting.
    """

    policy_aliases: ClassVar[Dict[str, Type[BasePolicy]]] = {
        "MlpPolicy": MlpPolicy,
        "CnnPolicy": CnnPolicy,
        "MultiInputPolicy": MultiInputPolicy,
    }

    def __init__(
        self,
        policy: Union[str, Type[SACPolicy]],
        env: Union[GymEnv, str],
        learning_rate: Union[float, Schedule] = 3e-4,
        buffer_size: int = 1_000_000,
        learning_starts: int = 500,
        batch_size: int = 256,
        tau: float = 0.005,
        gamma: float = 0.99,
        train_freq: Union[int, Tuple[int, str]] = 1,
        gradient_steps: int = 10,
        action_noise: Optional[ActionNoise] = None,
        replay_buffer_class: Optional[Type[ReplayBuffer]] = None,
        replay_buffer_kwargs: Optional[Dict[str, Any]] = None,
        optimize_memory_usage: bool = False,
        ent_coef: Union[str, float] = "auto",
        target_update_interval: int = 1,
        target_entropy: Union[str, float] = "auto",
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        use_sde_at_warmup: bool = False,
        stats_window_size: int = 100,
        tensorboard_log: Optional[str] = None,
        policy_kwargs: Optional[Dict[str, Any]] = None,
        verbose: int = 0,
        seed: Optional[int] = None,
        device: Union[th.device, str] = "auto",
        ensemble_size: int = 7,
        num_elites: int = 5,
        model_net_arch: Sequence[int] = (200, 200, 200, 200),
        model_activation_fn: Type[nn.Module] = nn.SiLU,
        model_weight_decays: Union[str, Sequence[float], None] = "auto",
        model_learning_rate: Union[float, Schedule] = 1e-3,
        model_batch_size: int = 256,
        model_holdout_ratio: float = 0.2,
        model_epochs: Optional[int] = None,
        model_patience: int = 5,
        model_min_updates: int = 100,
        model_lr_warmup_updates: int = 50,
        model_max_fit_seconds: Optional[float] = None,
        model_fit_dtype: str = "float32",
        model_train_freq: int = 250,
        rollout_batch_size: int = 100_000,
        rollout_length: RolloutSchedule = 1,
        epoch_length: int = 1000,
        real_ratio: float = 0.05,
        model_retain_epochs: int = 1,
        reward_fn: TransitionFnArg = "auto",
        termination_fn: TransitionFnArg = "auto",
        obs_process_fn: TransitionFnArg = None,
        rollout_deterministic: bool = False,
        num_threads: Optional[int] = 1,
        _init_setup_model: bool = True,
    ) -> None:
        if not 0.0 <= real_ratio <= 1.0:
            raise ValueError(f"MBPO: real_ratio must be in [0, 1], got {real_ratio}")
        if model_train_freq < 1 or rollout_batch_size < 1 or epoch_length < 1 or model_retain_epochs < 1:
            raise ValueError("MBPO: model_train_freq, rollout_batch_size, epoch_length and model_retain_epochs must be positive")
        self.rollout_length = check_rollout_schedule(rollout_length)
        model_weight_decays = model_weight_decays_for(model_net_arch, model_weight_decays, "MBPO")
        check_vector_observations("MBPO", env)
        sac_arguments = {name: value for name, value in locals().items() if name in SAC_ARGUMENTS}  # as given
        try:
            super().__init__(**sac_arguments, _init_setup_model=False)
        except AssertionError as error:
            space = getattr(self, "action_space", None)
            if space is not None and not isinstance(space, spaces.Box):
                raise ValueError(f"MBPO needs a continuous (Box) action space; got {space}") from error
            raise
        check_vector_observations("MBPO", self.env)
        check_no_vec_normalize("MBPO", self.env)
        self.ensemble_size = ensemble_size
        self.num_elites = num_elites
        self.model_net_arch = list(model_net_arch)
        self.model_activation_fn = model_activation_fn
        self.model_weight_decays = model_weight_decays
        self.model_learning_rate = model_learning_rate
        self.model_batch_size = model_batch_size
        self.model_holdout_ratio = model_holdout_ratio
        self.model_epochs = model_epochs
        self.model_patience = model_patience
        self.model_min_updates = model_min_updates
        self.model_lr_warmup_updates = model_lr_warmup_updates
        self.model_max_fit_seconds = model_max_fit_seconds
        self.model_fit_dtype = model_fit_dtype
        self.model_train_freq = model_train_freq
        self.rollout_batch_size = rollout_batch_size
        self.epoch_length = epoch_length
        self.real_ratio = real_ratio
        self.model_retain_epochs = model_retain_epochs
        self.reward_fn = reward_fn
        self.termination_fn = termination_fn
        self.obs_process_fn = obs_process_fn
        self.rollout_deterministic = rollout_deterministic
        self.env_id = env_id_of(self.env)
        self.num_threads = check_num_threads(num_threads)
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        if self.replay_buffer_class is None:
            self.replay_buffer_class = MixedReplayBuffer
        if not issubclass(self.replay_buffer_class, MixedReplayBuffer):
            raise ValueError("MBPO: replay_buffer_class must be MixedReplayBuffer or a subclass of it")
        self.replay_buffer_kwargs = {**self.replay_buffer_kwargs, "real_ratio": self.real_ratio}
        self.policy_kwargs = with_fused_adam(self.policy_kwargs, self.device)
        super()._setup_model()
        self.model_fit_seconds = 0.0  # wall seconds spent fitting the ensemble, over every learn() call
        self.model_lr_schedule = get_schedule_fn(self.model_learning_rate)
        # Saved with the model (load() restores them after this method runs):
        self._model_fitted = getattr(self, "_model_fitted", False)
        self._model_env_steps = getattr(self, "_model_env_steps", 0)  # every env step collected: the rollout epochs
        # Not saved: they describe the replay buffer, which load() starts empty.
        self._steps_since_model_train = 0
        self._model_refit_pending = False
        obs_dim = int(np.prod(self.observation_space.shape))  # type: ignore[arg-type]
        action_dim = int(np.prod(self.action_space.shape))  # type: ignore[arg-type]
        reward, termination = resolve_transition_fns("MBPO", self.env_id, self.reward_fn, self.termination_fn)
        self.dynamics = ProbabilisticEnsemble(
            obs_dim, action_dim, ensemble_size=self.ensemble_size, hidden_sizes=self.model_net_arch,
            activation_fn=self.model_activation_fn, learn_reward=reward is None, num_elites=self.num_elites,
            weight_decays=self.model_weight_decays,
            obs_process_fn=resolve_obs_process_fn("MBPO", self.env_id, self.obs_process_fn),
        ).to(self.device)
        self.model_trainer = make_model_trainer(self, self.dynamics, learning_rate=self.model_lr_schedule(1.0))
        self.dynamics_optimizer = self.model_trainer.optimizer
        self.model_env = ModelEnv(self.dynamics, reward, termination, propagation="random_model", deterministic=self.rollout_deterministic)
        self._attach_model_buffer()

    def _model_buffer_capacity(self) -> int:
        length = rollout_length_at(self.rollout_length, self.rollout_epoch)
        return rollout_capacity(self.rollout_batch_size, length, self.epoch_length, self.model_train_freq, self.model_retain_epochs)

    def _attach_model_buffer(self) -> None:
        capacity, obs_dim, action_dim = self._model_buffer_capacity(), self.dynamics.obs_dim, self.dynamics.action_dim
        self.replay_buffer.model_buffer = ModelTransitionBuffer(capacity, obs_dim, action_dim, self.device)  # type: ignore[union-attr]

    @property
    def rollout_epoch(self) -> int:
        """Epoch of the rollout-length schedule: env steps this model has collected // ``epoch_length``."""
        return self._model_env_steps // self.epoch_length

    @property
    def model_buffer(self) -> ModelTransitionBuffer:
        return self.replay_buffer.model_buffer  # type: ignore[union-attr, return-value]

    # ------------------------------------------------------------------ the MBPO step
    def _store_transition(self, replay_buffer, buffer_action, new_obs, reward, dones, infos) -> None:  # type: ignore[no-untyped-def]
        check_finite_transition("MBPO", new_obs, reward, self.num_timesteps)
        super()._store_transition(replay_buffer, buffer_action, new_obs, reward, dones, infos)
        self._steps_since_model_train += len(dones)
        self._model_env_steps += len(dones)

    def model_fit_due(self) -> bool:
        """Whether the next SAC update refits the model first (and branches new rollouts)."""
        return not self._model_fitted or self._model_refit_pending or self._steps_since_model_train >= self.model_train_freq

    def train(self, gradient_steps: int, batch_size: int = 64) -> None:
        """Refit the model and branch rollouts when due, then SAC's own gradient steps."""
        # With learning_starts near 0 the first fits wait until a holdout split is possible.
        if self.model_fit_due() and self.replay_buffer.size() >= self.model_trainer.min_transitions:  # type: ignore[union-attr]
            self.train_model_and_rollout()
        super().train(gradient_steps=gradient_steps, batch_size=batch_size)

    def train_model_and_rollout(self) -> Dict[str, float]:
        """Fit the ensemble on all real data, then fill the model buffer with fresh rollouts."""
        self._steps_since_model_train, self._model_refit_pending = 0, False
        model_lr = self.model_lr_schedule(self._current_progress_remaining)
        update_learning_rate(self.dynamics_optimizer, model_lr)
        # Read once: the fit and the rollouts' start states use the same real transitions.
        transitions = replay_buffer_transitions(self.replay_buffer, self.policy, self.device)
        fit = fit_dynamics(self, self.model_trainer, "MBPO", transitions)
        self._model_fitted = True
        start = time.perf_counter()
        length = rollout_length_at(self.rollout_length, self.rollout_epoch)
        capacity = self._model_buffer_capacity()
        self.model_buffer.resize(capacity)
        n_added = self.branched_rollouts(transitions[0], length)
        rollout_seconds = time.perf_counter() - start
        self.logger.record("train/model_learning_rate", model_lr)
        self.logger.record("rollout/model_rollout_length", length)
        self.logger.record("rollout/model_buffer_size", self.model_buffer.size)
        self.logger.record("time/model_rollout_s", rollout_seconds)
        if self.verbose >= 1:
            print(f"MBPO step {self.num_timesteps}: {n_added} model transitions (k={length}) in {rollout_seconds:.2f} s", flush=True)
        return {"fit_seconds": fit["fit_seconds"], "rollout_seconds": rollout_seconds, "added": n_added}

    def branched_rollouts(self, real_obs: th.Tensor, length: int) -> int:
        """Fill the model buffer with ``rollout_batch_size`` rollouts of ``length`` steps from ``real_obs``; return the count."""
        low, high = self.action_space.low, self.action_space.high  # type: ignore[union-attr]
        return branched_rollouts(
            self.actor, self.model_env, self.model_buffer, real_obs, self.rollout_batch_size, length, low, high, self.num_timesteps
        )

    # ------------------------------------------------------------------ persistence
    def learn(  # type: ignore[no-untyped-def]
        self: SelfMBPO, total_timesteps: int, callback=None, log_interval: int = 4, tb_log_name: str = "MBPO",
        reset_num_timesteps: bool = True, progress_bar: bool = False,
    ) -> SelfMBPO:
        with torch_threads(getattr(self, "num_threads", 1)):  # models saved before it existed: 1
            return super().learn(total_timesteps, callback, log_interval, tb_log_name, reset_num_timesteps, progress_bar)

    def load_replay_buffer(self, path, truncate_last_traj: bool = True) -> None:  # type: ignore[no-untyped-def]
        super().load_replay_buffer(path, truncate_last_traj)
        if not isinstance(self.replay_buffer, MixedReplayBuffer):
            raise ValueError("MBPO: the loaded replay buffer is not a MixedReplayBuffer")
        self._attach_model_buffer()  # model data is rebuilt, not saved
        self._steps_since_model_train = 0
        self._model_refit_pending = True  # refit on the loaded data before the next SAC update

    def set_env(self, env: GymEnv, force_reset: bool = True) -> None:
        check_no_vec_normalize("MBPO", env)
        super().set_env(env, force_reset)

    def _setup_learn(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        check_no_vec_normalize("MBPO", self.env)
        return super()._setup_learn(*args, **kwargs)

    def _excluded_save_params(self) -> List[str]:
        not_saved = ["dynamics", "model_trainer", "dynamics_optimizer", "model_env", "_steps_since_model_train", "_model_refit_pending"]
        return [*super()._excluded_save_params(), *not_saved]

    def _get_torch_save_params(self) -> Tuple[List[str], List[str]]:
        state_dicts, variables = super()._get_torch_save_params()
        return [*state_dicts, "dynamics", "dynamics_optimizer"], variables
