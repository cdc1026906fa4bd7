"""REINFORCE: Monte-Carlo policy gradient as an SB3 on-policy algorithm."""
from sb3_mbrl.reinforce.reinforce import REINFORCE, discounted_returns

__all__ = ["REINFORCE", "discounted_returns"]
