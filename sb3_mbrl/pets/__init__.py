from sb3_mbrl.pets.pets import PETS
from sb3_mbrl.pets.policies import MPCPolicy

__all__ = ["MPCPolicy", "PETS"]
