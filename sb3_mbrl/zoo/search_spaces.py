"""
Optuna search spaces for PETS, MBPO and REINFORCE, in rl-zoo 2.2's sampler format.

Each ``sample_<algo>_params(trial, n_actions, n_envs, additional_args)`` suggests values with
``trial`` and returns keyword arguments for the algorithm's constructor; rl-zoo's
``ExperimentManager.objective`` merges them (``dict.update``, so a sampled ``policy_kwargs`` or
``planner_kwargs`` replaces the config file's) into the hyperparameters read from the config file.
:func:`sb3_mbrl.zoo.registry.register_algorithms` adds them to ``rl_zoo3.hyperparams_opt.HYPERPARAMS_SAMPLER``.

The ranges are sized for CPU runs on a couple of cores: the PETS planner's cost grows with
``population_size * num_particles * horizon * iterations`` and MBPO's with SAC's gradient steps per env
step, so the largest values here stay within a few times the cost of ``zoo_configs``.
"""
import math
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import optuna
from rl_zoo3.hyperparams_opt import sample_sac_params
from torch import nn

from sb3_mbrl.common.deprecation import rename_kwargs

Sampler = Callable[[Any, int, int, Dict[str, Any]], Dict[str, Any]]

# Hidden layers of each ensemble member ("big" is the PETS/MBPO papers' 4 x 200).
PETS_NET_ARCH: Dict[str, List[int]] = {
    "small": [64, 64, 64],
    "medium": [200, 200, 200],
    "big": [200, 200, 200, 200],
}

# rl-zoo's SAC space, narrowed for MBPO (same parameter names, so rl-zoo's sampler code is reused):
# MBPO fits its first model at learning_starts, so 10k-20k random steps (rl-zoo's choices) would use
# up a CPU-sized budget; SAC batches above 512 multiply the cost of MBPO's many updates per env step;
# rl-zoo's learning rates go up to 1, where SAC diverges.
MBPO_SAC_CATEGORICAL: Dict[str, List[Any]] = {
    "learning_starts": [200, 500, 1000, 2000],
    "train_freq": [1, 2, 4, 8],
    "batch_size": [64, 128, 256, 512],
}
MBPO_SAC_FLOAT: Dict[str, Tuple[float, float]] = {"learning_rate": (1e-5, 1e-2)}

REINFORCE_NET_ARCH: Dict[str, Dict[str, List[int]]] = {
    "tiny": dict(pi=[64], vf=[64]),
    "small": dict(pi=[64, 64], vf=[64, 64]),
    "medium": dict(pi=[256, 256], vf=[256, 256]),
}
ACTIVATION_FN: Dict[str, type] = {"tanh": nn.Tanh, "relu": nn.ReLU}
# Steps per env the rollout buffer is sized for, per episode of the batch: gymnasium's longest default
# time limit among classic-control and MuJoCo tasks. Longer episodes still work: REINFORCE ends the
# rollout when the buffer is full and completes (or drops) the unfinished episodes.
REINFORCE_EPISODE_STEPS = 1000
# Parameter names of studies made before the PETS arguments were renamed (issue 12): `sb3-mbrl best`
# reads them, with a FutureWarning, until the next release.
RENAMED_PARAMS: Dict[str, Dict[str, str]] = {
    "pets": {"optimizer": "planner", "net_arch": "model_net_arch", "learning_rate": "model_learning_rate"},
}
# Parameters added to a search space later, with the value that trials of older studies ran with
# (the constructor's default then), so their stored parameters still convert (`sb3-mbrl best`).
ADDED_PARAMS: Dict[str, Dict[str, Any]] = {
    "pets": {"model_train_freq": "episode"},
}


# Whether the env being searched has Discrete actions (set by sb3_mbrl.zoo.search.prepare_search,
# which knows the env): rl-zoo's samplers are not told the action space, and for Discrete actions
# PETS plans with the categorical CEM or random shooting only.
_PETS_DISCRETE = {"value": False}


def set_pets_discrete_actions(discrete: bool) -> None:
    """Search PETS' planners for Discrete (``cem``, ``random``) or Box actions (``cem``, ``icem``)."""
    _PETS_DISCRETE["value"] = bool(discrete)


