"""
Policy-only save/load that works under torch's safe loading (``torch.load(..., weights_only=True)``).

Stable-Baselines3 2.2.1's ``policy.save(path)`` pickles the constructor arguments of the policy
(gymnasium spaces, classes such as ``nn.SiLU`` or ``th.optim.Adam``, schedule closures, reward
functions), and ``BasePolicy.load`` reads them back with a plain ``th.load(path)``, which torch >= 2.6
runs with ``weights_only=True`` and refuses (``UnpicklingError: Weights only load failed``).

:func:`save_policy` writes the state dict and the constructor arguments encoded as plain types
(dict, list, tuple, str, int, float, bool, None and tensors), so the file loads with
``torch.load(path, weights_only=True)``; :func:`load_policy` decodes them and rebuilds the policy:

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
import collections
import importlib
import inspect
import pickle
import re
import types
from typing import Any, Dict, Optional, Type, TypeVar, Union

import numpy as np
import stable_baselines3
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.utils import constant_fn, get_device
from torch import nn

SelfPolicy = TypeVar("SelfPolicy", bound=BasePolicy)

#: Version of the file layout written by :func:`save_policy`.
POLICY_FILE_FORMAT = 1
_FORMAT_KEY = "sb3_mbrl_policy_format"
#: Key of the tagged dicts that stand for spaces, import paths, ... in the encoded arguments.
_TAG = "__sb3_mbrl__"
# Constructor arguments whose decoded class must derive from a known base.
_EXPECTED_BASES: Dict[str, type] = {
    "activation_fn": nn.Module,
    "optimizer_class": th.optim.Optimizer,
    "features_extractor_class": BaseFeaturesExtractor,
}
_DOTTED_NAME = r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*"
_IMPORT_PATH = re.compile(rf"^{_DOTTED_NAME}:{_DOTTED_NAME}$")
_SAVE_HINT = (
    "Use a module-level function or class (importable as 'module:qualname'), "
    "or save the whole algorithm with model.save() instead (cloudpickle: load only trusted files)"
)


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
    class_path = _import_path(policy_class, "the policy class")
    data = _constructor_arguments(policy)
    lr_schedule = data.pop("lr_schedule", None)
    encoded = _encode(data, "")  # raises before anything is written
    if lr_schedule is not None or "lr_schedule" in inspect.signature(policy_class).parameters:
        encoded["lr_schedule"] = {_TAG: "constant_schedule", "value": _current_learning_rate(policy, lr_schedule)}
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

    cls = _resolve(saved["policy_class"], "policy_class")
    if not (isinstance(cls, type) and issubclass(cls, BasePolicy)):
        raise ValueError(
            f"load_policy: {path} names {saved['policy_class']!r} as its policy class, which is not a subclass of "
            "stable_baselines3.common.policies.BasePolicy; refusing to build it"
        )
    if policy_class is not None and not issubclass(cls, policy_class):
        raise ValueError(f"load_policy: {path} holds a {cls.__qualname__} policy, not a {policy_class.__qualname__}")

    data = _decode(saved["data"], "")
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


def _child(where: str, key: Any) -> str:
    """Name of ``key`` inside ``where`` in messages: ``reward_fn``, ``planner_kwargs['alpha']``."""
    return str(key) if not where else f"{where}[{key!r}]"


def _unsafe(where: str, value: Any, reason: str) -> ValueError:
    if where.startswith("the "):
        what = where  # e.g. "the policy class"
    else:
        what = f"the constructor argument {where}" if where else "the constructor arguments"
    return ValueError(f"save_policy: cannot store {what} = {value!r} safely: {reason}. {_SAVE_HINT}.")


def _import_path(obj: Any, where: str) -> str:
    """``"module:qualname"`` of a class or module-level function, checked to import back to ``obj``."""
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        raise _unsafe(where, obj, "it has no import path")
    if "<lambda>" in qualname:
        raise _unsafe(where, obj, "it is a lambda")
    if "<locals>" in qualname:
        raise _unsafe(where, obj, "it is defined inside a function")
    path = f"{module}:{qualname}"
    try:
        found = _resolve(path, where)
    except ValueError:
        found = None
    if found is not obj:
        raise _unsafe(where, obj, f"it does not import back from {path!r}")
    return path


def _resolve(path: Any, where: str) -> Any:
    """Import ``"module:qualname"``; only classes and Python functions are accepted."""
    if not isinstance(path, str) or not _IMPORT_PATH.fullmatch(path):
        raise ValueError(f"load_policy: {where} holds an invalid import path {path!r}")
    module_name, qualname = path.split(":")
    parts = qualname.split(".")
    if any(part.startswith("__") and part.endswith("__") for part in parts):
        raise ValueError(f"load_policy: {where} holds an import path with a special name: {path!r}")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in parts:
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"load_policy: cannot import {path!r} ({where}): {error}") from error
    if not isinstance(obj, (type, types.FunctionType)):
        raise ValueError(f"load_policy: {path!r} ({where}) is not a class or a Python function: {type(obj).__name__}")
    return obj


def _is_plain_key(key: Any) -> bool:
    return isinstance(key, str) and key != _TAG


def _encode(value: Any, where: str) -> Any:
    """
    Encode ``value`` as plain types that ``torch.load(..., weights_only=True)`` accepts.

    :param value: A constructor argument (or a part of one).
    :param where: Its name in error messages, e.g. ``reward_fn`` (``""`` for all the arguments).
    :return: The encoded value.
    """
    if value is None or type(value) in (bool, int, float, str):
        return value
    if isinstance(value, th.Tensor):
        return value.detach()
    if isinstance(value, th.dtype):
        return {_TAG: "torch.dtype", "name": str(value).split(".", 1)[1]}
    if isinstance(value, th.device):
        return {_TAG: "torch.device", "name": str(value)}
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise _unsafe(where, value, "it is an object array")
        return value.tolist()
    if isinstance(value, np.generic):
        return _encode(value.item(), where)
    if isinstance(value, np.dtype):
        return {_TAG: "numpy.dtype", "name": value.str}
    if isinstance(value, spaces.Space):
        return _encode_space(value, where)
    if isinstance(value, dict):
        if all(_is_plain_key(key) for key in value):
            return {key: _encode(item, _child(where, key)) for key, item in value.items()}
        key_where = f"a key of {where or 'the arguments'}"
        return {
            _TAG: "dict",
            "items": [[_encode(key, key_where), _encode(item, _child(where, key))] for key, item in value.items()],
        }
    if type(value) is list:
        return [_encode(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if type(value) is tuple:
        return tuple(_encode(item, f"{where}[{i}]") for i, item in enumerate(value))
    if isinstance(value, (type, types.FunctionType)):
        return {_TAG: "import", "path": _import_path(value, where)}
    if callable(value):
        raise _unsafe(where, value, f"a {type(value).__name__} is not a class or a module-level function")
    raise _unsafe(where, value, f"a {type(value).__name__} is not a plain value")


def _encode_space(space: spaces.Space, where: str) -> Dict[str, Any]:
    kind = type(space)
    if kind is spaces.Box:
        return {
            _TAG: "space.Box",
            "low": space.low.tolist(),
            "high": space.high.tolist(),
            "shape": list(space.shape),
            "dtype": space.dtype.str,
        }
    if kind is spaces.Discrete:
        return {_TAG: "space.Discrete", "n": int(space.n), "start": int(space.start)}
    if kind is spaces.MultiDiscrete:
        start = getattr(space, "start", None)
        return {
            _TAG: "space.MultiDiscrete",
            "nvec": space.nvec.tolist(),
            "dtype": space.dtype.str,
            "start": None if start is None else np.asarray(start).tolist(),
        }
    if kind is spaces.MultiBinary:
        n = space.n
        return {_TAG: "space.MultiBinary", "n": int(n) if np.isscalar(n) else np.asarray(n).tolist()}
    if kind is spaces.Dict:
        return {
            _TAG: "space.Dict",
            "spaces": [[key, _encode_space(sub, _child(where, key))] for key, sub in space.spaces.items()],
        }
    if kind is spaces.Tuple:
        return {_TAG: "space.Tuple", "spaces": [_encode_space(sub, f"{where}[{i}]") for i, sub in enumerate(space.spaces)]}
    raise _unsafe(where, space, f"the space type {kind.__qualname__} is not supported")


def _decode(value: Any, where: str) -> Any:
    """
    Inverse of :func:`_encode`.

    :param value: An encoded value, as read by ``torch.load(..., weights_only=True)``.
    :param where: Its name in error messages.
    :return: The decoded value.
    """
    if isinstance(value, list):
        return [_decode(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, tuple):
        return tuple(_decode(item, f"{where}[{i}]") for i, item in enumerate(value))
    if not isinstance(value, dict):
        return value
    if _TAG not in value:
        return {key: _decode(item, _child(where, key)) for key, item in value.items()}
    tag = value[_TAG]
    if tag == "dict":
        key_where = f"a key of {where or 'the arguments'}"
        return {_decode(key, key_where): _decode(item, _child(where, key)) for key, item in value["items"]}
    if tag == "import":
        return _resolve(value["path"], where)
    if tag == "constant_schedule":
        return constant_fn(float(value["value"]))
    if tag == "torch.dtype":
        dtype = getattr(th, str(value["name"]), None)
        if not isinstance(dtype, th.dtype):
            raise ValueError(f"load_policy: {where} holds an unknown torch dtype {value['name']!r}")
        return dtype
    if tag == "torch.device":
        return th.device(str(value["name"]))
    if tag == "numpy.dtype":
        return np.dtype(str(value["name"]))
    if isinstance(tag, str) and tag.startswith("space."):
        return _decode_space(value, where)
    raise ValueError(f"load_policy: {where} holds an unknown tag {tag!r}")


def _decode_space(value: Dict[str, Any], where: str) -> spaces.Space:
    tag = value[_TAG]
    if tag == "space.Box":
        dtype = np.dtype(str(value["dtype"]))
        return spaces.Box(
            low=np.asarray(value["low"], dtype=dtype),
            high=np.asarray(value["high"], dtype=dtype),
            shape=tuple(int(n) for n in value["shape"]),
            dtype=dtype,  # type: ignore[arg-type]
        )
    if tag == "space.Discrete":
        return spaces.Discrete(int(value["n"]), start=int(value["start"]))
    if tag == "space.MultiDiscrete":
        dtype = np.dtype(str(value["dtype"]))
        kwargs = {} if value["start"] is None else {"start": np.asarray(value["start"], dtype=dtype)}
        return spaces.MultiDiscrete(np.asarray(value["nvec"], dtype=dtype), dtype=dtype, **kwargs)  # type: ignore[arg-type]
    if tag == "space.MultiBinary":
        return spaces.MultiBinary(value["n"])
    if tag == "space.Dict":
        return spaces.Dict(
            collections.OrderedDict((key, _decode_space(sub, _child(where, key))) for key, sub in value["spaces"])
        )
    if tag == "space.Tuple":
        return spaces.Tuple([_decode_space(sub, f"{where}[{i}]") for i, sub in enumerate(value["spaces"])])
    raise ValueError(f"load_policy: {where} holds an unknown space {tag!r}")
