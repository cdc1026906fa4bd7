"""The MPC policy of PETS: plans with the ensemble at every step."""
import time
import warnings
from collections import deque
from typing import Any, ContextManager, Dict, Optional, Sequence, Tuple, Type, Union

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import Schedule
from torch import nn

from sb3_mbrl.common.policy_io import load_policy, save_policy
from sb3_mbrl.common.receding_horizon import RecedingHorizon, seeded_draws
from sb3_mbrl.dynamics import ModelEnv, ProbabilisticEnsemble
from sb3_mbrl.dynamics.inference import planning_compute_dtype
from sb3_mbrl.envs.types import ObsProcessFn, StateValueFn, TransitionFn
from sb3_mbrl.pets.action_spaces import check_action_space, first_actions, make_planner, model_action_dim, random_actions
from sb3_mbrl.common.planning_times import planning_summary
from sb3_mbrl.planning import TrajectoryOptimizer


class MPCPolicy(BasePolicy):
    """
    Model predictive control over a probabilistic ensemble.

    What ``deterministic`` means for an MPC policy: planning is a random search, so
    ``predict(deterministic=False)`` (data collection) draws fresh candidates and samples the
    model's next states; ``predict(deterministic=True)`` (evaluation, ``evaluate_policy``'s
    default) plans with the model's mean next states and draws its candidates from a generator
    seeded with ``deterministic_seed`` at every call, so the same observation and warm start give
    the same action, ``evaluate_policy`` is repeatable on a seeded env, and a loaded model acts
    as the model it was saved from.

    At every step it optimises an action sequence of length ``horizon`` over the
    :class:`ModelEnv` (``num_particles`` particles per candidate, all envs x candidates x
    particles in one tensor pass per horizon step) and returns its first action. The previous
    plan, shifted by one step, warm-starts the next; plans reset at episode starts, per env.

    :param observation_space: Box observation space.
    :param action_space: Box action space.
    :param lr_schedule: Learning rate schedule of the dynamics model.
    :param net_arch: Hidden layer sizes of each ensemble member.
    :param activation_fn: Activation of the members.
    :param ensemble_size: Number of members.
    :param num_elites: Members used for planning (all when ``None``).
    :param weight_decays: L2 coefficient per layer (hidden layers then output).
    :param learn_logvar_bounds: Train the log-variance soft bounds.
    :param horizon: Planning horizon.
    :param num_particles: Particles per candidate sequence.
    :param propagation: ``fixed_model`` (TS-inf), ``random_model`` (TS-1) or ``expectation``.
    :param planner: ``cem``, ``icem``, ``mppi`` or ``random``.
    :param planner_kwargs: Arguments of the planner (population_size, num_elites, iterations, alpha, ...).
    :param reward_fn: Known reward function; ``None`` learns the reward.
    :param termination_fn: Known termination function; ``None`` never terminates.
    :param terminal_value_fn: Value ``obs (B, obs_dim) -> (B,)`` of a candidate's last predicted
        state, added to its return while it has not terminated; ``None`` adds nothing.
    :param obs_process_fn: What the ensemble reads of an observation, ``obs (..., obs_dim) ->
        (..., d)``; ``None`` reads all of it (:class:`ProbabilisticEnsemble`).
    :param planning_dtype: ``"float32"``, ``"bfloat16"`` or ``"auto"``: dtype of the ensemble forward
        while planning (model training stays float32). bf16 is about 2-3x faster on CPUs with
        AVX512-BF16/AMX units and on recent GPUs, but emulated, and 20x slower than float32, on CPUs
        without them (it then warns); ``"auto"`` takes bf16 only where it is native.
    :param deterministic_seed: Seed of the planner's random draws at every
        ``predict(deterministic=True)`` call.
    :param optimizer_class: Optimiser of the dynamics model.
    :param optimizer_kwargs: Its extra arguments.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        net_arch: Sequence[int] = (200, 200, 200, 200),
        activation_fn: Type[nn.Module] = nn.SiLU,
        ensemble_size: int = 5,
        num_elites: Optional[int] = None,
        weight_decays: Optional[Sequence[float]] = None,
        learn_logvar_bounds: bool = True,
        horizon: int = 25,
        num_particles: int = 5,
        propagation: str = "fixed_model",
        planner: str = "cem",
        planner_kwargs: Optional[Dict[str, Any]] = None,
        reward_fn: Optional[TransitionFn] = None,
        termination_fn: Optional[TransitionFn] = None,
        terminal_value_fn: Optional[StateValueFn] = None,
        obs_process_fn: Optional[ObsProcessFn] = None,
        planning_dtype: str = "float32",
        deterministic_seed: int = 0,
        optimizer_class: Type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: Optional[Dict[str, Any]] = None,
    ) -> None:
        super().__init__(observation_space, action_space, optimizer_class=optimizer_class, optimizer_kwargs=optimizer_kwargs)
        if num_particles < 1:
            raise ValueError(f"num_particles must be at least 1, got {num_particles}")
        self.net_arch = list(net_arch)
        self.activation_fn = activation_fn
        self.ensemble_size = ensemble_size
        self.num_elites = num_elites
        self.weight_decays = weight_decays
        self.learn_logvar_bounds = learn_logvar_bounds
        self.horizon = horizon
        self.num_particles = num_particles
        self.propagation = propagation
        self.planner_name = planner
        self.planner_kwargs = dict(planner_kwargs or {})
        self.reward_fn = reward_fn
        self.termination_fn = termination_fn
        self.terminal_value_fn = terminal_value_fn
        self.obs_process_fn = obs_process_fn
        compute_dtype = planning_compute_dtype(planning_dtype)
        self.planning_dtype = planning_dtype
        self.deterministic_seed = int(deterministic_seed)

        obs_dim = int(np.prod(observation_space.shape))  # type: ignore[arg-type]
        check_action_space(action_space)
        action_dim = model_action_dim(action_space)  # Discrete(n): one-hot, n columns
        self.dynamics = ProbabilisticEnsemble(
            obs_dim,
            action_dim,
            ensemble_size=ensemble_size,
            hidden_sizes=self.net_arch,
            activation_fn=activation_fn,
            learn_reward=reward_fn is None,
            num_elites=num_elites,
            weight_decays=weight_decays,
            learn_logvar_bounds=learn_logvar_bounds,
            obs_process_fn=obs_process_fn,
        )
        self.register_buffer("fitted", th.tensor(False))
        self._fitted_key: Optional[Tuple[int, int]] = None  # is_fitted()'s cache
        self._fitted_value = False
        self._warned_unfitted = False
        self.model_env = ModelEnv(
            self.dynamics,
            reward_fn=reward_fn,
            termination_fn=termination_fn,
            terminal_value_fn=terminal_value_fn,
            propagation=propagation,
            compute_dtype=compute_dtype,
        )
        self.optimizer = self.optimizer_class(self.dynamics.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)
        # The planner (built now, so bad settings fail here) and the warm starts per env and caller.
        self.receding_horizon = RecedingHorizon(self._make_planner)
        # Milliseconds of each planning step of data collection (the "collect" slot) since the
        # last log dump; evaluation steps are not mixed in. Bounded in case nothing dumps.
        self.planning_ms: deque = deque(maxlen=100_000)

    def _make_planner(self, device: th.device) -> TrajectoryOptimizer:
        return make_planner(self.planner_name, self.action_space, self.horizon, device, self.planner_kwargs)

    def _get_constructor_parameters(self) -> Dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            net_arch=self.net_arch,
            activation_fn=self.activation_fn,
            ensemble_size=self.ensemble_size,
            num_elites=self.num_elites,
            weight_decays=self.weight_decays,
            learn_logvar_bounds=self.learn_logvar_bounds,
            horizon=self.horizon,
            num_particles=self.num_particles,
            propagation=self.propagation,
            planner=self.planner_name,
            planner_kwargs=self.planner_kwargs,
            reward_fn=self.reward_fn,
            termination_fn=self.termination_fn,
            terminal_value_fn=self.terminal_value_fn,
            obs_process_fn=self.obs_process_fn,
            planning_dtype=self.planning_dtype,
            deterministic_seed=self.deterministic_seed,
        )
        return data

    def plan_slot(self, name: str) -> ContextManager[None]:
        """Plan in the warm-start slot ``name`` inside the block, back in ``"predict"`` after it."""
        return self.receding_horizon.plan_slot(name)

    def use_plan_slot(self, name: str) -> None:
        """Switch the warm-start state to the one kept under ``name`` (``"predict"`` by default)."""
        self.receding_horizon.use_plan_slot(name)

    def reset_plans(self, episode_start: Optional[np.ndarray] = None) -> None:
        """Forget the warm start of the envs whose episode starts (all envs when ``None``)."""
        self.receding_horizon.reset(episode_start)

    def predict(
        self,
        observation: Union[np.ndarray, Dict[str, np.ndarray]],
        state: Optional[Tuple[np.ndarray, ...]] = None,
        episode_start: Optional[np.ndarray] = None,
        deterministic: bool = False,
    ) -> Tuple[np.ndarray, Optional[Tuple[np.ndarray, ...]]]:
        if episode_start is not None:
            self.reset_plans(np.atleast_1d(episode_start))
        return super().predict(observation, state, episode_start, deterministic)

    def _predict(self, observation: th.Tensor, deterministic: bool = False) -> th.Tensor:
        """Plan from each observation ``(M, obs_dim)``; return the first actions ``(M, A)``."""
        if not self.is_fitted():
            # Before the first fit PETS acts uniformly at random (its warm-up behaviour), so an
            # EvalCallback during warm-up measures that instead of stopping training.
            if not self._warned_unfitted:
                self._warned_unfitted = True
                warnings.warn(
                    "PETS: the dynamics model has not been fitted yet (learn() fits it after learning_starts "
                    "steps), so predict() returns uniform random actions",
                    stacklevel=3,
                )
            return random_actions(self.action_space, observation.shape[0], observation.device)
        start = time.perf_counter()
        obs = observation.float().reshape(observation.shape[0], -1)
        if deterministic:
            first_action = self._plan_deterministically(obs)
        else:
            first_action = self._plan_step(obs)
        if self.receding_horizon.active_slot == "collect":
            self.planning_ms.append(1000 * (time.perf_counter() - start))
        return first_action

    def is_fitted(self) -> bool:
        """
        ``bool(self.fitted)``, read from the tensor only when it changed (a fit's ``fill_``, a loaded
        state dict): reading a CUDA tensor at every planning step would sync the device each time.
        """
        key = (self.fitted.data_ptr(), self.fitted._version)
        if key != self._fitted_key:
            self._fitted_key, self._fitted_value = key, bool(self.fitted)
        return self._fitted_value

    def _plan_deterministically(self, obs: th.Tensor) -> th.Tensor:
        """
        One planning step whose random draws (candidates, particle members) come from a
        generator seeded with ``deterministic_seed`` at every call, with the model's mean
        next states: the same observation and warm start give the same action. The global
        torch random state is left as it was.
        """
        model_sampling = self.model_env.deterministic
        with seeded_draws(self.deterministic_seed, obs.device):
            self.model_env.deterministic = True
            try:
                return self._plan_step(obs)
            finally:
                self.model_env.deterministic = model_sampling

    def _plan_step(self, obs: th.Tensor) -> th.Tensor:
        """Optimise the plans from ``obs (M, obs_dim)``, keep them shifted as the next warm start, return ``(M, A)``."""

        def objective(candidates: th.Tensor) -> th.Tensor:
            return self.model_env.evaluate_action_sequences(candidates, obs, self.num_particles)  # (M, P)

        plan = self.receding_horizon.step(obs.shape[0], obs.device, objective)  # (M, H, A)
        return first_actions(plan, self.action_space)

    def planning_stats(self) -> Dict[str, float]:
        """
        :func:`planning_summary` of the data-collection steps since the last call (one window for
        all of them, then cleared); empty when no step was planned.
        """
        stats = planning_summary(self.planning_ms)
        self.planning_ms.clear()
        return stats

    def save(self, path: str) -> None:
        """
        Save the policy (weights and constructor arguments) to a file that loads with
        ``torch.load(path, weights_only=True)``; see :func:`sb3_mbrl.common.save_policy`.
        The optimiser state and the learning-rate schedule are not kept (use ``model.save()`` for those).

        :param path: Where to write the file.
        """
        save_policy(self, path)

    @classmethod
    def load(cls, path: str, device: Union[th.device, str] = "auto") -> "MPCPolicy":  # type: ignore[override]
        """
        Load a policy written by :meth:`save` (safe under torch's ``weights_only`` loading);
        see :func:`sb3_mbrl.common.load_policy`.

        :param path: The file written by :meth:`save`.
        :param device: Device on which the policy should be loaded.
        :return: The loaded policy.
        """
        return load_policy(path, device=device, policy_class=cls)
