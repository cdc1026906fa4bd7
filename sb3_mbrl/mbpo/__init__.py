from sb3_mbrl.mbpo.buffers import MixedReplayBuffer, ModelTransitionBuffer
from sb3_mbrl.mbpo.mbpo import MBPO

__all__ = ["MBPO", "MixedReplayBuffer", "ModelTransitionBuffer"]
