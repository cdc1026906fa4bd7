"""Our algorithms in rl-zoo's algorithm table, their Optuna samplers in rl-zoo's sampler table."""
from typing import Dict, Type

from stable_baselines3.common.base_class import BaseAlgorithm


def sb3_mbrl_algorithms() -> Dict[str, Type[BaseAlgorithm]]:
    """Every sb3_mbrl algorithm, by its rl-zoo name. Each algorithm issue adds its class here."""
    from sb3_mbrl.loop import LOOP
    from sb3_mbrl.mbpo import MBPO
    from sb3_mbrl.pets import PETS
    from sb3_mbrl.reinforce import REINFORCE

    return {"pets": PETS, "mbpo": MBPO, "loop": LOOP, "reinforce": REINFORCE}


def register_algorithms() -> Dict[str, Type[BaseAlgorithm]]:
    """
    Add our algorithms to ``rl_zoo3.ALGOS`` (shared by train, enjoy and the experiment manager) and
    their Optuna samplers to ``rl_zoo3.hyperparams_opt.HYPERPARAMS_SAMPLER`` (used by ``-optimize``).
    Calling it again changes nothing.
    """
    from rl_zoo3.hyperparams_opt import HYPERPARAMS_SAMPLER
    from rl_zoo3.utils import ALGOS

    from sb3_mbrl.zoo.search_spaces import SAMPLERS

    ours = sb3_mbrl_algorithms()
    ALGOS.update(ours)
    HYPERPARAMS_SAMPLER.update({name: SAMPLERS[name] for name in ours if name in SAMPLERS})
    return ours


__all__ = ["register_algorithms", "sb3_mbrl_algorithms"]
