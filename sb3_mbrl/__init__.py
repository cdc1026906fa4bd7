"""sb3-mbrl: model-based RL for Stable-Baselines3."""
import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# The algorithms are imported on first use (PEP 562), so that `sb3-mbrl --help` and usage errors
# answer without importing torch, SB3 and rl-zoo.
_ALGORITHMS = {"LOOP": "sb3_mbrl.loop", "MBPO": "sb3_mbrl.mbpo", "PETS": "sb3_mbrl.pets", "REINFORCE": "sb3_mbrl.reinforce"}

if TYPE_CHECKING:  # pragma: no cover
    from sb3_mbrl.loop import LOOP
    from sb3_mbrl.mbpo import MBPO
    from sb3_mbrl.pets import PETS
    from sb3_mbrl.reinforce import REINFORCE


def __getattr__(name: str) -> Any:
    if name in _ALGORITHMS:
        value = getattr(importlib.import_module(_ALGORITHMS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sb3_mbrl' has no attribute {name!r}")


def __dir__() -> list:
    return sorted([*globals(), *_ALGORITHMS])


__all__ = ["LOOP", "MBPO", "PETS", "REINFORCE", "__version__"]
