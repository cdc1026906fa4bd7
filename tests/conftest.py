import pytest
import torch as th

# Tests run tiny networks: one thread avoids thread overhead and leaves the other core free.
th.set_num_threads(1)


@pytest.fixture
def autocast_dtypes_of_fits():
    """``record(dynamics)``: a list that gets the autocast dtype of every training loss the ensemble
    computes from then on (float32 where autocast is off)."""

    def record(dynamics):
        seen = []
        nll_loss = dynamics.nll_loss

        def recorded(x, y):
            seen.append(th.get_autocast_dtype("cpu") if th.is_autocast_enabled("cpu") else th.float32)
            return nll_loss(x, y)

        dynamics.nll_loss = recorded
        return seen

    return record
