"""Input checks of the model-based algorithms: what their dynamics model can learn from, refused early with a clear message."""
import numpy as np
from gymnasium import spaces
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.vec_env import VecEnv, VecNormalize, unwrap_vec_wrapper


def check_vector_observations(algo_name: str, env: object) -> None:
    """
    Refuse observation spaces the dynamics model cannot learn: anything but a flat ``Box``
    (a ``Dict``, ``Discrete`` ... or an image). Called before SB3's own checks so that the
    message names the real problem.

    :param algo_name: Name of the algorithm in messages.
    :param env: An env, a VecEnv, or an id (not checked until it is made).
    """
    space = getattr(env, "observation_space", None)
    if space is None:
        return
    if not isinstance(space, spaces.Box):
        raise ValueError(f"{algo_name}'s dynamics model needs a Box observation space; got {space}")
    if is_image_space(space, check_channels=False):
        raise ValueError(
            f"{algo_name}'s dynamics model needs vector observations; got image observations {space}: "
            "flatten them or encode them into a vector first"
        )


def check_no_vec_normalize(algo_name: str, env: object) -> None:
    """
    Refuse ``VecNormalize``: the dynamics model learns from the raw observations and rewards of
    the replay buffer and normalises its own inputs, so normalised observations (to plan from or
    to train the actor on) would not match the model's, and plans or rollouts would be silently wrong.

    :param algo_name: Name of the algorithm in messages.
    :param env: The env about to be used (anything but a VecEnv passes).
    """
    if isinstance(env, VecEnv) and unwrap_vec_wrapper(env, VecNormalize) is not None:
        raise ValueError(
            f"{algo_name} does not support VecNormalize: its dynamics model is fitted on the raw observations "
            "and rewards in the replay buffer and normalises its inputs itself, so VecNormalize's normalised "
            "observations would give wrong plans and model rollouts. Remove the VecNormalize wrapper "
            "(with rl-zoo: drop 'normalize: true' from the hyperparameters)."
        )


def check_finite_transition(algo_name: str, new_obs: np.ndarray, rewards: np.ndarray, num_timesteps: int) -> None:
    """
    Stop with a clear error when the environment returns NaN/inf (instead of training a NaN model).

    :param algo_name: Name of the algorithm in messages.
    :param new_obs: The observations the env returned ``(n_envs, *obs_shape)``.
    :param rewards: Its rewards ``(n_envs,)``.
    :param num_timesteps: The env step, for the message.
    """
    obs_ok = np.isfinite(new_obs).all() if isinstance(new_obs, np.ndarray) else True
    if not obs_ok or not np.isfinite(rewards).all():
        what = "observations" if not obs_ok else "rewards"
        raise ValueError(
            f"{algo_name}: the environment returned NaN or inf {what} at env step {num_timesteps}; "
            "training stopped before they reach the dynamics model"
        )