def sample_pets_params(
    trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: Dict[str, Any]
) -> Dict[str, Any]:
    """
    Sampler for PETS hyperparameters: the planner (CEM or iCEM, horizon, population, elites,
    iterations), trajectory sampling (particles, TS-inf or TS-1) and the dynamics model (size,
    learning rate, refit frequency). The parameter names are the constructor's (``planner``, ``model_net_arch``,
    ``model_learning_rate``) where a parameter is one argument.

    :param trial: Optuna trial (or ``optuna.trial.FixedTrial``)
    :param n_actions: Action dimension (unused: the planner works in the action box)
    :param n_envs: Number of envs (unused)
    :param additional_args: rl-zoo's extra arguments (unused)
    :return: PETS constructor keyword arguments
    """
    horizon = trial.suggest_categorical("horizon", [10, 15, 20, 25, 30])
    planner = trial.suggest_categorical("planner", ["cem", "random"] if _PETS_DISCRETE["value"] else ["cem", "icem"])
    population_size = trial.suggest_categorical("population_size", [50, 100, 200])
    # A share of the population rather than a count: the number of elites then stays below the
    # population for every combination (and the search space stays fixed for TPE).
    elite_fraction = trial.suggest_categorical("elite_fraction", [0.05, 0.1, 0.2])
    iterations = trial.suggest_categorical("iterations", [3, 4, 5])
    num_particles = trial.suggest_categorical("num_particles", [1, 3, 5, 10])
    propagation = trial.suggest_categorical("propagation", ["fixed_model", "random_model"])
    net_arch_type = trial.suggest_categorical("model_net_arch", list(PETS_NET_ARCH))
    model_learning_rate = trial.suggest_float("model_learning_rate", 1e-4, 3e-3, log=True)
    # Env steps between refits, or one per ended episode: on Pendulum-v1 a refit every 25 env steps met
    # issue 13's goal on 5 of 5 seeds where one per episode met it on 3 (README, PETS).
    refit = trial.suggest_categorical("model_train_freq", [25, 50, 100, 250, "episode"])

    planner_kwargs: Dict[str, Any] = {
        "population_size": population_size,
        "num_elites": max(2, round(population_size * elite_fraction)),
        "iterations": iterations,
    }
    if planner == "random":
        del planner_kwargs["num_elites"]  # random shooting keeps the best candidate, no elites
    if planner == "icem":
        # Colour of iCEM's noise: 0 white, 2 red (smooth action sequences).
        planner_kwargs["noise_beta"] = trial.suggest_categorical("noise_beta", [0.0, 1.0, 2.0, 2.5])
    return {
        "horizon": horizon,
        "num_particles": num_particles,
        "propagation": propagation,
        "planner": planner,
        "planner_kwargs": planner_kwargs,
        "model_learning_rate": model_learning_rate,
        "model_train_freq": (1, "episode") if refit == "episode" else refit,
        "model_net_arch": list(PETS_NET_ARCH[net_arch_type]),
        # A sampled policy_kwargs replaces the config's, so it repeats the zoo configs' planning
        # precision: bfloat16 where the CPU or GPU runs it natively (about 3.5x faster), else float32.
        "policy_kwargs": dict(planning_dtype="auto"),
    }


class _NarrowedTrial:
    """
    A trial whose ``suggest_categorical`` / ``suggest_float`` use other choices or bounds for some
    parameter names, and that behaves like the wrapped trial otherwise. It lets MBPO reuse rl-zoo's SAC
    sampler with ranges that fit MBPO, under the same parameter names.

    :param trial: The trial to wrap
    :param categorical: Choices by parameter name
    :param floats: ``(low, high)`` by parameter name (the sampler's ``log`` flag is kept)
    """

    def __init__(
        self,
        trial: optuna.Trial,
        categorical: Mapping[str, Sequence[Any]],
        floats: Mapping[str, Tuple[float, float]],
    ) -> None:
        self._trial = trial
        self._categorical = categorical
        self._floats = floats

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return self._trial.suggest_categorical(name, list(self._categorical.get(name, choices)))

    def suggest_float(self, name: str, low: float, high: float, *, step: Optional[float] = None, log: bool = False) -> float:
        low, high = self._floats.get(name, (low, high))
        return self._trial.suggest_float(name, low, high, step=step, log=log)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._trial, name)


