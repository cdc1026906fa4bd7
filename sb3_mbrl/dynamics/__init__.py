"""The learned dynamics model shared by PETS and MBPO."""
from sb3_mbrl.dynamics.ensemble import ProbabilisticEnsemble
from sb3_mbrl.dynamics.layers import EnsembleLinear
from sb3_mbrl.dynamics.model_env import PROPAGATION_METHODS, ModelEnv
from sb3_mbrl.dynamics.trainer import EnsembleTrainer
from sb3_mbrl.dynamics.weight_decays import PAPER_WEIGHT_DECAYS, model_weight_decays_for

__all__ = [
    "EnsembleLinear",
    "EnsembleTrainer",
    "ModelEnv",
    "PAPER_WEIGHT_DECAYS",
    "PROPAGATION_METHODS",
    "ProbabilisticEnsemble",
    "model_weight_decays_for",
]
