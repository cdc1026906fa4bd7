"""Expert demonstrations: collected with ``imitation.data.rollout``, stored with ``imitation.data.serialize``."""
import os
import shutil
import tempfile
from pathlib import Path
from typing import List, Optional, Sequence

import gymnasium as gym
import numpy as np
from imitation.data.types import Trajectory, TrajectoryWithRew
from stable_baselines3.common.base_class import BaseAlgorithm

from sb3_mbrl.common.files import PathLike, replace_path
from sb3_mbrl.imitation_learning.common import (
    DemonstrationError,
    VariableHorizonError,
    check_fixed_horizon,
    make_env,
    make_venv,
    variable_horizon_message,
)

Demos = List[TrajectoryWithRew]


def collect_demos(
    expert: BaseAlgorithm,
    env_id: str,
    n_episodes: int,
    seed: int = 0,
    deterministic: bool = True,
    n_envs: int = 1,
    allow_variable_horizon: bool = False,
) -> Demos:
    """
    Roll out ``expert`` on ``env_id`` with ``imitation.data.rollout.rollout`` and return exactly
    ``n_episodes`` complete episodes (with rewards). Refuses variable-horizon tasks unless
    ``allow_variable_horizon``.
    """
    from imitation.data import rollout

    if int(n_episodes) <= 0:
        raise DemonstrationError(f"n_episodes must be positive, got {n_episodes}")
    check_fixed_horizon(env_id, seed=seed, allow_variable_horizon=allow_variable_horizon)
    venv = make_venv(env_id, n_envs=n_envs, seed=seed, rollout_info=True)
    check_demos_match_spaces([], venv.observation_space, venv.action_space)
    if venv.observation_space != expert.observation_space or venv.action_space != expert.action_space:
        raise DemonstrationError(
            f"The expert's spaces ({expert.observation_space}, {expert.action_space}) do not match {env_id}'s "
            f"({venv.observation_space}, {venv.action_space})"
        )
    try:
        trajectories = rollout.rollout(
            expert,
            venv,
            rollout.make_sample_until(min_episodes=int(n_episodes)),
            rng=np.random.default_rng(seed),
            deterministic_policy=deterministic,
            verbose=False,
        )
    finally:
        venv.close()
    demos = list(trajectories)[: int(n_episodes)]
    lengths = [len(traj) for traj in demos]
    if not allow_variable_horizon and len(set(lengths)) > 1:
        raise VariableHorizonError(variable_horizon_message(env_id, lengths))
    return demos


def demo_stats(demos: Sequence[Trajectory]) -> dict:
    """Number of episodes and transitions, mean/std episode return and lengths."""
    returns = [float(np.sum(traj.rews)) for traj in demos if isinstance(traj, TrajectoryWithRew)]
    lengths = [len(traj) for traj in demos]
    return {
        "n_episodes": len(demos),
        "n_transitions": int(sum(lengths)),
        "episode_lengths": sorted(set(lengths)),
        "return_mean": float(np.mean(returns)) if returns else None,
        "return_std": float(np.std(returns)) if returns else None,
    }


