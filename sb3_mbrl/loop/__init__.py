from sb3_mbrl.loop.loop import LOOP

__all__ = ["LOOP"]
