"""How long planning steps take during data collection (PETS, LOOP): the ``time/planning_ms*`` logs."""
from typing import Dict, Iterable

import numpy as np
from stable_baselines3.common.logger import Logger


def planning_summary(times_ms: Iterable[float]) -> Dict[str, float]:
    """
    Mean, median, 95th percentile and maximum of planning milliseconds, and their count (``steps``);
    empty when there are none. With a heavy tail (one slow step on a busy machine) the mean can
    exceed the 95th percentile; ``max`` shows that step.

    :param times_ms: Milliseconds of each planning step.
    :return: ``mean``, ``median``, ``p95``, ``max``, ``steps``.
    """
    times = np.asarray(list(times_ms), dtype=np.float64)
    if times.size == 0:
        return {}
    return {
        "mean": float(times.mean()),
        "median": float(np.median(times)),
        "p95": float(np.percentile(times, 95)),
        "max": float(times.max()),
        "steps": float(times.size),
    }


def record_planning_times(logger: Logger, stats: Dict[str, float]) -> None:
    """Log a :func:`planning_summary` as ``time/planning_ms`` (mean), ``_median``, ``_p95``, ``_max`` and ``time/planning_steps``."""
    if not stats:
        return
    logger.record("time/planning_ms", stats["mean"])
    logger.record("time/planning_ms_median", stats["median"])
    logger.record("time/planning_ms_p95", stats["p95"])
    logger.record("time/planning_ms_max", stats["max"])
    logger.record("time/planning_steps", int(stats["steps"]))
