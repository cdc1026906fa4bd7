"""sb3-mbrl: model-based RL for Stable-Baselines3."""
__version__ = "0.1.0"

__all__ = ["__version__"]
