"""Shared helpers of the benchmark scripts: configs, JSON lines, episode recording, plots."""
import json
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"

def zoo_kwargs(algo: str, env_id: str, zoo_file: Path = None) -> Dict[str, Any]:
    """
    Constructor arguments (beside policy and env) of ``env_id`` in ``zoo_configs/<algo>.yml``, or in
    ``zoo_file``, read and processed by rl-zoo (:func:`sb3_mbrl.common.zoo_config.load_zoo_hyperparams`).
    """
    from sb3_mbrl.common.zoo_config import load_zoo_hyperparams, zoo_config_dir

    return load_zoo_hyperparams(algo, env_id, str(zoo_file or zoo_config_dir() / f"{algo}.yml")).kwargs


def rl_zoo_kwargs(algo: str, env_id: str) -> Dict[str, Any]:
    """rl-zoo's own hyperparameters for ``algo`` on ``env_id`` (empty when rl-zoo has none)."""
    from sb3_mbrl.common.zoo_config import ZooConfigError, rl_zoo_config_dir

    try:
        return zoo_kwargs(algo, env_id, rl_zoo_config_dir() / f"{algo}.yml")
    except ZooConfigError:
        return {}


def emit(record: Dict[str, Any], sink: List[Dict[str, Any]] = None) -> None:
    print(json.dumps(record), flush=True)
    if sink is not None:
        sink.append(record)


class EpisodeRecorder(BaseCallback):
    """Records (env step, return, length) of every finished training episode; can stop at a length."""

    def __init__(self, stop_at_length: int = 0) -> None:
        super().__init__()
        self.episodes: List[Dict[str, float]] = []
        self.stop_at_length = stop_at_length
        self.start = time.perf_counter()

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", []):
            if "episode" in info:
                self.episodes.append(
                    dict(step=self.num_timesteps, ret=float(info["episode"]["r"]), length=int(info["episode"]["l"]))
                )
                if self.stop_at_length and info["episode"]["l"] >= self.stop_at_length:
                    return False
        return True


def timed(counter: Dict[str, float], key: str, fn):
    """Wrap ``fn`` so the seconds spent in it are added to ``counter[key]``."""

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        counter[key] += time.perf_counter() - start
        return out

    return wrapper


def band_plot(ax, curves: List[np.ndarray], xs: np.ndarray, label: str) -> None:
    """Mean line and min-max band of equally long curves."""
    stack = np.array(curves, dtype=float)
    mean = np.nanmean(stack, axis=0)
    ax.plot(xs, mean, label=label)
    ax.fill_between(xs, np.nanmin(stack, axis=0), np.nanmax(stack, axis=0), alpha=0.2)


def random_transitions(env_id: str, n: int, seed: int = 0) -> List[np.ndarray]:
    """``obs, actions, next_obs, rewards`` (float32 arrays) of ``n`` uniformly random steps of ``env_id``."""
    import gymnasium as gym

    env = gym.make(env_id)
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    rows = []
    for _ in range(n):
        action = env.action_space.sample()
        next_obs, reward, terminated, truncated, _ = env.step(action)
        rows.append((obs, action, next_obs, reward))
        obs = env.reset()[0] if terminated or truncated else next_obs
    return [np.array(column, dtype=np.float32) for column in zip(*rows)]
