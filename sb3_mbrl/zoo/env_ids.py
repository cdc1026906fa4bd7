"""An ``--env`` id gymnasium does not know is a usage error, with the closest ids, before rl-zoo runs."""
import difflib
import importlib
import importlib.util
import sys
from typing import List

from sb3_mbrl.zoo.argv import parse_args


def _is_importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def check_env_id(command: str, argv: List[str]) -> None:
    """
    Exit with status 2 and a plain message (the closest registered ids, if any) when ``--env`` is
    not a registered env id, before rl-zoo creates any folder: its own answer is a traceback
    (train) or a missing log folder, or a download attempt from the Hugging Face hub (enjoy).
    Ids are looked up after the envs rl-zoo registers (``rl_zoo3.import_envs``) and the modules
    of ``--gym-packages``, as rl-zoo does.

    :param command: The ``sb3-mbrl`` command (``train`` or ``enjoy``), for its parser and the message.
    :param argv: Its arguments.
    """
    args = parse_args(command, argv)
    env_id = getattr(args.env, "gym_id", args.env)  # enjoy parses --env as an EnvironmentName
    if ":" in env_id:  # "module:EnvId-v0": gymnasium imports the module itself when making it
        return
    import gymnasium as gym
    import rl_zoo3.import_envs  # noqa: F401  (the NoVel envs, custom_envs, ... as train and enjoy import it)

    try:
        for module in args.gym_packages:
            importlib.import_module(module)
    except ImportError:
        return  # rl-zoo reports the missing package itself, more precisely than an unknown id
    registered = list(gym.envs.registry.keys())
    if env_id in registered:
        return
    message = f"sb3-mbrl {command}: error: unknown environment id {env_id!r}"
    namespace = env_id.split("/")[0] if "/" in env_id else None
    if namespace and _is_importable(namespace):
        # "seals/CartPole-v0": the package named like the namespace registers it once imported,
        # which rl-zoo does only for --gym-packages (a close match without the namespace would mislead).
        print(f"{message}; `--gym-packages {namespace}` registers the envs of package {namespace!r}", file=sys.stderr)
        raise SystemExit(2)
    # A wrong case ("pendulum-v1") first, then ids that look alike.
    matches = [name for name in registered if name.lower() == env_id.lower()]
    matches += [name for name in difflib.get_close_matches(env_id, registered, n=3) if name not in matches]
    if matches:
        quoted = [repr(name) for name in matches[:3]]
        alternatives = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]
        message += f"; did you mean {alternatives}?"
    else:
        message += " (not in gymnasium's registry; `--gym-packages MODULE` imports a package that registers envs)"
    print(message, file=sys.stderr)
    raise SystemExit(2)


__all__ = ["check_env_id"]
