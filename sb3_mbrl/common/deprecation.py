"""
Renamed arguments, kept for one release: the old name still works, with a ``FutureWarning`` that
names the new one (a FutureWarning, not a DeprecationWarning, so that users see it by default), and
giving both the old and the new name is a ``ValueError``.
"""
import functools
import inspect
import warnings
from typing import Any, Callable, Collection, Dict, Mapping, Optional, TypeVar

F = TypeVar("F", bound=Callable[..., Any])
# A dict-valued argument -> {old key inside it: new top-level argument}, e.g.
# {"policy_kwargs": {"net_arch": "model_net_arch"}}.
NestedRenames = Mapping[str, Mapping[str, str]]


def rename_kwargs(
    owner: str,
    kwargs: Mapping[str, Any],
    renames: Mapping[str, str],
    nested: Optional[NestedRenames] = None,
    positional: Collection[str] = (),
    stacklevel: int = 1,
) -> Dict[str, Any]:
    """
    ``kwargs`` with every old name replaced by its new one, a ``FutureWarning`` for each.

    :param owner: Who takes the arguments, at the start of the messages (``"PETS"``).
    :param kwargs: Keyword arguments as given (not changed; dict values that lose keys are copied).
    :param renames: Old name -> new name.
    :param nested: Keys of a dict-valued argument that became top-level arguments.
    :param positional: Names given positionally: they count as given too.
    :param stacklevel: Frame the warnings point at: 1 is the caller of this function, 2 its caller ...
    :return: The keyword arguments under the new names.
    :raises ValueError: When an old name and its new name are both given.
    """
    result = dict(kwargs)
    given = set(kwargs) | set(positional)
    moves = [(old, new, old, None) for old, new in renames.items() if old in result]
    for outer, inner in (nested or {}).items():
        if isinstance(result.get(outer), Mapping):
            moves += [(f"{outer}[{old!r}]", new, old, outer) for old, new in inner.items() if old in result[outer]]
    for label, new, old, outer in moves:
        if new in given:
            raise ValueError(f"{owner}: got both {label} (deprecated) and {new}; pass {new} only")
        if outer is None:
            value = result.pop(old)
        else:
            result[outer] = dict(result[outer])
            value = result[outer].pop(old)
        warnings.warn(
            f"{owner}: {label} is deprecated and will be removed in the next release; use {new}",
            FutureWarning,
            stacklevel=stacklevel + 1,
        )
        result[new] = value
        given.add(new)
    return result


def renamed_arguments(owner: str, renames: Mapping[str, str], nested: Optional[NestedRenames] = None) -> Callable[[F], F]:
    """
    Decorator: ``func`` also accepts the old names of its renamed keyword arguments (see
    :func:`rename_kwargs`). Its signature (``inspect.signature``) stays the new one.

    :param owner: Who takes the arguments, at the start of the messages.
    :param renames: Old name -> new name.
    :param nested: Keys of a dict-valued argument that became top-level arguments.
    """

    def decorate(func: F) -> F:
        signature = inspect.signature(func)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            positional = signature.bind_partial(*args).arguments
            return func(*args, **rename_kwargs(owner, kwargs, renames, nested, positional, stacklevel=2))

        return wrapper  # type: ignore[return-value]

    return decorate
