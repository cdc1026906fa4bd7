"""
Policy-only save/load that works under torch's safe loading (``torch.load(..., weights_only=True)``).

Stable-Baselines3 2.2.1's ``policy.save(path)`` pickles the constructor arguments of the policy
(gymnasium spaces, classes such as ``nn.SiLU`` or ``th.optim.Adam``, schedule closures, reward
functions), and ``BasePolicy.load`` reads them back with a plain ``th.load(path)``, which torch >= 2.6
runs with ``weights_only=True`` and refuses (``UnpicklingError: Weights only load failed``).

:func:`save_policy` writes the state dict and the constructor arguments encoded as plain types
(dict, list, tuple, str, int, float, bool, None and tensors), so the file loads with
``torch.load(path, weights_only=True)``; :func:`load_policy` decodes them and rebuilds the policy
(the encoding is :mod:`sb3_mbrl.common.encoding`):

- gymnasium spaces (``Box``, ``Discrete``, ``MultiDiscrete``, ``MultiBinary``, and ``Dict`` /
  ``Tuple`` of those) become tagged dicts;
- classes and module-level functions (``activation_fn``, ``optimizer_class``,
  ``features_extractor_class``, ``reward_fn`` / ``termination_fn`` from :mod:`sb3_mbrl.envs` or your
  own modules) become their import path ``"module:qualname"``, imported again with
  :mod:`importlib` on load;
- numpy arrays and scalars become lists and Python numbers;
- ``lr_schedule`` becomes the current learning rate, rebuilt as SB3's ``constant_fn``.

The policy file does not keep the optimiser state or a learning-rate schedule (SB3's
``policy.save`` does not either): it is for acting and fine-tuning from the weights. To resume
training, save the whole algorithm with ``model.save()`` (cloudpickle: load only trusted files).

Loading never executes code stored in the file, but it imports the modules whose names the file
holds (the policy class, activation, reward function, ...), as ``"module:qualname"`` import paths:
those must be installed code you trust.
"""
import inspect
import pickle
from typing import Any, Dict, Optional, Type, TypeVar, Union

import stable_baselines3
import torch as th
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.utils import get_device
from torch import nn

from sb3_mbrl.common.encoding import decode, encode, encode_constant_schedule, import_path, resolve_import_path

SelfPolicy = TypeVar("SelfPolicy", bound=BasePolicy)

#: Version of the file layout written by :func:`save_policy`.
POLICY_FILE_FORMAT = 1
_FORMAT_KEY = "sb3_mbrl_policy_format"
# Constructor arguments whose decoded class must derive from a known base.
_EXPECTED_BASES: Dict[str, type] = {
    "activation_fn": nn.Module,
    "optimizer_class": th.optim.Optimizer,
    "features_extractor_class": BaseFeaturesExtractor,
}


def save_policy(policy: BasePolicy, path: str) -> None:
    """
    Save a policy (weights and constructor arguments) to a file that loads with
    ``torch.load(path, weights_only=True)``.

    Constructor arguments come from ``policy._get_constructor_parameters()``; those the policy's
    constructor does not accept are left out, ``optimizer_class`` / ``optimizer_kwargs`` are added
    when the constructor takes them but the policy does not report them, and ``lr_schedule`` is
    stored as the current learning rate of the policy's optimiser (``policy.optimizer``, else
    ``policy.actor.optimizer``; else the schedule's value at the start of training). The optimiser
    state and the schedule itself are not kept, as with SB3's ``policy.save``.

    :param policy: The policy to save.
    :param path: Where to write the file.
    :raises ValueError: When a constructor argument cannot be encoded safely (a lambda, a local
        function, an arbitrary object): use a module-level function or the algorithm's ``model.save()``.
    """
    if not isinstance(policy, BasePolicy):
        raise TypeError(f"save_policy: expected a stable_baselines3 BasePolicy, got {type(policy).__name__}")
    policy_class = type(policy)
    class_path = import_path(policy_class, "the policy class")
    data = _constructor_arguments(policy)
    lr_schedule = data.pop("lr_schedule", None)
    encoded = encode(data, "")  # raises before anything is written
    if lr_schedule is not None or "lr_schedule" in inspect.signature(policy_class).parameters:
        encoded["lr_schedule"] = encode_constant_schedule(_current_learning_rate(policy, lr_schedule))
    th.save(
        {
            _FORMAT_KEY: POLICY_FILE_FORMAT,
            "policy_class": class_path,
            "data": encoded,
            "state_dict": policy.state_dict(),
            "versions": {"stable_baselines3": str(stable_baselines3.__version__), "torch": str(th.__version__)},
        },
        path,
    )