def save_demos(demos: Sequence[Trajectory], path: PathLike) -> Path:
    """
    Save demonstrations with ``imitation.data.serialize.save`` (a HuggingFace datasets folder),
    atomically: written to a temporary folder next to ``path`` and moved into place.
    """
    import datasets
    from imitation.data import serialize

    if len(demos) == 0:
        raise DemonstrationError("No demonstrations to save (zero episodes)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        bars_were_on = not datasets.utils.are_progress_bars_disabled()
        datasets.utils.disable_progress_bars()
        try:
            serialize.save(tmp / "data", list(demos))
        finally:
            if bars_were_on:
                datasets.utils.enable_progress_bars()
        replace_path(tmp / "data", path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def load_demos(
    path: PathLike,
    env_id: Optional[str] = None,
    observation_space: Optional[gym.Space] = None,
    action_space: Optional[gym.Space] = None,
    n_episodes: Optional[int] = None,
) -> Demos:
    """
    Load demonstrations saved by ``save_demos`` (``imitation.data.serialize.load``) and check
    them: the folder exists and parses, holds at least one episode, and (given ``env_id`` or the
    spaces) its observations and actions fit the environment's spaces. ``n_episodes`` keeps the
    first episodes only. Raises ``DemonstrationError`` with the reason otherwise.

    Only the folder format is accepted: imitation's legacy ``.pkl``/``.npz`` files are read with
    ``allow_pickle=True``, which would run arbitrary code from an untrusted file.
    """
    from imitation.data import serialize

    path = Path(path)
    if not path.exists():
        raise DemonstrationError(f"No demonstrations at {path}")
    if not path.is_dir():
        raise DemonstrationError(
            f"{path} is not a demonstrations folder written by imitation.data.serialize.save "
            "(pickle-based .pkl/.npz files are refused: loading them could run arbitrary code)"
        )
    try:
        demos = [traj for traj in serialize.load(str(path))]
    except Exception as error:  # datasets raises many types for corrupt folders
        raise DemonstrationError(f"Could not read demonstrations from {path}: {type(error).__name__}: {error}") from error
    if len(demos) == 0:
        raise DemonstrationError(f"{path} holds zero demonstration episodes")
    if n_episodes is not None:
        if int(n_episodes) <= 0:
            raise DemonstrationError(f"n_episodes must be positive, got {n_episodes}")
        if int(n_episodes) > len(demos):
            raise DemonstrationError(f"{path} holds {len(demos)} episodes, fewer than the {n_episodes} requested")
        demos = demos[: int(n_episodes)]
    if env_id is not None and (observation_space is None or action_space is None):
        env = make_env(env_id)
        observation_space = observation_space or env.observation_space
        action_space = action_space or env.action_space
        env.close()
    if observation_space is not None and action_space is not None:
        check_demos_match_spaces(demos, observation_space, action_space, source=str(path))
    return demos


def check_demos_match_spaces(
    demos: Sequence[Trajectory], observation_space: gym.Space, action_space: gym.Space, source: str = "demonstrations"
) -> None:
    """Raise ``DemonstrationError`` unless every episode's observations and actions fit the spaces."""
    if not isinstance(observation_space, gym.spaces.Box):
        raise DemonstrationError(f"Only Box observation spaces are supported, got {observation_space}")
    if not isinstance(action_space, (gym.spaces.Box, gym.spaces.Discrete)):
        raise DemonstrationError(f"Only Box and Discrete action spaces are supported, got {action_space}")
    for index, traj in enumerate(demos):
        obs, acts = np.asarray(traj.obs), np.asarray(traj.acts)
        where = f"{source}, episode {index}"
        if obs.shape[1:] != observation_space.shape:
            raise DemonstrationError(
                f"{where}: observations have shape {obs.shape[1:]}, the environment's are {observation_space.shape}"
            )
        if not np.issubdtype(obs.dtype, np.number) or not np.all(np.isfinite(obs)):
            raise DemonstrationError(f"{where}: observations are not finite numbers")
        if isinstance(action_space, gym.spaces.Discrete):
            if acts.ndim != 1 or not np.issubdtype(acts.dtype, np.integer):
                raise DemonstrationError(
                    f"{where}: actions have shape {acts.shape[1:]} and dtype {acts.dtype}; "
                    f"the environment has discrete actions {action_space}"
                )
            if acts.size and (acts.min() < action_space.start or acts.max() >= action_space.start + action_space.n):
                raise DemonstrationError(f"{where}: actions outside {action_space}")
        else:
            if acts.shape[1:] != action_space.shape or not np.issubdtype(acts.dtype, np.floating):
                raise DemonstrationError(
                    f"{where}: actions have shape {acts.shape[1:]} and dtype {acts.dtype}; "
                    f"the environment's action space is {action_space}"
                )
            if not np.all(np.isfinite(acts)):
                raise DemonstrationError(f"{where}: actions are not finite numbers")


def is_demos_dir(path: PathLike) -> bool:
    """Whether ``path`` looks like a folder written by ``save_demos``."""
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, "dataset_info.json"))
