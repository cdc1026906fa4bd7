"""
PETS's names before issue 12 ("one name per concept across PETS and MBPO"), kept for one release:
the old constructor keywords (accepted with a FutureWarning, see :mod:`sb3_mbrl.common.deprecation`)
and the attributes of models saved under them. Delete this module and its two uses in pets.py then.
"""
from typing import Any

# Old constructor keyword -> new one.
RENAMED_ARGUMENTS = {
    "optimizer": "planner",
    "optimizer_kwargs": "planner_kwargs",
    "learning_rate": "model_learning_rate",
    "batch_size": "model_batch_size",
    "holdout_ratio": "model_holdout_ratio",
}
# Old policy_kwargs key -> new constructor keyword.
RENAMED_POLICY_KWARGS = {
    "net_arch": "model_net_arch",
    "activation_fn": "model_activation_fn",
    "weight_decays": "model_weight_decays",
}


def upgrade_saved_attributes(algo: Any) -> None:
    """
    Give a PETS model loaded from a file saved before the rename its new attributes, in place.
    Such files hold ``optimizer``, ``optimizer_kwargs``, ``holdout_ratio``, SB3's ``learning_rate``
    and ``batch_size`` as the model's settings, and ``net_arch``, ``activation_fn`` and
    ``weight_decays`` (none: no weight decay, the default then) in ``policy_kwargs``.
    Models saved with the new names are left as they are.

    :param algo: The PETS model, after ``load()`` set the saved attributes, before the policy is built.
    """
    state = vars(algo)
    if "optimizer_kwargs" not in state and "holdout_ratio" not in state:
        return
    algo.planner = state.pop("optimizer", algo.planner)
    algo.planner_kwargs = dict(state.pop("optimizer_kwargs", None) or {})
    algo.model_holdout_ratio = state.pop("holdout_ratio", algo.model_holdout_ratio)
    algo.model_learning_rate = algo.learning_rate
    algo.model_batch_size = algo.batch_size
    policy_kwargs = dict(algo.policy_kwargs)
    algo.model_net_arch = list(policy_kwargs.pop("net_arch", algo.model_net_arch))
    algo.model_activation_fn = policy_kwargs.pop("activation_fn", algo.model_activation_fn)
    algo.model_weight_decays = policy_kwargs.pop("weight_decays", None)
    algo.policy_kwargs = policy_kwargs
    state.pop("_model_train_freq", None)  # parsed again from model_train_freq
