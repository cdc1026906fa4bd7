"""LOOP: MPC over the learned ensemble, bootstrapped by SAC's critic (Sikchi et al., 2021)."""
import time
from collections import deque
from typing import Any, Dict, List, Optional, Tuple, Type, TypeVar, Union

import numpy as np
import torch as th
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.type_aliases import GymEnv
from stable_baselines3.sac.policies import SACPolicy

from sb3_mbrl.common.planning_times import planning_summary, record_planning_times
from sb3_mbrl.common.receding_horizon import RecedingHorizon, seeded_draws
from sb3_mbrl.common.transition_fns import TransitionFnArg
from sb3_mbrl.dynamics import ModelEnv
from sb3_mbrl.dynamics.inference import planning_compute_dtype
from sb3_mbrl.loop.critic_value import check_critic_value, critic_value_fn
from sb3_mbrl.loop.policy_prior import actor_rollouts
from sb3_mbrl.loop.value_error import EpisodeValueError, value_trusted
from sb3_mbrl.mbpo import MBPO
from sb3_mbrl.planning import ICEMOptimizer, TrajectoryOptimizer, make_optimizer

SelfLOOP = TypeVar("SelfLOOP", bound="LOOP")
# Where each step's search starts: the last plan shifted by one step, or the actor's mean rollout.
WARM_STARTS = ("plan", "actor")