def load_policy(
    path: str,
    device: Union[th.device, str] = "auto",
    policy_class: Optional[Type[SelfPolicy]] = None,
) -> SelfPolicy:
    """
    Load a policy written by :func:`save_policy`, with ``torch.load(path, weights_only=True)``.

    The policy class named in the file must be a subclass of SB3's ``BasePolicy`` (and of
    ``policy_class`` when given); it is rebuilt from the decoded constructor arguments, gets the
    saved weights and is moved to ``device``. Its optimiser starts afresh, at the saved learning rate.

    :param path: The file written by :func:`save_policy`.
    :param device: Device on which the policy should be loaded.
    :param policy_class: Expected policy class; the file is refused when its policy is not one.
    :return: The loaded policy.
    :raises ValueError: When the file is not a policy file of :func:`save_policy`, names a class that
        is not a ``BasePolicy`` (or not a ``policy_class``), or holds import paths that do not resolve
        to a class or a Python function.
    """
    if policy_class is not None and not (isinstance(policy_class, type) and issubclass(policy_class, BasePolicy)):
        raise TypeError(f"load_policy: policy_class must be a subclass of BasePolicy, got {policy_class!r}")
    device = get_device(device)
    try:
        saved = th.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(
            f"load_policy: {path} is not a policy file written by sb3_mbrl.common.save_policy (it holds pickled "
            "objects, e.g. from SB3's policy.save(), which torch refuses under weights_only=True)"
        ) from error
    if not isinstance(saved, dict) or _FORMAT_KEY not in saved:
        raise ValueError(f"load_policy: {path} is not a policy file written by sb3_mbrl.common.save_policy")
    if saved[_FORMAT_KEY] != POLICY_FILE_FORMAT:
        raise ValueError(f"load_policy: {path} has policy file format {saved[_FORMAT_KEY]!r}, expected {POLICY_FILE_FORMAT}")

    cls = resolve_import_path(saved["policy_class"], "policy_class")
    if not (isinstance(cls, type) and issubclass(cls, BasePolicy)):
        raise ValueError(
            f"load_policy: {path} names {saved['policy_class']!r} as its policy class, which is not a subclass of "
            "stable_baselines3.common.policies.BasePolicy; refusing to build it"
        )
    if policy_class is not None and not issubclass(cls, policy_class):
        raise ValueError(f"load_policy: {path} holds a {cls.__qualname__} policy, not a {policy_class.__qualname__}")

    data = decode(saved["data"], "")
    if not isinstance(data, dict):
        raise ValueError(f"load_policy: the constructor arguments in {path} are not a dict")
    for name, base in _EXPECTED_BASES.items():
        value = data.get(name)
        if value is not None and not (isinstance(value, type) and issubclass(value, base)):
            raise ValueError(f"load_policy: {name} in {path} must be a subclass of {base.__qualname__}, got {value!r}")

    policy = cls(**data)
    policy.load_state_dict(saved["state_dict"])
    policy.to(device)
    return policy  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------- helpers
def _constructor_arguments(policy: BasePolicy) -> Dict[str, Any]:
    """The constructor arguments to store: ``_get_constructor_parameters()`` fitted to the signature."""
    data = dict(policy._get_constructor_parameters())
    parameters = inspect.signature(type(policy)).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        # e.g. BaseModel reports normalize_images, which a policy without that argument cannot take
        data = {name: value for name, value in data.items() if name in parameters}
    for name in ("optimizer_class", "optimizer_kwargs"):  # kept by SB3's BaseModel
        if name in parameters and name not in data and hasattr(policy, name):
            data[name] = getattr(policy, name)
    return data


def _current_learning_rate(policy: BasePolicy, lr_schedule: Any) -> float:
    """Learning rate of the policy's optimiser now, else the schedule's value at progress 1."""
    for owner in (policy, getattr(policy, "actor", None)):
        optimizer = getattr(owner, "optimizer", None)
        if isinstance(optimizer, th.optim.Optimizer) and optimizer.param_groups:
            return float(optimizer.param_groups[0]["lr"])
    if callable(lr_schedule):
        return float(lr_schedule(1.0))
    return float(lr_schedule) if lr_schedule is not None else 0.0