def sample_mbpo_params(
    trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: Dict[str, Any]
) -> Dict[str, Any]:
    """
    Sampler for MBPO hyperparameters: rl-zoo's SAC sampler (ranges narrowed for MBPO, see
    ``MBPO_SAC_CATEGORICAL``) plus the model-based ones: SAC updates per env step
    (``updates_per_env_step``), rollout length, share of real data in each SAC batch and model
    refit frequency.

    :param trial: Optuna trial (or ``optuna.trial.FixedTrial``)
    :param n_actions: Action dimension (passed on to rl-zoo's SAC sampler)
    :param n_envs: Number of envs (passed on)
    :param additional_args: rl-zoo's extra arguments (``using_her_replay_buffer``, ``her_kwargs``)
    :return: MBPO constructor keyword arguments
    """
    additional_args = {"using_her_replay_buffer": False, "her_kwargs": {}, **additional_args}
    if additional_args["using_her_replay_buffer"]:
        raise ValueError("MBPO keeps its own replay buffer (real + model data) and cannot use HER")
    hyperparams = sample_sac_params(
        _NarrowedTrial(trial, MBPO_SAC_CATEGORICAL, MBPO_SAC_FLOAT),  # type: ignore[arg-type]
        n_actions,
        n_envs,
        additional_args,
    )
    # rl-zoo ties SAC's gradient_steps to train_freq (one update per env step). MBPO's point is many
    # updates per env step (G, 20 in the paper): G per env step is G * train_freq per train() call.
    updates_per_step = trial.suggest_categorical("updates_per_env_step", [1, 5, 10, 20])
    hyperparams["gradient_steps"] = updates_per_step * hyperparams["train_freq"]
    hyperparams["rollout_length"] = trial.suggest_categorical("rollout_length", [1, 2, 5, 10])
    hyperparams["real_ratio"] = trial.suggest_categorical("real_ratio", [0.05, 0.1, 0.25, 0.5])
    hyperparams["model_train_freq"] = trial.suggest_categorical("model_train_freq", [100, 250, 500])
    return hyperparams


def sample_loop_params(
    trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: Dict[str, Any]
) -> Dict[str, Any]:
    """
    Sampler for LOOP hyperparameters: MBPO's (SAC's, narrowed, and the model-based ones) plus the
    planning ones: horizon, iCEM population and iterations, particles, the actor's candidates
    (``policy_prior_samples``) and which of SAC's values ends a planned sequence.

    :param trial: Optuna trial (or ``optuna.trial.FixedTrial``)
    :param n_actions: Action dimension (passed on to rl-zoo's SAC sampler)
    :param n_envs: Number of envs (passed on)
    :param additional_args: rl-zoo's extra arguments (``using_her_replay_buffer``, ``her_kwargs``)
    :return: LOOP constructor keyword arguments
    """
    hyperparams = sample_mbpo_params(trial, n_actions, n_envs, additional_args)
    population_size = trial.suggest_categorical("population_size", [50, 100, 200])
    hyperparams.update(
        horizon=trial.suggest_categorical("horizon", [3, 5, 10, 15, 25]),
        num_particles=trial.suggest_categorical("num_particles", [1, 2, 4]),
        policy_prior_samples=trial.suggest_categorical("policy_prior_samples", [0, 10, 25]),
        terminal_value_fn=trial.suggest_categorical("terminal_value_fn", ["critic", "soft_critic"]),
        planner_kwargs={
            "population_size": population_size,
            "num_elites": max(2, population_size // 10),
            "iterations": trial.suggest_categorical("iterations", [2, 3, 4]),
        },
        # Not sampled: bfloat16 where the CPU or GPU runs it natively, as in the zoo configs.
        planning_dtype="auto",
    )
    return hyperparams


def sample_reinforce_params(
    trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: Dict[str, Any]
) -> Dict[str, Any]:
    """
    Sampler for REINFORCE hyperparameters: learning rate, discount, baseline, episodes per update
    (the rollout buffer is sized to hold them), passes over each batch, entropy bonus, advantage
    normalisation and the policy network.

    :param trial: Optuna trial (or ``optuna.trial.FixedTrial``)
    :param n_actions: Action dimension (unused)
    :param n_envs: Number of envs: the rollout buffer holds ``n_steps`` steps per env
    :param additional_args: rl-zoo's extra arguments (unused)
    :return: REINFORCE constructor keyword arguments
    """
    learning_rate = trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True)
    gamma = trial.suggest_categorical("gamma", [0.9, 0.95, 0.98, 0.99, 0.995, 0.999])
    # Six distinct updates: normalize_advantage only rescales, so baseline=None (plain REINFORCE) is not
    # the mean baseline under another name (tests/test_reinforce.py checks the six differ).
    baseline = trial.suggest_categorical("baseline", ["value", "mean", None])
    n_episodes = trial.suggest_categorical("n_episodes", [1, 2, 5, 10, 20])
    n_epochs = trial.suggest_categorical("n_epochs", [1, 2, 4])
    ent_coef = trial.suggest_categorical("ent_coef", [0.0, 1e-3, 1e-2])
    normalize_advantage = trial.suggest_categorical("normalize_advantage", [True, False])
    net_arch_type = trial.suggest_categorical("net_arch", list(REINFORCE_NET_ARCH))
    activation_fn_name = trial.suggest_categorical("activation_fn", list(ACTIVATION_FN))

    n_envs = max(1, int(n_envs))
    return {
        "learning_rate": learning_rate,
        "gamma": gamma,
        "baseline": baseline,
        "n_episodes": n_episodes,
        # The episodes of a batch are spread over the envs: each env holds its share of them.
        "n_steps": math.ceil(n_episodes / n_envs) * REINFORCE_EPISODE_STEPS,
        "n_epochs": n_epochs,
        "ent_coef": ent_coef,
        "normalize_advantage": normalize_advantage,
        "policy_kwargs": dict(
            net_arch={key: list(value) for key, value in REINFORCE_NET_ARCH[net_arch_type].items()},
            activation_fn=ACTIVATION_FN[activation_fn_name],
        ),
    }


