"""
The constructor arguments of a policy as plain types that ``torch.load(..., weights_only=True)`` accepts.

:func:`encode` turns gymnasium spaces, classes and module-level functions, numpy values, torch
dtypes and devices into tagged dicts of plain types (dict, list, tuple, str, int, float, bool,
None, tensors); :func:`decode` turns them back, importing classes and functions by their
``"module:qualname"`` path. Anything else (a lambda, a local function, an arbitrary object) is
refused with a message naming the argument, since it could not be rebuilt without pickle.
Used by :mod:`sb3_mbrl.common.policy_io`, whose functions the messages name.
"""
import collections
import importlib
import re
import types
from typing import Any, Dict

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.utils import constant_fn

#: Key of the tagged dicts that stand for spaces, import paths, ... in the encoded arguments.
TAG = "__sb3_mbrl__"
_DOTTED_NAME = r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*"
_IMPORT_PATH = re.compile(rf"^{_DOTTED_NAME}:{_DOTTED_NAME}$")
_SAVE_HINT = (
    "Use a module-level function or class (importable as 'module:qualname'), "
    "or save the whole algorithm with model.save() instead (cloudpickle: load only trusted files)"
)


def encode_constant_schedule(value: float) -> Dict[str, Any]:
    """
    A learning-rate schedule stored as its current value; :func:`decode` rebuilds SB3's ``constant_fn``.

    :param value: The learning rate.
    :return: The tagged dict.
    """
    return {TAG: "constant_schedule", "value": float(value)}


def _child(where: str, key: Any) -> str:
    """Name of ``key`` inside ``where`` in messages: ``reward_fn``, ``planner_kwargs['alpha']``."""
    return str(key) if not where else f"{where}[{key!r}]"


def _unsafe(where: str, value: Any, reason: str) -> ValueError:
    if where.startswith("the "):
        what = where  # e.g. "the policy class"
    else:
        what = f"the constructor argument {where}" if where else "the constructor arguments"
    return ValueError(f"save_policy: cannot store {what} = {value!r} safely: {reason}. {_SAVE_HINT}.")


def import_path(obj: Any, where: str) -> str:
    """
    ``"module:qualname"`` of a class or module-level function, checked to import back to ``obj``.

    :param obj: The class or function.
    :param where: Its name in error messages.
    :return: The import path.
    :raises ValueError: For a lambda, a local function or anything that does not import back.
    """
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
        found = resolve_import_path(path, where)
    except ValueError:
        found = None
    if found is not obj:
        raise _unsafe(where, obj, f"it does not import back from {path!r}")
    return path


def resolve_import_path(path: Any, where: str) -> Any:
    """
    Import ``"module:qualname"``; only classes and Python functions are accepted.

    :param path: The import path, as read from a file.
    :param where: Its name in error messages.
    :return: The class or function.
    :raises ValueError: For an invalid path, a special name (``__x__``), an import failure, or
        anything but a class or a Python function.
    """
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
    return isinstance(key, str) and key != TAG


def encode(value: Any, where: str) -> Any:
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
        return {TAG: "torch.dtype", "name": str(value).split(".", 1)[1]}
    if isinstance(value, th.device):
        return {TAG: "torch.device", "name": str(value)}
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise _unsafe(where, value, "it is an object array")
        return value.tolist()
    if isinstance(value, np.generic):
        return encode(value.item(), where)
    if isinstance(value, np.dtype):
        return {TAG: "numpy.dtype", "name": value.str}
    if isinstance(value, spaces.Space):
        return _encode_space(value, where)
    if isinstance(value, dict):
        if all(_is_plain_key(key) for key in value):
            return {key: encode(item, _child(where, key)) for key, item in value.items()}
        key_where = f"a key of {where or 'the arguments'}"
        return {
            TAG: "dict",
            "items": [[encode(key, key_where), encode(item, _child(where, key))] for key, item in value.items()],
        }
    if type(value) is list:
        return [encode(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if type(value) is tuple:
        return tuple(encode(item, f"{where}[{i}]") for i, item in enumerate(value))
    if isinstance(value, (type, types.FunctionType)):
        return {TAG: "import", "path": import_path(value, where)}
    if callable(value):
        raise _unsafe(where, value, f"a {type(value).__name__} is not a class or a module-level function")
    raise _unsafe(where, value, f"a {type(value).__name__} is not a plain value")


def _encode_space(space: spaces.Space, where: str) -> Dict[str, Any]:
    kind = type(space)
    if kind is spaces.Box:
        return {
            TAG: "space.Box",
            "low": space.low.tolist(),
            "high": space.high.tolist(),
            "shape": list(space.shape),
            "dtype": space.dtype.str,
        }
    if kind is spaces.Discrete:
        return {TAG: "space.Discrete", "n": int(space.n), "start": int(space.start)}
    if kind is spaces.MultiDiscrete:
        start = getattr(space, "start", None)
        return {
            TAG: "space.MultiDiscrete",
            "nvec": space.nvec.tolist(),
            "dtype": space.dtype.str,
            "start": None if start is None else np.asarray(start).tolist(),
        }
    if kind is spaces.MultiBinary:
        n = space.n
        return {TAG: "space.MultiBinary", "n": int(n) if np.isscalar(n) else np.asarray(n).tolist()}
    if kind is spaces.Dict:
        return {
            TAG: "space.Dict",
            "spaces": [[key, _encode_space(sub, _child(where, key))] for key, sub in space.spaces.items()],
        }
    if kind is spaces.Tuple:
        return {TAG: "space.Tuple", "spaces": [_encode_space(sub, f"{where}[{i}]") for i, sub in enumerate(space.spaces)]}
    raise _unsafe(where, space, f"the space type {kind.__qualname__} is not supported")


def decode(value: Any, where: str) -> Any:
    """
    Inverse of :func:`encode`.

    :param value: An encoded value, as read by ``torch.load(..., weights_only=True)``.
    :param where: Its name in error messages.
    :return: The decoded value.
    """
    if isinstance(value, list):
        return [decode(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, tuple):
        return tuple(decode(item, f"{where}[{i}]") for i, item in enumerate(value))
    if not isinstance(value, dict):
        return value
    if TAG not in value:
        return {key: decode(item, _child(where, key)) for key, item in value.items()}
    tag = value[TAG]
    if tag == "dict":
        key_where = f"a key of {where or 'the arguments'}"
        return {decode(key, key_where): decode(item, _child(where, key)) for key, item in value["items"]}
    if tag == "import":
        return resolve_import_path(value["path"], where)
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
    tag = value[TAG]
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
