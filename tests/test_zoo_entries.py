"""Every entry of every shipped zoo file (``zoo_configs/<algo>.yml``) builds its algorithm as ``sb3-mbrl train`` would."""
from typing import List, Tuple

import pytest
import yaml
from stable_baselines3.common.env_util import make_vec_env

from sb3_mbrl.common.zoo_config import load_zoo_hyperparams, zoo_config_dir

OUR_ALGOS = ("pets", "mbpo", "loop", "reinforce")


def _entries() -> List[Tuple[str, str]]:
    return [(algo, env_id) for algo in OUR_ALGOS for env_id in yaml.safe_load((zoo_config_dir() / f"{algo}.yml").read_text())]


@pytest.mark.parametrize("algo,env_id", _entries())
def test_every_zoo_entry_builds_its_algorithm(algo, env_id):
    import sb3_mbrl

    hyperparams = load_zoo_hyperparams(algo, env_id)
    env = make_vec_env(env_id, n_envs=hyperparams.n_envs, seed=0, wrapper_class=hyperparams.env_wrapper)
    try:
        model = getattr(sb3_mbrl, algo.upper())(hyperparams.policy, env, seed=0, **hyperparams.with_action_noise(env))
        # Every setting of the entry reached the model (none silently dropped or renamed).
        for key, value in hyperparams.kwargs.items():
            if isinstance(value, (int, float, str, bool)) and hasattr(model, key):
                assert getattr(model, key) == value, (key, getattr(model, key), value)
    finally:
        env.close()