class LOOP(MBPO):
    """
    Learning Off-Policy with Online Planning: SB3's SAC trained exactly as :class:`MBPO` trains it
    (real transitions plus short branched model rollouts, every MBPO and SAC argument), that acts
    by planning over the same ensemble.

    It plans in ``predict`` (evaluations, deployment; data collection too with ``plan_collection``):
    it optimises action sequences of ``horizon`` model steps (``num_particles`` particles each,
    ``propagation`` as in PETS), each scored by its discounted predicted rewards
    plus ``gamma ** horizon`` times SAC's value of its last predicted state
    (``terminal_value_fn``), and takes the first action of the best. The actor's own rollouts over
    the model (``policy_prior_samples`` of them, the first with its mean actions) join the first
    iteration's candidates; the previous plan, shifted by one step, is the search's mean and iCEM's
    kept elites carry over (per env; plans reset at episode starts).

    Before the first model fit it acts as SAC does: random for ``learning_starts`` steps, then
    the actor. ``plan_actions=False`` acts with the actor alone, as MBPO does, e.g. to deploy
    without planning: ``LOOP.load(path, plan_actions=False)``, or ``model.plan_actions = False``;
    ``model.policy`` is SAC's policy and its ``predict`` never plans.

    ``predict(deterministic=True)`` plans with the model's mean next states and draws its
    candidates from a generator seeded with ``deterministic_seed`` at every call (as PETS does);
    ``deterministic=False`` draws fresh candidates and samples the model.

    Takes every :class:`MBPO` argument (as keywords) plus:

    :param policy: SAC's policy (``"MlpPolicy"``, MBPO's ``policy_aliases``) or a SAC policy class.
    :param env: The environment (Box actions with finite bounds), or its gymnasium id.
    :param learning_starts: Random-action steps before SAC's first update and the first model fit.
    :param horizon: Planning horizon ``H`` in model steps (the paper: 3-5).
    :param num_particles: Particles per candidate sequence.
    :param propagation: ``fixed_model`` (TS-inf), ``random_model`` (TS-1) or ``expectation``.
    :param planner: ``icem`` (default), ``cem``, ``mppi`` or ``random``; a policy prior needs ``icem``.
    :param planner_kwargs: Planner settings (``population_size``, ``num_elites``, ``iterations`` ...).
    :param policy_prior_samples: Actor rollouts added to the first iteration's candidates (0: none).
    :param warm_start: The mean of each step's search: ``"plan"``, the previous plan shifted by one
        step, or ``"actor"``, the actor's mean rollout over the model (the first prior sample), so
        that the planner refines what the actor would do and the data it collects stays near the
        actor's (LOOP's answer to "actor divergence", the critic judging states its actor never sees).
    :param terminal_value_fn: Value of a candidate's last predicted state: ``"critic"`` (the smaller
        twin Q at the actor's mean action), ``"soft_critic"`` (SAC's soft value at a sampled action),
        ``None`` (none: planning over the model alone) or a function ``obs (B, obs_dim) -> (B,)``.
    :param value_starts: Env steps collected (by this model, over every ``learn()`` call and across
        ``load()``, as MBPO's rollout epochs count them) before the terminal value enters the plans:
        a critic that misjudges the states plans end in (early, or trained on planned data) leads a
        planner that maximises it astray (README, LOOP).
    :param value_max_error: Let the terminal value into the plans only while its relative error on
        the last real episode that ended is at most this (``None``: no gate). At the end of every
        real episode LOOP collects, the value of its states is compared with their discounted real
        returns-to-go (bootstrapped with the value of the last state when the episode was truncated):
        ``|mean(V) - mean(G)| / mean(|G without the bootstrap|)`` over the first half of the episode, logged as
        ``train/value_error``. Until an episode has ended the plans go without the value. On
        Pendulum-v1 the critic of a poor actor valued the starts near -100 while the actor's episodes
        scored -1,150, and plans with it failed where plans without it swung up (README, LOOP).
    :param planning_dtype: ``"float32"``, ``"bfloat16"`` or ``"auto"``: dtype of the ensemble
        forward while planning (``"auto"``: bf16 only where it runs natively).
    :param deterministic_seed: Seed of the planner's draws at every ``predict(deterministic=True)``.
    :param plan_actions: Act by planning (after the first model fit); ``False``: with the actor alone.
    :param plan_collection: Plan the actions of data collection too, as the paper does. ``False``
        (default): SAC's actor collects, as in MBPO, and planning acts everywhere else (``predict``:
        evaluations, deployment). On Pendulum-v1 SAC trained on planned data overestimated its
        values (+20 to +39 where every return is negative) and plans that leaned on them failed
        (-1,115 at 600 env steps, -100 without the value; README, LOOP).
    :param kwargs: Every other :class:`MBPO` argument.
    """

    def __init__(
        self,
        policy: Union[str, Type[SACPolicy]],
        env: Union[GymEnv, str],
        learning_starts: int = 500,
        horizon: int = 5,
        num_particles: int = 4,
        propagation: str = "fixed_model",
        planner: str = "icem",
        planner_kwargs: Optional[Dict[str, Any]] = None,
        policy_prior_samples: int = 10,
        warm_start: str = "plan",
        terminal_value_fn: TransitionFnArg = "critic",
        value_starts: int = 0,
        value_max_error: Optional[float] = None,
        planning_dtype: str = "float32",
        deterministic_seed: int = 0,
        plan_actions: bool = True,
        plan_collection: bool = False,
        _init_setup_model: bool = True,
        **kwargs: Any,
    ) -> None:
        if horizon < 1 or num_particles < 1 or policy_prior_samples < 0 or value_starts < 0:
            raise ValueError(
                f"LOOP: horizon and num_particles must be positive, policy_prior_samples and value_starts non-negative, "
                f"got {horizon}, {num_particles}, {policy_prior_samples}, {value_starts}"
            )
        check_critic_value(terminal_value_fn)
        if value_max_error is not None and not value_max_error > 0:
            raise ValueError(f"LOOP: value_max_error must be positive or None, got {value_max_error!r}")
        if warm_start not in WARM_STARTS or (warm_start == "actor" and policy_prior_samples < 1):
            raise ValueError(
                f"LOOP: warm_start must be one of {WARM_STARTS} ('actor' needs policy_prior_samples >= 1), got "
                f"{warm_start!r} with policy_prior_samples={policy_prior_samples}"
            )
        self.horizon = horizon
        self.num_particles = num_particles
        self.propagation = propagation
        self.planner = planner
        self.planner_kwargs = dict(planner_kwargs or {})
        self.policy_prior_samples = policy_prior_samples
        self.warm_start = warm_start
        self.terminal_value_fn = terminal_value_fn
        self.value_starts = value_starts
        self.value_max_error = value_max_error
        self.value_error: Optional[float] = None  # of the last real episode that ended (saved with the model)
        self.planning_dtype = planning_dtype
        self.deterministic_seed = int(deterministic_seed)
        self.plan_actions = plan_actions
        self.plan_collection = plan_collection
        super().__init__(policy, env, learning_starts=learning_starts, _init_setup_model=_init_setup_model, **kwargs)

    def _setup_model(self) -> None:
        super()._setup_model()
        value = self.terminal_value_fn
        self.terminal_value = critic_value_fn(self, value) if isinstance(value, str) else value
        self.planning_env = ModelEnv(
            self.dynamics,
            self.model_env.reward_fn,  # MBPO's, resolved from reward_fn / termination_fn
            self.model_env.termination_fn,
            propagation=self.propagation,
            terminal_value_fn=self.terminal_value,
            compute_dtype=planning_compute_dtype(self.planning_dtype),
            discount=self.gamma,
        )
        self.receding_horizon = RecedingHorizon(self._make_planner)
        self.episode_value_error = EpisodeValueError(self.n_envs, self.gamma)  # the episodes in progress; not saved
        # Milliseconds of each planned step of data collection since the last log dump (bounded
        # in case nothing dumps): the time/planning_ms* logs, as PETS writes them.
        self.planning_ms: deque = deque(maxlen=100_000)
        if self.policy_prior_samples > 0 and not isinstance(self.receding_horizon.planner, ICEMOptimizer):
            raise ValueError(
                f"LOOP: policy_prior_samples={self.policy_prior_samples} needs the 'icem' planner (its first iteration "
                f"takes extra candidates); with planner={self.planner!r} set policy_prior_samples=0"
            )

    def _make_planner(self, device: th.device) -> TrajectoryOptimizer:
        low, high = self.action_space.low, self.action_space.high  # type: ignore[union-attr]
        return make_optimizer(self.planner, low, high, self.horizon, device=device, **self.planner_kwargs)

    # ------------------------------------------------------------------ acting
    def predict(
        self,
        observation: Union[np.ndarray, Dict[str, np.ndarray]],
        state: Optional[Tuple[np.ndarray, ...]] = None,
        episode_start: Optional[np.ndarray] = None,
        deterministic: bool = False,
    ) -> Tuple[np.ndarray, Optional[Tuple[np.ndarray, ...]]]:
        """
        The planned action of each observation (SAC's actor before the first model fit, or with
        ``plan_actions=False``); see the class docstring for ``deterministic``.
        """
        collecting = self.receding_horizon.active_slot == "collect"
        if not self.plan_actions or not self._model_fitted or (collecting and not self.plan_collection):
            return super().predict(observation, state, episode_start, deterministic)
        if episode_start is not None:
            self.receding_horizon.reset(np.atleast_1d(episode_start))
        start = time.perf_counter()
        self.policy.set_training_mode(False)
        obs, vectorized = self.policy.obs_to_tensor(observation)
        obs = obs.float().reshape(obs.shape[0], -1)  # (M, obs_dim)
        if deterministic:
            sampling = self.planning_env.deterministic
            with seeded_draws(self.deterministic_seed, obs.device):
                self.planning_env.deterministic = True
                try:
                    plan = self._plan(obs)
                finally:
                    self.planning_env.deterministic = sampling
        else:
            plan = self._plan(obs)
        actions = plan[:, 0].cpu().numpy().reshape((-1, *self.action_space.shape))  # type: ignore[misc]
        actions = np.clip(actions, self.action_space.low, self.action_space.high)  # type: ignore[union-attr]
        if not vectorized:
            actions = actions.squeeze(axis=0)
        if collecting:  # data collection only, not evaluations
            self.planning_ms.append(1000 * (time.perf_counter() - start))
        return actions, state

    def value_in_plans(self) -> bool:
        """
        Whether the next plans add the terminal value: after ``value_starts`` env steps (before them
        the critic has seen too little to judge the last states) and, with ``value_max_error``, while
        it predicts the real returns of the episodes collected.
        """
        return self._model_env_steps >= self.value_starts and value_trusted(self.value_error, self.value_max_error)

    @th.no_grad()
    def _plan(self, obs: th.Tensor) -> th.Tensor:
        """Plans ``(M, H, A)`` from ``obs (M, obs_dim)``, warm-started and kept for the next step."""
        self.planning_env.terminal_value_fn = self.terminal_value if self.value_in_plans() else None
        prior = None
        if self.policy_prior_samples > 0:
            low, high = self.action_space.low, self.action_space.high  # type: ignore[union-attr]
            prior = actor_rollouts(self.actor, self.planning_env, obs, self.policy_prior_samples, self.horizon, low, high)

        def objective(candidates: th.Tensor) -> th.Tensor:
            return self.planning_env.evaluate_action_sequences(candidates, obs, self.num_particles)  # (M, P)

        initial_mean = prior[:, 0] if self.warm_start == "actor" else None  # type: ignore[index]
        return self.receding_horizon.step(obs.shape[0], obs.device, objective, prior, initial_mean)

    def _sample_action(
        self, learning_starts: int, action_noise: Optional[ActionNoise] = None, n_envs: int = 1
    ) -> Tuple[np.ndarray, np.ndarray]:
        """SAC's own action choice; its ``predict`` plans in the data-collection warm-start slot."""
        with self.receding_horizon.plan_slot("collect"):
            return super()._sample_action(learning_starts, action_noise, n_envs)

    def _store_transition(self, replay_buffer, buffer_action, new_obs, reward, dones, infos) -> None:  # type: ignore[no-untyped-def]
        obs = self._last_obs  # SB3's _store_transition moves it on to new_obs
        super()._store_transition(replay_buffer, buffer_action, new_obs, reward, dones, infos)
        if self.terminal_value is not None:
            value = self.terminal_value
            errors = self.episode_value_error.record(obs, reward, dones, infos, value, self.device)  # type: ignore[arg-type]
            if errors:
                self.value_error = float(np.mean(errors))
                self.logger.record("train/value_error", self.value_error)
                self.logger.record("train/value_in_plans", float(self.value_in_plans()))
        if dones.any():
            with self.receding_horizon.plan_slot("collect"):
                self.receding_horizon.reset(dones)

    def _dump_logs(self) -> None:
        record_planning_times(self.logger, planning_summary(self.planning_ms))
        self.planning_ms.clear()
        super()._dump_logs()

    # ------------------------------------------------------------------ persistence
    def learn(  # type: ignore[no-untyped-def]
        self: SelfLOOP, total_timesteps: int, callback=None, log_interval: int = 4, tb_log_name: str = "LOOP",
        reset_num_timesteps: bool = True, progress_bar: bool = False,
    ) -> SelfLOOP:
        if reset_num_timesteps:  # a new run: no warm start from the last one, in any slot
            self.receding_horizon = RecedingHorizon(self._make_planner)
        if reset_num_timesteps or self.episode_value_error.n_envs != self.n_envs:  # the envs restart their episodes
            self.episode_value_error = EpisodeValueError(self.n_envs, self.gamma)
        return super().learn(total_timesteps, callback, log_interval, tb_log_name, reset_num_timesteps, progress_bar)

    def _excluded_save_params(self) -> List[str]:
        return [*super()._excluded_save_params(), "planning_env", "receding_horizon", "terminal_value", "planning_ms",
                "episode_value_error"]
