"""The L2 coefficients of the ensemble's layers, shared by PETS and MBPO (``model_weight_decays``)."""
from typing import List, Sequence, Union

import numpy as np

# The PETS and MBPO papers' L2 coefficients for their 4 hidden layers and the output layer.
PAPER_WEIGHT_DECAYS = (2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4)

WeightDecays = Union[str, Sequence[float], None]


def model_weight_decays_for(net_arch: Sequence[int], weight_decays: WeightDecays, owner: str) -> List[float]:
    """
    One L2 coefficient per model layer (hidden layers, then output).

    ``"auto"`` spreads the papers' decays over the layers of ``net_arch`` (exactly the papers' for
    4 hidden layers; linear interpolation, from the first hidden layer's to the output's, for
    other depths); ``None`` means no weight decay; a sequence must have one entry per layer.

    :param net_arch: Hidden layer sizes (``model_net_arch``).
    :param weight_decays: ``"auto"``, ``None`` or one coefficient per layer (``model_weight_decays``).
    :param owner: Algorithm named in the error messages.
    :return: The coefficients, ``len(net_arch) + 1`` floats.
    """
    n_layers = len(net_arch) + 1
    if weight_decays is None:
        return [0.0] * n_layers
    if isinstance(weight_decays, str):
        if weight_decays != "auto":
            raise ValueError(f"{owner}: model_weight_decays must be 'auto', None or a list of floats, got {weight_decays!r}")
        paper = np.asarray(PAPER_WEIGHT_DECAYS)
        return [float(x) for x in np.interp(np.linspace(0, 1, n_layers), np.linspace(0, 1, len(paper)), paper)]
    decays = [float(x) for x in weight_decays]
    if len(decays) != n_layers:
        raise ValueError(
            f"{owner}: model_weight_decays has {len(decays)} entries but model_net_arch {list(net_arch)} has "
            f"{n_layers} layers ({len(net_arch)} hidden + output); give one decay per layer, or 'auto' for the "
            "papers' decays spread over the layers"
        )
    return decays
