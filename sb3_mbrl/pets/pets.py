"""PETS: probabilistic ensembles with trajectory sampling (Chua et al., 2018), the SB3 way."""
from typing import Any, ClassVar, Dict, List, Optional, Sequence, Tuple, Type, TypeVar, Union

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, Schedule, TrainFreq, TrainFrequencyUnit
from torch import nn

from sb3_mbrl.common.checks import check_finite_transition, check_no_vec_normalize, check_vector_observations
from sb3_mbrl.common.deprecation import renamed_arguments
from sb3_mbrl.common.model_fit import fit_dynamics, make_model_trainer
from sb3_mbrl.common.optimizers import with_fused_adam
from sb3_mbrl.common.threads import check_num_threads, torch_threads
from sb3_mbrl.common.transition_fns import (
    TransitionFnArg,
    env_id_of,
    resolve_obs_process_fn,
    resolve_terminal_value_fn,
    resolve_transition_fns,
)
from sb3_mbrl.dynamics import ProbabilisticEnsemble, model_weight_decays_for
from sb3_mbrl.dynamics.weight_decays import WeightDecays
from sb3_mbrl.pets.action_spaces import check_action_space
from sb3_mbrl.pets.legacy import RENAMED_ARGUMENTS, RENAMED_POLICY_KWARGS, upgrade_saved_attributes
from sb3_mbrl.common.planning_times import record_planning_times
from sb3_mbrl.pets.policies import MPCPolicy
from sb3_mbrl.pets.refit_schedule import ModelTrainFreq, RefitSchedule

SelfPETS = TypeVar("SelfPETS", bound="PETS")


