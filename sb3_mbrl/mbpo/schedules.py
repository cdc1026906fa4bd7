"""MBPO's rollout-length schedule: a constant ``k`` or ``(min_epoch, max_epoch, min_length, max_length)``."""
from typing import Sequence, Tuple, Union

import numpy as np

RolloutSchedule = Union[int, Tuple[int, int, int, int], Sequence[int]]


def rollout_length_at(schedule: RolloutSchedule, epoch: int) -> int:
    """
    Rollout length for an epoch: a constant, or ``(min_epoch, max_epoch, min_length, max_length)``
    growing linearly from ``min_length`` at ``min_epoch`` to ``max_length`` at ``max_epoch``.
    """
    if isinstance(schedule, (int, np.integer)):
        return int(schedule)
    min_epoch, max_epoch, min_length, max_length = schedule
    progress = min(max((epoch - min_epoch) / (max_epoch - min_epoch), 0.0), 1.0)
    return int(min_length + progress * (max_length - min_length))


def check_rollout_schedule(schedule: RolloutSchedule) -> RolloutSchedule:
    """The schedule as an int or a 4-tuple of ints, with a clear error when it cannot work."""
    if isinstance(schedule, (int, np.integer)):
        if schedule < 1:
            raise ValueError(f"MBPO: rollout_length must be at least 1, got {schedule}")
        return int(schedule)
    if len(schedule) != 4:
        raise ValueError(f"MBPO: rollout_length schedule must be (min_epoch, max_epoch, min_length, max_length), got {schedule}")
    min_epoch, max_epoch, min_length, max_length = (int(x) for x in schedule)
    if not (0 <= min_epoch < max_epoch and 1 <= min_length <= max_length):
        raise ValueError(
            "MBPO: rollout_length schedule must increase: need 0 <= min_epoch < max_epoch and "
            f"1 <= min_length <= max_length, got {tuple(schedule)}"
        )
    return (min_epoch, max_epoch, min_length, max_length)
