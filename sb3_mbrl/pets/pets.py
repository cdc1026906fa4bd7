"""PETS: probabilistic ensembles with trajectory sampling (Chua et al., 2018), the SB3 way."""
from typing import Any, ClassVar, Dict, List, Optional, Tuple, Type, TypeVar, Union

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, Schedule, TrainFreq, TrainFrequencyUnit

from sb3_mbrl.common.checks import check_finite_transition, check_no_vec_normalize, check_vector_observations
from sb3_mbrl.common.model_fit import fit_dynamics
from sb3_mbrl.common.threads import check_num_threads, torch_threads
from sb3_mbrl.common.transition_fns import TransitionFnArg, env_id_of, resolve_transition_fns
from sb3_mbrl.dynamics import EnsembleTrainer
from sb3_mbrl.pets.policies import MPCPolicy

SelfPETS = TypeVar("SelfPETS", bound="PETS")


def parse_model_train_freq(freq: Union[int, Tuple[int, str]]) -> Tuple[int, TrainFrequencyUnit]:
    """``n``, ``(n, "step")`` or ``(n, "episode")`` as ``(n, unit)``, with a clear error otherwise."""
    n, unit = (freq, "step") if not isinstance(freq, (tuple, list)) else tuple(freq)  # type: ignore[misc]
    try:
        parsed_unit = TrainFrequencyUnit(unit)
    except ValueError:
        raise ValueError(f"PETS: model_train_freq unit must be 'step' or 'episode', got {freq!r}") from None
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"PETS: model_train_freq must be a positive int or (int, 'step'|'episode'), got {freq!r}")
    return int(n), parsed_unit


