"""
SIGTERM while ``sb3-mbrl train`` trains is handled like Ctrl-C: training stops and rl-zoo saves the
model as it does after ``KeyboardInterrupt``; a second SIGTERM does not cut the save short.
"""
import signal
import sys
import threading
from typing import Any, Type

from stable_baselines3.common.base_class import BaseAlgorithm


class SigtermAsInterrupt:
    """
    While installed (main thread only), the first SIGTERM raises ``KeyboardInterrupt`` in the main
    thread, as Ctrl-C does, so that rl-zoo stops training and saves the model. Later SIGTERMs, and
    any once training has ended (``stop_raising``), only are recorded: an interrupt must not cut
    the save short. SIGKILL still stops the process at once.
    """

    def __init__(self) -> None:
        self.received = False
        self._raise = True
        self._previous: Any = None
        self._installed = False

    def _handle(self, signum: int, frame: Any) -> None:
        # No printing here: a handler that writes may run in the middle of another write to the stream.
        self.received = True
        if self._raise:
            self._raise = False
            raise KeyboardInterrupt

    def stop_raising(self) -> None:
        """From now on SIGTERM is only recorded (the model is being saved)."""
        self._raise = False

    def __enter__(self) -> "SigtermAsInterrupt":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
            self._installed = True
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._installed:
            signal.signal(signal.SIGTERM, self._previous)
            self._installed = False


def experiment_manager_class(sigterm: SigtermAsInterrupt) -> Type[Any]:
    """
    rl-zoo's ``ExperimentManager`` that tells ``sigterm`` when training ends, and says what a SIGTERM
    did; our algorithms learn with the torch threads of ``--num-threads``.
    """
    from rl_zoo3.exp_manager import ExperimentManager

    class SigtermExperimentManager(ExperimentManager):
        def learn(self, model: BaseAlgorithm) -> None:
            if hasattr(model, "num_threads"):  # our algorithms: learn() with the threads of --num-threads
                import torch as th

                model.num_threads = th.get_num_threads()
            try:
                super().learn(model)
            except KeyboardInterrupt:
                # model.learn() itself is covered by rl-zoo's own except; a SIGTERM in its cleanup
                # (closing the envs) lands here, and the model is saved all the same.
                if not sigterm.received:
                    raise
            finally:
                sigterm.stop_raising()
            if sigterm.received:
                print(
                    f"sb3-mbrl train: SIGTERM at step {model.num_timesteps}: training stopped, saving the model",
                    file=sys.stderr,
                    flush=True,
                )

    return SigtermExperimentManager


__all__ = ["SigtermAsInterrupt", "experiment_manager_class"]
