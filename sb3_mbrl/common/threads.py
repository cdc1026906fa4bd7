"""The torch thread policy of sb3_mbrl's algorithms: one intra-op thread while learning, by default.

Measured on the 2-core CI-like machine (``python -m benchmarks.threads``, README "Threads"): two
threads are 1.25-1.33x faster than one on an idle machine, but 2.2-3.3x slower as soon as one other
single-threaded job shares the cores (the threads spin waiting for a busy core), for planning,
model fits and SAC updates alike. One thread never collapses, so it is the default.
"""
import contextlib
from typing import Iterator, Optional

import torch as th


def check_num_threads(num_threads: Optional[int]) -> Optional[int]:
    """``None`` or a positive int, else a ``ValueError`` naming the value."""
    if num_threads is None:
        return None
    if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
        raise ValueError(f"num_threads must be a positive int or None (keep torch's setting), got {num_threads!r}")
    return num_threads


@contextlib.contextmanager
def torch_threads(num_threads: Optional[int]) -> Iterator[None]:
    """
    Run the block with ``num_threads`` torch intra-op threads and restore the caller's setting after.

    :param num_threads: Threads for the block; ``None`` leaves torch's setting as it is.
    """
    if num_threads is None or num_threads == th.get_num_threads():
        yield
        return
    previous = th.get_num_threads()
    th.set_num_threads(num_threads)
    try:
        yield
    finally:
        th.set_num_threads(previous)