SAMPLERS: Dict[str, Sampler] = {
    "pets": sample_pets_params,
    "mbpo": sample_mbpo_params,
    "loop": sample_loop_params,
    "reinforce": sample_reinforce_params,
}


def get_sampler(algo: str) -> Sampler:
    """
    The sampler of an algorithm: ours, or rl-zoo's for SB3's own algorithms.

    :param algo: rl-zoo algorithm name (``pets``, ``sac`` ...)
    :return: The sampler function
    """
    from rl_zoo3.hyperparams_opt import HYPERPARAMS_SAMPLER

    samplers = {**HYPERPARAMS_SAMPLER, **SAMPLERS}
    if algo not in samplers:
        raise ValueError(f"No hyperparameter sampler for algorithm {algo!r}; known: {sorted(samplers)}")
    return samplers[algo]


def hyperparams_from_params(
    algo: str,
    params: Dict[str, Any],
    n_actions: int = 0,
    n_envs: int = 1,
    additional_args: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """
    Constructor keyword arguments for a trial's parameters (``trial.params``), by running the
    algorithm's sampler on an ``optuna.trial.FixedTrial``. The sampled names are not always the
    constructor's (``net_arch: "small"``, MBPO's ``gradient_steps`` per env step, ...): the sampler
    itself does that conversion.

    :param algo: rl-zoo algorithm name
    :param params: Parameter values by name, as stored in the study
    :param n_actions: Action dimension, as rl-zoo passes it (0 unless the config sets action noise)
    :param n_envs: Number of envs of the search (REINFORCE sizes its rollout buffer per env)
    :param additional_args: rl-zoo's extra arguments (default: no HER)
    :return: Keyword arguments for the algorithm's constructor
    """
    sampler = get_sampler(algo)
    params = rename_kwargs(f"{algo} search space", params, RENAMED_PARAMS.get(algo, {}), stacklevel=2)
    params = {**ADDED_PARAMS.get(algo, {}), **params}
    args = {"using_her_replay_buffer": False, "her_kwargs": {}, **(additional_args or {})}
    trial = optuna.trial.FixedTrial(dict(params))
    try:
        hyperparams = sampler(trial, n_actions, n_envs, args)
    except ValueError as error:
        # FixedTrial raises ValueError for a missing parameter or a categorical value that is no choice.
        raise ValueError(
            f"The parameters {params} do not fit the current {algo} sampler ({error}); "
            "was the study made for another algorithm or another version of its search space?"
        ) from error
    unused = sorted(set(params) - set(trial.params))
    if unused:
        raise ValueError(
            f"Parameters {unused} are not in the current {algo} sampler: was the study made for another algorithm?"
        )
    return hyperparams
