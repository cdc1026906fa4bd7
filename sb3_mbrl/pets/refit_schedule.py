"""When PETS refits its ensemble: ``model_train_freq``, every ``n`` env steps or ``n`` ended episodes."""
from typing import Tuple, Union

import numpy as np
from stable_baselines3.common.type_aliases import TrainFrequencyUnit

ModelTrainFreq = Union[int, Tuple[int, str]]


def parse_model_train_freq(freq: ModelTrainFreq) -> Tuple[int, TrainFrequencyUnit]:
    """``n``, ``(n, "step")`` or ``(n, "episode")`` as ``(n, unit)``, with a clear error otherwise."""
    n, unit = (freq, "step") if not isinstance(freq, (tuple, list)) else tuple(freq)  # type: ignore[misc]
    try:
        parsed_unit = TrainFrequencyUnit(unit)
    except ValueError:
        raise ValueError(f"PETS: model_train_freq unit must be 'step' or 'episode', got {freq!r}") from None
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"PETS: model_train_freq must be a positive int or (int, 'step'|'episode'), got {freq!r}")
    return int(n), parsed_unit


class RefitSchedule:
    """
    Counts the real data collected since the last model fit (env steps over all envs, and ended
    episodes, across ``learn()`` calls) and says when ``model_train_freq`` asks for a refit. Not
    saved with the model: it describes the replay buffer, which ``load()`` starts empty.

    :param freq: ``n``, ``(n, "step")`` or ``(n, "episode")``.
    """

    def __init__(self, freq: ModelTrainFreq) -> None:
        self.n, self.unit = parse_model_train_freq(freq)
        self.restart()

    def restart(self, pending: bool = False) -> None:
        """Count from zero (after a fit); ``pending``: refit at the next chance (the buffer was replaced)."""
        self.steps, self.episodes, self.pending = 0, 0, pending

    def record(self, dones: np.ndarray) -> None:
        """One collection step: ``dones`` of every env, ``(n_envs,)``."""
        self.steps += len(dones)
        self.episodes += int(np.sum(dones))

    def due(self) -> bool:
        """Whether enough new data came in since the last fit (or a refit is pending)."""
        done = self.episodes if self.unit == TrainFrequencyUnit.EPISODE else self.steps
        return self.pending or done >= self.n
