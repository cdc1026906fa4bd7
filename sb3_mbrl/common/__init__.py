"""
SB3 glue shared by the sb3_mbrl algorithms: replay buffer to tensors, reward/termination function
lookup, input checks, the model's trainer and fit with its logs, renamed-argument aliases,
callbacks, policy-only save/load, torch threads, the rl-zoo config reader.
"""
from sb3_mbrl.common.callbacks import ModelDiagnosticsCallback, get_dynamics_ensemble
from sb3_mbrl.common.policy_io import load_policy, save_policy

__all__ = ["ModelDiagnosticsCallback", "get_dynamics_ensemble", "load_policy", "save_policy"]
