"""Pieces shared by the sb3_mbrl algorithms: callbacks."""
from sb3_mbrl.common.callbacks import ModelDiagnosticsCallback, get_dynamics_ensemble

__all__ = ["ModelDiagnosticsCallback", "get_dynamics_ensemble"]
