"""Experts: SB3 PPO or SAC trained with the hyperparameters of ``zoo_configs/<algo>.yml``."""
import io
import json
import zipfile
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Type

import gymnasium as gym
import torch as th
import yaml
from stable_baselines3 import A2C, DDPG, DQN, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm

from sb3_mbrl.imitation_learning.common import ImitationError, PathLike, make_env, make_venv

EXPERT_ALGOS: Dict[str, Type[BaseAlgorithm]] = {"ppo": PPO, "sac": SAC, "td3": TD3, "a2c": A2C, "dqn": DQN, "ddpg": DDPG}
# Keys of rl-zoo entries that are not constructor arguments of the algorithm.
_ZOO_ONLY_KEYS = ("n_timesteps", "n_envs", "policy", "env_wrapper", "callback", "frame_stack", "normalize_kwargs")


def default_expert_algo(env_id: str) -> str:
    """``sac`` for continuous actions, ``ppo`` otherwise."""
    env = make_env(env_id)
    try:
        return "sac" if isinstance(env.action_space, gym.spaces.Box) else "ppo"
    finally:
        env.close()


def _schedule(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("lin_"):
        from rl_zoo3.utils import linear_schedule

        return linear_schedule(value[len("lin_"):])
    return value


def _policy_kwargs(value: Any) -> Dict[str, Any]:
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, str):
        # rl-zoo writes policy_kwargs as Python, e.g. "dict(net_arch=[64, 64], activation_fn=nn.ReLU)".
        namespace = {"__builtins__": {}, "dict": dict, "list": list, "nn": th.nn, "th": th, "torch": th}
        return dict(eval(value, namespace))  # noqa: S307 - same as rl_zoo3.exp_manager, our own config files
    raise ImitationError(f"policy_kwargs must be a dict or a string, got {value!r}")


def zoo_hyperparams(algo: str, env_id: str) -> Dict[str, Any]:
    """
    The raw rl-zoo entry for ``env_id`` in ``zoo_configs/<algo>.yml``, falling back to rl-zoo's
    own ``hyperparams/<algo>.yml``. Empty dict if neither has the task.
    """
    from sb3_mbrl.zoo import zoo_config_dir

    candidates = [zoo_config_dir() / f"{algo}.yml"]
    try:
        import rl_zoo3

        candidates.append(Path(rl_zoo3.__file__).parent / "hyperparams" / f"{algo}.yml")
    except ImportError:  # pragma: no cover
        pass
    for path in candidates:
        if path.is_file():
            with open(path) as file:
                config = yaml.safe_load(file) or {}
            if env_id in config:
                return dict(config[env_id])
    return {}


def expert_kwargs(algo: str, env_id: str) -> Tuple[Dict[str, Any], int, int, str]:
    """(constructor kwargs, n_timesteps, n_envs, policy) for ``algo`` on ``env_id`` from the zoo configs."""
    raw = zoo_hyperparams(algo, env_id)
    if raw.get("normalize"):
        raise ImitationError(
            f"The zoo config for {algo} on {env_id} uses VecNormalize, which an expert for imitation cannot use "
            "(demonstrations must hold raw observations). Remove `normalize` from the config."
        )
    n_timesteps = int(float(raw.get("n_timesteps", 0)))
    n_envs = int(raw.get("n_envs", 1))
    policy = str(raw.get("policy", "MlpPolicy"))
    kwargs = {key: _schedule(value) for key, value in raw.items() if key not in _ZOO_ONLY_KEYS and key != "normalize"}
    if "policy_kwargs" in kwargs:
        kwargs["policy_kwargs"] = _policy_kwargs(kwargs["policy_kwargs"])
    return kwargs, n_timesteps, n_envs, policy


def train_expert(
    env_id: str,
    algo: Optional[str] = None,
    timesteps: Optional[int] = None,
    seed: int = 0,
    hyperparams: Optional[Dict[str, Any]] = None,
    verbose: int = 0,
    device: str = "auto",
) -> BaseAlgorithm:
    """
    Train an SB3 expert on ``env_id``.

    :param algo: ``ppo``, ``sac``, ... (default: ``sac`` for Box actions, ``ppo`` otherwise)
    :param timesteps: environment steps (default: ``n_timesteps`` of the zoo config)
    :param hyperparams: overrides of the zoo config's constructor arguments
    :return: the trained model (save it with ``model.save(path)``)
    """
    algo = (algo or default_expert_algo(env_id)).lower()
    if algo not in EXPERT_ALGOS:
        raise ImitationError(f"Unknown expert algorithm {algo!r}; choose one of {sorted(EXPERT_ALGOS)}")
    kwargs, zoo_steps, n_envs, policy = expert_kwargs(algo, env_id)
    kwargs.update(hyperparams or {})
    timesteps = int(timesteps if timesteps is not None else zoo_steps)
    if timesteps <= 0:
        raise ImitationError(
            f"No n_timesteps for {algo} on {env_id} in zoo_configs/{algo}.yml or rl-zoo's configs: pass timesteps"
        )
    venv = make_venv(env_id, n_envs=n_envs, seed=seed, rollout_info=False)
    model = EXPERT_ALGOS[algo](policy, venv, seed=seed, verbose=verbose, device=device, **kwargs)
    model.learn(total_timesteps=timesteps)
    return model


def _zip_algo_name(path: Path) -> Optional[str]:
    """Guess the algorithm of an SB3 zip from the attributes stored in its ``data`` JSON."""
    try:
        with zipfile.ZipFile(path) as archive:
            data = json.load(io.TextIOWrapper(archive.open("data"), encoding="utf-8"))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as error:
        raise ImitationError(f"{path} is not a Stable-Baselines3 model zip: {error}") from error
    # Attributes that only one algorithm family saves.
    for key, name in (("clip_range", "ppo"), ("target_entropy", "sac"), ("exploration_initial_eps", "dqn"),
                      ("target_policy_noise", "td3"), ("normalize_advantage", "a2c")):
        if key in data:
            return name
    return None


def load_model(path: PathLike, algo: Optional[str] = None, device: str = "auto") -> BaseAlgorithm:
    """
    Load an SB3 model zip (an expert, or a BC/GAIL policy saved by this package) with torch's
    safe loading. ``algo`` is guessed from the zip when not given.
    """
    path = Path(path)
    if not path.is_file() and path.with_suffix(".zip").is_file():
        path = path.with_suffix(".zip")
    if not path.is_file():
        raise ImitationError(f"No model file at {path}")
    algo = (algo or _zip_algo_name(path) or "").lower()
    if algo not in EXPERT_ALGOS:
        raise ImitationError(f"Cannot tell which algorithm saved {path}; pass algo= one of {sorted(EXPERT_ALGOS)}")
    return EXPERT_ALGOS[algo].load(path, device=device)
