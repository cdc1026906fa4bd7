"""Types shared by the known task functions, the dynamics model and the algorithms."""
from typing import Callable

import torch as th

# (obs, action, next_obs), each (B, dim) -> reward (B,) float or terminated (B,) bool.
# It lives here, in the lowest layer, so that envs/ needs nothing from dynamics/.
TransitionFn = Callable[[th.Tensor, th.Tensor, th.Tensor], th.Tensor]

# obs (B, obs_dim) -> value (B,) float: the value of a state a planned candidate ends in.
StateValueFn = Callable[[th.Tensor], th.Tensor]

# obs (..., obs_dim) -> (..., d): what the dynamics model reads of an observation (with the action).
ObsProcessFn = Callable[[th.Tensor], th.Tensor]