class PETS(OffPolicyAlgorithm):
    """
    PETS: model predictive control over a probabilistic dynamics ensemble.

    Acts randomly for ``learning_starts`` steps, then plans every action with the ensemble
    (see :class:`MPCPolicy`), refitting the ensemble on all real data every
    ``model_train_freq`` (default: after every episode). Data is collected one step (of every
    env) at a time, so ``learn(n)`` runs exactly ``n`` steps and several envs work with an
    episodic schedule too: ``(n, "episode")`` refits once ``n`` episodes have ended, counted over
    all envs. SB3 provides the replay buffer, callbacks, logging and saving.

    ``VecNormalize`` is refused: the model is fitted on the raw observations of the replay
    buffer and normalises its inputs itself, so plans from normalised observations would be wrong.

    :param policy: ``"MlpPolicy"`` (the MPC policy) or a policy class.
    :param env: The environment (Box observations and actions), or its gymnasium id.
    :param learning_rate: Adam learning rate of the dynamics model, a float or a schedule of the
        remaining progress (1 -> 0), applied at every model fit.
    :param buffer_size: Capacity of the real-data replay buffer.
    :param learning_starts: Random-action steps before the first model fit and the first plan.
    :param batch_size: Mini-batch size of model training.
    :param model_train_freq: Refit the model every ``n`` env steps (``n`` or ``(n, "step")``,
        counted over all envs) or every ``n`` ended episodes (``(n, "episode")``).
    :param ensemble_size: Ensemble members.
    :param num_elites: Members used to plan (all when ``None``).
    :param horizon: Planning horizon.
    :param num_particles: Particles per candidate sequence (the paper uses 20; 5 keeps CPU planning
        near 0.1-0.4 s per step with the default population of 100).
    :param propagation: ``fixed_model`` (TS-inf), ``random_model`` (TS-1) or ``expectation``.
    :param optimizer: Planner: ``cem``, ``icem``, ``mppi`` or ``random``.
    :param optimizer_kwargs: Planner settings (``population_size``, ``num_elites``,
        ``iterations``, ``alpha``; iCEM ``noise_beta``; MPPI ``temperature`` ...).
    :param reward_fn: ``"auto"`` (known function of the env id if any, else learned), ``None``
        (learn the reward) or a function ``(obs, action, next_obs) -> (B,)`` tensor.
    :param termination_fn: ``"auto"`` (known function of the env id if any, else never), ``None``
        (never terminate) or a function ``(obs, action, next_obs) -> (B,)`` bool tensor.
    :param model_epochs: Maximum epochs per model fit (``None``: early stopping only).
    :param model_patience: Epochs without holdout improvement before a fit stops.
    :param holdout_ratio: Share of real data held out to stop fits and rank members.
    :param replay_buffer_class: Replay buffer class (default SB3's ``ReplayBuffer``).
    :param replay_buffer_kwargs: Its extra arguments.
    :param policy_kwargs: Extra policy arguments (``net_arch``, ``activation_fn``, ``weight_decays`` ...).
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

    def __init__(
        self,
        policy: Union[str, Type[MPCPolicy]],
        env: Union[GymEnv, str],
        learning_rate: Union[float, Schedule] = 1e-3,
        buffer_size: int = 1_000_000,
        learning_starts: int = 200,
        batch_size: int = 256,
        model_train_freq: Union[int, Tuple[int, str]] = (1, "episode"),
        ensemble_size: int = 5,
        num_elites: Optional[int] = None,
        horizon: int = 25,
        num_particles: int = 5,
        propagation: str = "fixed_model",
        optimizer: str = "cem",
        optimizer_kwargs: Optional[Dict[str, Any]] = None,
        reward_fn: TransitionFnArg = "auto",
        termination_fn: TransitionFnArg = "auto",
        model_epochs: Optional[int] = None,
        model_patience: int = 5,
        holdout_ratio: float = 0.2,
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
            learning_rate,
            buffer_size=buffer_size,
            learning_starts=learning_starts,
            batch_size=batch_size,
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
        if self.env is not None and not isinstance(self.action_space, spaces.Box):
            raise ValueError(f"PETS needs a continuous (Box) action space; got {self.action_space}")
        check_vector_observations("PETS", self.env)
        check_no_vec_normalize("PETS", self.env)
        self.model_train_freq = model_train_freq
        self._model_train_freq = parse_model_train_freq(model_train_freq)
        self.ensemble_size = ensemble_size
        self.num_elites = num_elites
        self.horizon = horizon
        self.num_particles = num_particles
        self.propagation = propagation
        self.optimizer = optimizer
        self.optimizer_kwargs = dict(optimizer_kwargs or {})
        self.reward_fn = reward_fn
        self.termination_fn = termination_fn
        self.model_epochs = model_epochs
        self.model_patience = model_patience
        self.holdout_ratio = holdout_ratio
        self.env_id = env_id_of(self.env)
        self.num_threads = check_num_threads(num_threads)
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        self._setup_lr_schedule()
        # Models saved before the step-by-step collection kept an episodic train_freq.
        self.train_freq = TrainFreq(1, TrainFrequencyUnit.STEP)
        self._model_train_freq = parse_model_train_freq(self.model_train_freq)
        # Real data collected since the last model fit (kept across learn() calls; not saved, since
        # load() starts with an empty replay buffer).
        self._steps_since_fit = 0
        self._episodes_since_fit = 0
        self._model_refit_pending = False  # set by load_replay_buffer: refit on the loaded data
        self.set_random_seed(self.seed)
        self.model_fit_seconds = 0.0  # wall seconds spent fitting the ensemble, over every learn() call
        if self.replay_buffer_class is None:
            self.replay_buffer_class = ReplayBuffer
        self.replay_buffer = self.replay_buffer_class(
            self.buffer_size,
            self.observation_space,
            self.action_space,
            device=self.device,
            n_envs=self.n_envs,
            optimize_memory_usage=self.optimize_memory_usage,
            **self.replay_buffer_kwargs,
        )
        reward, termination = resolve_transition_fns("PETS", self.env_id, self.reward_fn, self.termination_fn)
        self.policy = self.policy_class(  # type: ignore[assignment]
            self.observation_space,
            self.action_space,
            self.lr_schedule,
            ensemble_size=self.ensemble_size,
            num_elites=self.num_elites,
            horizon=self.horizon,
            num_particles=self.num_particles,
            propagation=self.propagation,
            planner=self.optimizer,
            planner_kwargs=self.optimizer_kwargs,
            reward_fn=reward,
            termination_fn=termination,
            **self.policy_kwargs,
        )
        self.policy = self.policy.to(self.device)
        self.model_trainer = EnsembleTrainer(
            self.policy.dynamics,
            batch_size=self.batch_size,
            holdout_ratio=self.holdout_ratio,
            max_epochs=self.model_epochs,
            patience=self.model_patience,
            optimizer=self.policy.optimizer,
        )

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
            self.policy.use_plan_slot("collect")
            try:
                unscaled_action, _ = self.predict(self._last_obs, deterministic=False)  # type: ignore[arg-type]
            finally:
                self.policy.use_plan_slot("predict")
        scaled_action = self.policy.scale_action(unscaled_action)
        if action_noise is not None:
            scaled_action = np.clip(scaled_action + action_noise(), -1, 1)
        return self.policy.unscale_action(scaled_action), scaled_action

    def _store_transition(
        self,
        replay_buffer: ReplayBuffer,
        buffer_action: np.ndarray,
        new_obs: Union[np.ndarray, Dict[str, np.ndarray]],
        reward: np.ndarray,
        dones: np.ndarray,
        infos: List[Dict[str, Any]],
    ) -> None:
        check_finite_transition("PETS", new_obs, reward, self.num_timesteps)  # type: ignore[arg-type]
        super()._store_transition(replay_buffer, buffer_action, new_obs, reward, dones, infos)
        self._steps_since_fit += len(dones)
        self._episodes_since_fit += int(np.sum(dones))
        if dones.any():
            self.policy.use_plan_slot("collect")
            self.policy.reset_plans(dones)
            self.policy.use_plan_slot("predict")

    # ------------------------------------------------------------------ model fitting
    def model_fit_due(self) -> bool:
        """Whether ``model_train_freq`` says to refit now (always before the first fit)."""
        if not bool(self.policy.fitted) or self._model_refit_pending:
            return True
        n, unit = self._model_train_freq
        done = self._episodes_since_fit if unit == TrainFrequencyUnit.EPISODE else self._steps_since_fit
        return done >= n

    def train(self, gradient_steps: int, batch_size: int) -> None:
        """Called by SB3 after every collection step: refit the ensemble when ``model_train_freq`` is due."""
        if self.model_fit_due():
            self.fit_model()

    def fit_model(self) -> None:
        """Refit the ensemble on every real transition collected so far."""
        if self.replay_buffer.size() < self.model_trainer.min_transitions:  # type: ignore[union-attr]
            return  # too little data for a holdout split yet (learning_starts below a few steps)
        self._update_learning_rate(self.policy.optimizer)  # a learning-rate schedule takes effect here
        self._steps_since_fit, self._episodes_since_fit, self._model_refit_pending = 0, 0, False
        self.policy.set_training_mode(True)
        fit_dynamics(self, self.model_trainer, "PETS")
        self.policy.fitted.fill_(True)
        self.policy.set_training_mode(False)
        self._n_updates += 1
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")

    def _dump_logs(self) -> None:
        # One window (the planned steps since the last dump) for every planning statistic.
        stats = self.policy.planning_stats()
        if stats:
            self.logger.record("time/planning_ms", stats["mean"])
            self.logger.record("time/planning_ms_median", stats["median"])
            self.logger.record("time/planning_ms_p95", stats["p95"])
            self.logger.record("time/planning_ms_max", stats["max"])
            self.logger.record("time/planning_steps", int(stats["steps"]))
        super()._dump_logs()

    def learn(
        self: SelfPETS,
        total_timesteps: int,
        callback=None,
        log_interval: int = 1,
        tb_log_name: str = "PETS",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfPETS:
        with torch_threads(getattr(self, "num_threads", 1)):  # models saved before it existed: 1
            return super().learn(
                total_timesteps=total_timesteps,
                callback=callback,
                log_interval=log_interval,
                tb_log_name=tb_log_name,
                reset_num_timesteps=reset_num_timesteps,
                progress_bar=progress_bar,
            )

    def load_replay_buffer(self, path, truncate_last_traj: bool = True) -> None:  # type: ignore[no-untyped-def]
        super().load_replay_buffer(path, truncate_last_traj)
        self._steps_since_fit, self._episodes_since_fit = 0, 0
        self._model_refit_pending = True  # the next train() refits on the loaded data

    def set_env(self, env: GymEnv, force_reset: bool = True) -> None:
        check_no_vec_normalize("PETS", env)
        super().set_env(env, force_reset)

    def _setup_learn(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        check_no_vec_normalize("PETS", self.env)
        return super()._setup_learn(*args, **kwargs)

    def _excluded_save_params(self) -> List[str]:
        return [*super()._excluded_save_params(), "model_trainer", "_steps_since_fit", "_episodes_since_fit", "_model_refit_pending"]

    def _get_torch_save_params(self) -> Tuple[List[str], List[str]]:
        return ["policy", "policy.optimizer"], []
