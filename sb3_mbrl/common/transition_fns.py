"""The reward, termination, terminal-value and observation-processing functions an algorithm plans or rolls out with: ``"auto"``, ``None`` or a callable."""
import warnings
from typing import Callable, Optional, Tuple, Union

from stable_baselines3.common.vec_env import VecEnv

from sb3_mbrl.envs import (
    ObsProcessFn,
    StateValueFn,
    TransitionFn,
    get_obs_process_fn,
    get_planning_termination_fn,
    get_reward_fn,
    get_terminal_value_fn,
    get_termination_fn,
    has_terminal_states,
)

# A user passes a callable, None, or "auto" (look the function up by env id).
TransitionFnArg = Union[str, None, Callable]


def env_id_of(env: Optional[VecEnv]) -> Optional[str]:
    """
    The gymnasium id of a VecEnv's first env, if it was made from a registered id.

    :param env: The algorithm's env (``None`` when it has none yet).
    :return: The id, e.g. ``"Pendulum-v1"``, or ``None``.
    """
    if env is None:
        return None
    try:
        spec = env.get_attr("spec", indices=[0])[0]
    except (AttributeError, IndexError):
        return None
    return getattr(spec, "id", None)


def check_fn_argument(algo_name: str, name: str, value: TransitionFnArg) -> None:
    """Refuse a ``reward_fn`` / ``termination_fn`` / ``terminal_value_fn`` / ``obs_process_fn`` that is not a callable, ``None`` or ``"auto"``."""
    if not (value is None or value == "auto" or callable(value)):
        raise ValueError(f"{algo_name}: {name} must be a callable, None or 'auto', got {value!r}")


def resolve_transition_fns(
    algo_name: str, env_id: Optional[str], reward_fn: TransitionFnArg, termination_fn: TransitionFnArg, planning: bool = False
) -> Tuple[Optional[TransitionFn], Optional[TransitionFn]]:
    """
    Turn ``"auto"`` into the known function for ``env_id`` (or ``None``) and check the rest.

    A task known to have terminal states that ends up with no termination function gets a
    warning saying what to pass.

    :param algo_name: Name of the algorithm in messages.
    :param env_id: The env's gymnasium id (``None``: nothing is known about it).
    :param reward_fn: The user's ``reward_fn`` argument.
    :param termination_fn: The user's ``termination_fn`` argument.
    :param planning: Whether the functions are only planned with (PETS): ``"auto"`` is then the
        planning termination of ``env_id`` (:func:`sb3_mbrl.envs.get_planning_termination_fn`),
        else the env's own, as model rollouts that train a policy need.
    :return: The reward and termination functions, ``None`` where there is none (learned reward,
        never terminates).
    """
    check_fn_argument(algo_name, "reward_fn", reward_fn)
    check_fn_argument(algo_name, "termination_fn", termination_fn)
    reward = get_reward_fn(env_id) if reward_fn == "auto" else reward_fn
    known_termination = get_planning_termination_fn(env_id) if planning else get_termination_fn(env_id)
    termination = known_termination if termination_fn == "auto" else termination_fn
    if termination is None and has_terminal_states(env_id):
        warnings.warn(
            f"{algo_name}: {env_id} has terminal states but no termination function is set, so the model "
            "never predicts termination. Pass termination_fn='auto' or a function "
            "(obs, action, next_obs) -> bool tensor, e.g. from sb3_mbrl.envs.",
            stacklevel=3,
        )
    return reward, termination  # type: ignore[return-value]


def resolve_terminal_value_fn(algo_name: str, env_id: Optional[str], terminal_value_fn: TransitionFnArg) -> Optional[StateValueFn]:
    """
    Turn ``"auto"`` into the known terminal value of ``env_id`` (``None`` for most tasks) and check the rest.

    :param algo_name: Name of the algorithm in messages.
    :param env_id: The env's gymnasium id (``None``: nothing is known about it).
    :param terminal_value_fn: The user's ``terminal_value_fn`` argument.
    :return: The function ``obs (B, obs_dim) -> (B,)``, or ``None`` (no terminal value).
    """
    check_fn_argument(algo_name, "terminal_value_fn", terminal_value_fn)
    return get_terminal_value_fn(env_id) if terminal_value_fn == "auto" else terminal_value_fn  # type: ignore[return-value]


def resolve_obs_process_fn(algo_name: str, env_id: Optional[str], obs_process_fn: TransitionFnArg) -> Optional[ObsProcessFn]:
    """
    Turn ``"auto"`` into the known observation processing of ``env_id`` for the dynamics model
    (``None``, the whole observation, for most tasks) and check the rest.

    :param algo_name: Name of the algorithm in messages.
    :param env_id: The env's gymnasium id (``None``: nothing is known about it).
    :param obs_process_fn: The user's ``obs_process_fn`` argument.
    :return: The function ``obs (..., obs_dim) -> (..., d)``, or ``None``.
    """
    check_fn_argument(algo_name, "obs_process_fn", obs_process_fn)
    return get_obs_process_fn(env_id) if obs_process_fn == "auto" else obs_process_fn  # type: ignore[return-value]