class PETS(OffPolicyAlgorithm):
    """
    PETS: model predictive control over a probabilistic dynamics ensemble.

    Acts randomly for ``learning_starts`` steps, then plans every action with the ensemble
    (see :class:`MPCPolicy`), refitting the ensemble on all real data every
    ``model_train_freq`` (default: after every episode). Data is collected one step (of every
    env) at a time, so ``learn(n)`` runs exactly ``n`` steps and several envs work with an
    episodic schedule too: ``(n, "episode")`` refits once ``n`` episodes have ended, counted over
    all envs. SB3 provides the replay buffer, callbacks, logging and saving. The ensemble is
    ``model.dynamics`` (as in MBPO), kept by the policy.

    The names are MBPO's for the same things; the old ones (``optimizer``, ``learning_rate``,
    ``policy_kwargs["net_arch"]`` ...) work until the next release, with a ``FutureWarning``
    (:mod:`sb3_mbrl.pets.legacy` lists them).

    ``VecNormalize`` is refused: the model is fitted on the raw observations of the replay
    buffer and normalises its inputs itself, so plans from normalised observations would be wrong.
    ``Discrete`` actions enter the model one-hot and are planned by a categorical CEM (``"cem"``)
    or random shooting (``"random"``); iCEM and MPPI are continuous only.

    The model's optimiser is fused Adam on CPU and CUDA unless ``policy_kwargs``' ``optimizer_kwargs``
    choose ``fused`` or ``foreach`` (or another ``optimizer_class``): the same update, one kernel per step.

    :param policy: ``"MlpPolicy"`` (the MPC policy) or a policy class.
    :param env: The environment (Box observations; Box or Discrete actions), or its gymnasium id.
    :param model_learning_rate: Adam learning rate of the dynamics model, a float or a schedule of the
        remaining progress (1 -> 0), applied at every model fit (SB3's ``learning_rate``).
    :param buffer_size: Capacity of the real-data replay buffer.
    :param learning_starts: Random-action steps before the first model fit and the first plan.
    :param model_batch_size: Mini-batch size of model training.
    :param model_train_freq: Refit the model every ``n`` env steps (``n`` or ``(n, "step")``,
        counted over all envs) or every ``n`` ended episodes (``(n, "episode")``).
    :param ensemble_size: Ensemble members.
    :param num_elites: Members used to plan (all when ``None``).
    :param horizon: Planning horizon.
    :param num_particles: Particles per candidate sequence (the paper uses 20; 5 keeps CPU planning
        near 0.1-0.4 s per step with the default population of 100).
    :param propagation: ``fixed_model`` (TS-inf), ``random_model`` (TS-1) or ``expectation``.
    :param planner: ``cem``, ``icem``, ``mppi`` or ``random``.
    :param planner_kwargs: Planner settings (``population_size``, ``num_elites``,
        ``iterations``, ``alpha``; iCEM ``noise_beta``; MPPI ``temperature`` ...).
    :param reward_fn: ``"auto"`` (known function of the env id if any, else learned), ``None``
        (learn the reward) or a function ``(obs, action, next_obs) -> (B,)`` tensor.
    :param termination_fn: ``"auto"`` (known function of the env id if any, else never; for
        InvertedPendulum-v4 plans also end with the cart within 0.1 of the end of its rail,
        :func:`sb3_mbrl.envs.terminations.inverted_pendulum_planning_termination`), ``None``
        (never terminate) or a function ``(obs, action, next_obs) -> (B,)`` bool tensor.
    :param terminal_value_fn: Value of the last predicted state of a candidate that has not
        terminated, added to its return: ``"auto"`` (the known one of the env id, never negative:
        CartPole-v1 and Acrobot-v1, below one step's reward so they only order candidates with equal
        returns; InvertedPendulum-v4, up to 5; none for other tasks),
        ``None`` (none) or a function ``obs (B, obs_dim) -> (B,)`` float tensor
        (:mod:`sb3_mbrl.envs.terminal_values`).
    :param obs_process_fn: What the dynamics model reads of an observation (it still predicts the
        change of all of it): ``None`` (all of it), ``"auto"`` (the known processing of the env id:
        InvertedPendulum-v4 drops the cart position, :mod:`sb3_mbrl.envs.model_inputs`; all of it for
        other tasks) or a function ``obs (..., obs_dim) -> (..., d)`` tensor. ``None`` by default, so
        models saved before it existed load as they were; the zoo entry of InvertedPendulum-v4 sets ``"auto"``.
    :param model_epochs: Maximum epochs per model fit (``None``: early stopping only).
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
    :param model_holdout_ratio: Share of real data held out to stop fits and rank members.
    :param model_net_arch: Hidden layer sizes of each member.
    :param model_activation_fn: Their activation.
    :param model_weight_decays: L2 coefficient per model layer (hidden then output): ``"auto"`` (the
        papers' decays spread over the layers of ``model_net_arch``), ``None`` (none) or a list.
    :param replay_buffer_class: Replay buffer class (default SB3's ``ReplayBuffer``).
    :param replay_buffer_kwargs: Its extra arguments.
    :param policy_kwargs: Extra :class:`MPCPolicy` arguments (``planning_dtype``, ``deterministic_seed`` ...).
    :param stats_window_size: Episodes averaged for the rollout logs.
    :param tensorboard_log: Tensorboard log folder.
    :param verbose: 0 silent, 1 info (logs and model fits), 2 debug.
    :param seed: Random seed.
    :param device: Device of the model and the planner (``auto``, ``cpu``, ``cuda``).
    :param num_threads: Torch intra-op threads while ``learn()`` runs (the caller's setting is
        restored after): 1 by default, which stays fast when other jobs share the cores (README,
        "Threads"); ``None`` keeps torch's own setting.
    :param _init_setup_model: Build the model at construction.
    """

    policy_aliases: ClassVar[Dict[str, Type[BasePolicy]]] = {"MlpPolicy": MPCPolicy}
    policy: MPCPolicy

    @renamed_arguments("PETS", RENAMED_ARGUMENTS, {"policy_kwargs": RENAMED_POLICY_KWARGS})
    def __init__(
        self,
        policy: Union[str, Type[MPCPolicy]],
        env: Union[GymEnv, str],
        model_learning_rate: Union[float, Schedule] = 1e-3,
        buffer_size: int = 1_000_000,
        learning_starts: int = 200,
        model_batch_size: int = 256,
        model_train_freq: ModelTrainFreq = (1, "episode"),
        ensemble_size: int = 5,
        num_elites: Optional[int] = None,
        horizon: int = 25,
        num_particles: int = 5,
        propagation: str = "fixed_model",
        planner: str = "cem",
        planner_kwargs: Optional[Dict[str, Any]] = None,
        reward_fn: TransitionFnArg = "auto",
        termination_fn: TransitionFnArg = "auto",
        terminal_value_fn: TransitionFnArg = "auto",
        obs_process_fn: TransitionFnArg = None,
        model_epochs: Optional[int] = None,
        model_patience: int = 5,
        model_min_updates: int = 100,
        model_lr_warmup_updates: int = 50,
        model_max_fit_seconds: Optional[float] = None,
        model_fit_dtype: str = "float32",
        model_holdout_ratio: float = 0.2,
        model_net_arch: Sequence[int] = (200, 200, 200, 200),
        model_activation_fn: Type[nn.Module] = nn.SiLU,
        model_weight_decays: WeightDecays = "auto",
        replay_buffer_class: Optional[Type[ReplayBuffer]] = None,
        replay_buffer_kwargs: Optional[Dict[str, Any]] = None,
        policy_kwargs: Optional[Dict[str, Any]] = None,
        stats_window_size: int = 100,
        tensorboard_log: Optional[str] = None,
        verbose: int = 0,
        seed: Optional[int] = None,
        device: Union[th.device, str] = "auto",
        num_threads: Optional[int] = 1,
        _init_setup_model: bool = True,
    ) -> None:
        check_vector_observations("PETS", env)
        super().__init__(
            policy,
            env,
            model_learning_rate,  # SB3's learning_rate: lr_schedule, _update_learning_rate, train/learning_rate
            buffer_size=buffer_size,
            learning_starts=learning_starts,
            batch_size=model_batch_size,
            tau=1.0,
            gamma=1.0,
            train_freq=1,  # collect step by step; train() refits when model_train_freq is due
            gradient_steps=1,
            replay_buffer_class=replay_buffer_class,
            replay_buffer_kwargs=replay_buffer_kwargs,
            policy_kwargs=policy_kwargs,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            verbose=verbose,
            device=device,
            seed=seed,
            sde_support=False,
            support_multi_env=True,
        )
        if self.env is not None:
            check_action_space(self.action_space)  # Box, or Discrete (one-hot into the model)
        check_vector_observations("PETS", self.env)
        check_no_vec_normalize("PETS", self.env)
        self.model_train_freq = model_train_freq
        self.ensemble_size = ensemble_size
        self.num_elites = num_elites
        self.horizon = horizon
        self.num_particles = num_particles
        self.propagation = propagation
        self.planner = planner
        self.planner_kwargs = dict(planner_kwargs or {})
        self.reward_fn = reward_fn
        self.termination_fn = termination_fn
        self.terminal_value_fn = terminal_value_fn
        self.obs_process_fn = obs_process_fn
        self.model_learning_rate = model_learning_rate
        self.model_batch_size = model_batch_size
        self.model_epochs = model_epochs
        self.model_patience = model_patience
        self.model_min_updates = model_min_updates
        self.model_lr_warmup_updates = model_lr_warmup_updates
        self.model_max_fit_seconds = model_max_fit_seconds
        self.model_fit_dtype = model_fit_dtype
        self.model_holdout_ratio = model_holdout_ratio
        self.model_net_arch = list(model_net_arch)
        self.model_activation_fn = model_activation_fn
        self.model_weight_decays = model_weight_decays
        self.env_id = env_id_of(self.env)
        self.num_threads = check_num_threads(num_threads)
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        upgrade_saved_attributes(self)  # a model saved under the old names
        self.model_weight_decays = model_weight_decays_for(self.model_net_arch, self.model_weight_decays, "PETS")
        self.learning_rate, self.batch_size = self.model_learning_rate, self.model_batch_size  # SB3's names for them
        self._setup_lr_schedule()
        self.train_freq = TrainFreq(1, TrainFrequencyUnit.STEP)  # also for models saved with an episodic one
        self._refits = RefitSchedule(self.model_train_freq)  # real data since the last fit; not saved
        self.set_random_seed(self.seed)
        self.model_fit_seconds = 0.0  # wall seconds spent fitting the ensemble, over every learn() call
        if self.replay_buffer_class is None:
            self.replay_buffer_class = ReplayBuffer
        self.replay_buffer = self.replay_buffer_class(
            self.buffer_size, self.observation_space, self.action_space, device=self.device, n_envs=self.n_envs,
            optimize_memory_usage=self.optimize_memory_usage, **self.replay_buffer_kwargs,
        )
        reward, termination = resolve_transition_fns("PETS", self.env_id, self.reward_fn, self.termination_fn, planning=True)
        terminal_value = resolve_terminal_value_fn("PETS", self.env_id, self.terminal_value_fn)
        obs_process = resolve_obs_process_fn("PETS", self.env_id, self.obs_process_fn)
        self.policy_kwargs = with_fused_adam(self.policy_kwargs, self.device)  # the model's optimiser
        self.policy = self.policy_class(  # type: ignore[assignment]
            self.observation_space,
            self.action_space,
            self.lr_schedule,
            # the settings MPCPolicy takes under the same names
            **{name: getattr(self, name) for name in ("ensemble_size", "num_elites", "horizon", "num_particles", "propagation")},
            planner=self.planner,
            planner_kwargs=self.planner_kwargs,
            reward_fn=reward,
            termination_fn=termination,
            terminal_value_fn=terminal_value,
            obs_process_fn=obs_process,
            net_arch=self.model_net_arch,
            activation_fn=self.model_activation_fn,
            weight_decays=self.model_weight_decays,
            **self.policy_kwargs,
        ).to(self.device)
        self.model_trainer = make_model_trainer(self, self.dynamics, optimizer=self.policy.optimizer)

    @property
    def dynamics(self) -> ProbabilisticEnsemble:
        """The dynamics ensemble (the policy's, ``policy.dynamics``), where MBPO keeps its own: ``model.dynamics``."""
        return self.policy.dynamics

    # ------------------------------------------------------------------ acting
    def _sample_action(
        self, learning_starts: int, action_noise: Optional[ActionNoise] = None, n_envs: int = 1
    ) -> Tuple[np.ndarray, np.ndarray]:
        """Random actions during warm-up, then MPC; the first plan waits for the first model fit."""
        if self.num_timesteps >= learning_starts and not bool(self.policy.fitted):
            self.fit_model()  # waits until there is enough data for a holdout split
        if self.num_timesteps < learning_starts or not bool(self.policy.fitted):
            unscaled_action = np.array([self.action_space.sample() for _ in range(n_envs)])
        else:
            with self.policy.plan_slot("collect"):
                unscaled_action, _ = self.predict(self._last_obs, deterministic=False)  # type: ignore[arg-type]
        if isinstance(self.action_space, spaces.Discrete):
            return unscaled_action, unscaled_action  # SB3 stores Discrete actions as they are
        scaled_action = self.policy.scale_action(unscaled_action)
        if action_noise is not None:
            scaled_action = np.clip(scaled_action + action_noise(), -1, 1)
        return self.policy.unscale_action(scaled_action), scaled_action

    def _store_transition(self, replay_buffer, buffer_action, new_obs, reward, dones, infos) -> None:  # type: ignore[no-untyped-def]
        check_finite_transition("PETS", new_obs, reward, self.num_timesteps)
        super()._store_transition(replay_buffer, buffer_action, new_obs, reward, dones, infos)
        self._refits.record(dones)
        if dones.any():
            with self.policy.plan_slot("collect"):
                self.policy.reset_plans(dones)

    # ------------------------------------------------------------------ model fitting
    def model_fit_due(self) -> bool:
        """Whether ``model_train_freq`` says to refit now (always before the first fit)."""
        return not bool(self.policy.fitted) or self._refits.due()

    def train(self, gradient_steps: int, batch_size: int) -> None:
        """Called by SB3 after every collection step: refit the ensemble when ``model_train_freq`` is due."""
        if self.model_fit_due():
            self.fit_model()

    def fit_model(self) -> None:
        """Refit the ensemble on every real transition collected so far."""
        if self.replay_buffer.size() < self.model_trainer.min_transitions:  # type: ignore[union-attr]
            return  # too little data for a holdout split yet (learning_starts below a few steps)
        self._update_learning_rate(self.policy.optimizer)  # a learning-rate schedule takes effect here
        self._refits.restart()
        self.policy.set_training_mode(True)
        fit_dynamics(self, self.model_trainer, "PETS")
        self.policy.fitted.fill_(True)
        self.policy.set_training_mode(False)
        self._n_updates += 1
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")

    def _dump_logs(self) -> None:
        record_planning_times(self.logger, self.policy.planning_stats())  # the planned steps since the last dump
        super()._dump_logs()

    def learn(  # type: ignore[no-untyped-def]
        self: SelfPETS, total_timesteps: int, callback=None, log_interval: int = 1, tb_log_name: str = "PETS",
        reset_num_timesteps: bool = True, progress_bar: bool = False,
    ) -> SelfPETS:
        with torch_threads(getattr(self, "num_threads", 1)):  # models saved before it existed: 1
            return super().learn(total_timesteps, callback, log_interval, tb_log_name, reset_num_timesteps, progress_bar)

    def load_replay_buffer(self, path, truncate_last_traj: bool = True) -> None:  # type: ignore[no-untyped-def]
        super().load_replay_buffer(path, truncate_last_traj)
        self._refits.restart(pending=True)  # the next train() refits on the loaded data

    def set_env(self, env: GymEnv, force_reset: bool = True) -> None:
        check_no_vec_normalize("PETS", env)
        super().set_env(env, force_reset)

    def _setup_learn(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        check_no_vec_normalize("PETS", self.env)
        return super()._setup_learn(*args, **kwargs)

    def _excluded_save_params(self) -> List[str]:
        return [*super()._excluded_save_params(), "model_trainer", "_refits"]

    def _get_torch_save_params(self) -> Tuple[List[str], List[str]]:
        return ["policy", "policy.optimizer"], []
