"""sb3-mbrl: model-based RL for Stable-Baselines3."""
__version__ = "0.1.0"

from sb3_mbrl.mbpo import MBPO
from sb3_mbrl.pets import PETS
from sb3_mbrl.reinforce import REINFORCE

__all__ = ["MBPO", "PETS", "REINFORCE", "__version__"]
