"""REINFORCE: Monte-Carlo policy gradient as an SB3 on-policy algorithm."""
from sb3_mbrl.reinforce.reinforce import REINFORCE
from sb3_mbrl.reinforce.returns import discounted_returns

__all__ = ["REINFORCE", "discounted_returns"]
