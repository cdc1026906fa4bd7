"""The learned dynamics model shared by PETS and MBPO."""
from sb3_mbrl.dynamics.ensemble import ProbabilisticEnsemble
from sb3_mbrl.dynamics.layers import EnsembleLinear
from sb3_mbrl.dynamics.model_env import PROPAGATION_METHODS, ModelEnv
from sb3_mbrl.dynamics.trainer import EnsembleTrainer

__all__ = ["EnsembleLinear", "EnsembleTrainer", "ModelEnv", "PROPAGATION_METHODS", "ProbabilisticEnsemble"]
