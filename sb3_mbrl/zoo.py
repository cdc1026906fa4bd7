"""rl-zoo integration: our algorithms in rl_zoo3's algorithm table, our configs as defaults."""
import contextlib
import difflib
import functools
import importlib
import importlib.util
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Type

import yaml
from stable_baselines3.common.base_class import BaseAlgorithm


def zoo_config_dir() -> Path:
    """
    The folder holding ``zoo_configs/<algo>.yml``: package data inside ``sb3_mbrl`` (as rl_zoo3 ships
    its ``hyperparams``), so editable and wheel installs find the same files. The checkout's
    ``zoo_configs`` at the repository root is a symlink to it.
    """
    return Path(__file__).parent / "zoo_configs"


def sb3_mbrl_algorithms() -> Dict[str, Type[BaseAlgorithm]]:
    """Every sb3_mbrl algorithm, by its rl-zoo name. Each algorithm issue adds its class here."""
    import sb3_mbrl

    names = {"pets": "PETS", "mbpo": "MBPO", "reinforce": "REINFORCE"}
    return {key: getattr(sb3_mbrl, cls) for key, cls in names.items() if hasattr(sb3_mbrl, cls)}


def register_algorithms() -> Dict[str, Type[BaseAlgorithm]]:
    """
    Add our algorithms to ``rl_zoo3.ALGOS`` (shared by train, enjoy and the experiment manager) and
    their Optuna samplers to ``rl_zoo3.hyperparams_opt.HYPERPARAMS_SAMPLER`` (used by ``-optimize``).
    """
    from rl_zoo3.hyperparams_opt import HYPERPARAMS_SAMPLER
    from rl_zoo3.utils import ALGOS

    from sb3_mbrl.hyperparams_opt import SAMPLERS

    ours = sb3_mbrl_algorithms()
    ALGOS.update(ours)
    HYPERPARAMS_SAMPLER.update({name: SAMPLERS[name] for name in ours if name in SAMPLERS})
    return ours


def flag_value(argv: List[str], *flags: str) -> Optional[str]:
    """The value of the last occurrence of any of ``flags`` (argparse's rule), or None."""
    value = None
    for i, arg in enumerate(argv):
        for flag in flags:
            if arg == flag and i + 1 < len(argv):
                value = argv[i + 1]
            elif arg.startswith(flag + "="):
                value = arg.split("=", 1)[1]
    return value


def _default_eval_freq(argv: List[str], conf_file: Optional[str]) -> Optional[int]:
    """Five evaluations per run, from ``-n`` or the config's ``n_timesteps``."""
    n_timesteps = flag_value(argv, "-n", "--n-timesteps")
    if n_timesteps is None and conf_file and conf_file.endswith((".yml", ".yaml")):
        env_id = flag_value(argv, "--env") or "CartPole-v1"
        with open(conf_file) as file:
            config = yaml.safe_load(file) or {}
        n_timesteps = (config.get(env_id) or {}).get("n_timesteps")
    if n_timesteps is None or int(float(n_timesteps)) <= 0:
        return None
    return max(1, int(float(n_timesteps)) // 5)


def _config_envs(conf_file: Path) -> List[str]:
    with open(conf_file) as file:
        return list((yaml.safe_load(file) or {}).keys())


def default_conf_file(algo: str, env_id: str) -> str:
    """
    The hyperparameter file ``sb3-mbrl train`` uses without ``--conf-file``: ``zoo_configs/<algo>.yml``
    (for SB3's own algorithms only when it has an entry for the env), else rl-zoo's own file.
    """
    candidate = zoo_config_dir() / f"{algo}.yml"
    if candidate.is_file() and (algo in sb3_mbrl_algorithms() or env_id in _config_envs(candidate)):
        return str(candidate)
    import rl_zoo3

    return str(Path(rl_zoo3.__file__).parent / "hyperparams" / f"{algo}.yml")


def _is_optimize(argv: List[str]) -> bool:
    return "-optimize" in argv or "--optimize-hyperparameters" in argv


def _set_flag(argv: List[str], flag: str, value: str) -> None:
    """Replace the value of ``flag`` (``--flag value`` or ``--flag=value``) in place, or append it."""
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            argv[i + 1] = value
            return
        if arg.startswith(flag + "="):
            argv[i] = f"{flag}={value}"
            return
    argv += [flag, value]


def train_argv(argv: List[str]) -> List[str]:
    """
    rl-zoo ``train`` arguments with our defaults filled in: ``zoo_configs/<algo>.yml`` as the
    hyperparameter file when none is given (for SB3's own algorithms only when that file has an
    entry for the env, else rl-zoo's file), and five evaluations per run when ``--eval-freq`` is
    not given. With ``-optimize``: the study in a local SQLite file,
    ``<log folder>/optuna/<algo>-<env>.db``, when ``--storage`` is not given (rl-zoo's default keeps
    it in memory, lost at exit), a file path given as ``--storage`` as an SQLite URL, and
    ``<algo>-<env>`` as the study name, so that running the same command again resumes the study.
    One torch thread (``--num-threads 1``) unless ``--num-threads`` is given: see
    :mod:`sb3_mbrl.common.threads`.
    """
    from sb3_mbrl import optimize

    argv = list(argv)
    algo = flag_value(argv, "--algo") or "ppo"
    env_id = flag_value(argv, "--env") or "CartPole-v1"
    conf_file = flag_value(argv, "-conf", "--conf-file")
    if conf_file is None:
        conf_file = default_conf_file(algo, env_id)
        if Path(conf_file).parent == zoo_config_dir():  # rl-zoo finds its own file by itself
            argv += ["--conf-file", conf_file]
    if _is_optimize(argv):
        storage = flag_value(argv, "--storage")
        if storage is None:
            log_folder = flag_value(argv, "-f", "--log-folder") or "logs"
            argv += ["--storage", optimize.sqlite_url(optimize.default_storage_path(log_folder, algo, env_id))]
        else:
            _set_flag(argv, "--storage", optimize.storage_url(storage))
        if flag_value(argv, "--study-name") is None:
            argv += ["--study-name", optimize.default_study_name(algo, env_id)]
    elif flag_value(argv, "--eval-freq") is None:
        eval_freq = _default_eval_freq(argv, conf_file)
        if eval_freq is not None:
            argv += ["--eval-freq", str(eval_freq)]
    _default_num_threads(argv)
    return argv


def _default_num_threads(argv: List[str]) -> None:
    """One torch thread unless ``--num-threads`` is given (sb3_mbrl.common.threads says why)."""
    if flag_value(argv, "--num-threads") is None:
        argv += ["--num-threads", "1"]


def _flag_values(argv: List[str], flag: str) -> List[str]:
    """The values of an ``nargs="+"`` flag (``--flag a b`` or ``--flag=a``), over all its occurrences."""
    values: List[str] = []
    for i, arg in enumerate(argv):
        if arg.startswith(flag + "="):
            values.append(arg.split("=", 1)[1])
        elif arg == flag:
            for value in argv[i + 1 :]:
                if value.startswith("-"):
                    break
                values.append(value)
    return values


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

    :param command: The ``sb3-mbrl`` command, for the message.
    :param argv: Its arguments.
    """
    if "-h" in argv or "--help" in argv:
        return
    env_id = flag_value(argv, "--env") or "CartPole-v1"
    if ":" in env_id:  # "module:EnvId-v0": gymnasium imports the module itself when making it
        return
    import gymnasium as gym
    import rl_zoo3.import_envs  # noqa: F401  (the NoVel envs, custom_envs, ... as train and enjoy import it)

    try:
        for module in _flag_values(argv, "--gym-packages"):
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


@contextlib.contextmanager
def _line_buffered_stdout() -> Iterator[None]:
    """
    stdout flushed at every line for the duration: into a pipe or a file (``| tee``, a job log)
    Python buffers 8 KiB, so per-episode lines would otherwise show minutes late, or at exit.
    """
    stdout = sys.stdout
    previous = getattr(stdout, "line_buffering", True)
    try:
        if not previous:
            stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        previous = True  # not a plain text stream (a test's capture): leave it alone
    try:
        yield
    finally:
        if not previous:
            with contextlib.suppress(AttributeError, ValueError, OSError):
                stdout.reconfigure(line_buffering=False)  # type: ignore[union-attr]


class _SigtermAsInterrupt:
    """
    While installed (main thread only), the first SIGTERM raises ``KeyboardInterrupt`` in the main
    thread, as Ctrl-C does, so that rl-zoo stops training and saves the model. Later SIGTERMs, and
    any once training has ended (``stop_raising``), only are recorded: an interrupt must not cut
    the save short. SIGKILL still stops the process at once.
    """

    def __init__(self) -> None:
        self.received = False
        self._raise = True
        self._previous: Any = None
        self._installed = False

    def _handle(self, signum: int, frame: Any) -> None:
        # No printing here: a handler that writes may run in the middle of another write to the stream.
        self.received = True
        if self._raise:
            self._raise = False
            raise KeyboardInterrupt

    def stop_raising(self) -> None:
        """From now on SIGTERM is only recorded (the model is being saved)."""
        self._raise = False

    def __enter__(self) -> "_SigtermAsInterrupt":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
            self._installed = True
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._installed:
            signal.signal(signal.SIGTERM, self._previous)
            self._installed = False


@contextlib.contextmanager
def _patched(module: Any, name: str, value: Any) -> Iterator[None]:
    """``module.name`` set to ``value`` for the duration (rl-zoo looks its classes up in its module namespace)."""
    original = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, original)


def _experiment_manager_class(sigterm: _SigtermAsInterrupt) -> Type[Any]:
    """rl-zoo's ``ExperimentManager`` that tells ``sigterm`` when training ends, and what a SIGTERM did."""
    from rl_zoo3.exp_manager import ExperimentManager

    class SigtermExperimentManager(ExperimentManager):
        def learn(self, model: BaseAlgorithm) -> None:
            if hasattr(model, "num_threads"):  # our algorithms: learn() with the threads of --num-threads
                import torch as th

                model.num_threads = th.get_num_threads()
            try:
                super().learn(model)
            except KeyboardInterrupt:
                # model.learn() itself is covered by rl-zoo's own except; a SIGTERM in its cleanup
                # (closing the envs) lands here, and the model is saved all the same.
                if not sigterm.received:
                    raise
            finally:
                sigterm.stop_raising()
            if sigterm.received:
                print(
                    f"sb3-mbrl train: SIGTERM at step {model.num_timesteps}: training stopped, saving the model",
                    file=sys.stderr,
                    flush=True,
                )

    return SigtermExperimentManager


def _verbose(argv: List[str]) -> int:
    """rl-zoo's ``--verbose`` (1 when absent, or not a number: argparse then answers with its usage error)."""
    try:
        return int(flag_value(argv, "--verbose") or 1)
    except ValueError:
        return 1


def run_train(argv: List[str]) -> None:
    """
    ``rl_zoo3.train`` with our algorithms registered and our defaults; with ``-optimize``, the study
    is created (or opened) first and its location printed. An unknown ``--env`` id is a usage
    error (status 2, the closest ids suggested). Each evaluation prints a line per episode
    (``--verbose 0`` silences them), flushed.

    SIGTERM is handled like Ctrl-C: training stops and rl-zoo saves the model (and, with
    ``--save-replay-buffer``, the replay buffer) as it does after ``KeyboardInterrupt``; with
    ``-optimize`` the search stops as after Ctrl-C. A second SIGTERM does not cut the save short.
    The command then exits with status 143 (128 + SIGTERM, what a process killed by it reports,
    where Ctrl-C exits 0), so that shell ``&&`` chains and job schedulers see an interrupted run,
    not a finished one. A SIGTERM before training starts exits with 143 too, with nothing saved.
    """
    import rl_zoo3.exp_manager
    import rl_zoo3.train

    from sb3_mbrl import optimize
    from sb3_mbrl.zoo_progress import ProgressEvalCallback

    register_algorithms()
    check_env_id("train", argv)
    try:
        argv = train_argv(argv)
        if _is_optimize(argv):
            optimize.prepare_search(argv)
    except optimize.SearchError as error:
        print(f"sb3-mbrl train: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    sys.argv = ["sb3-mbrl train", *argv]
    # rl-zoo builds EvalCallback(...) from its module namespace in ExperimentManager.create_callbacks.
    eval_callback = functools.partial(ProgressEvalCallback, print_episodes=_verbose(argv) > 0)
    with _SigtermAsInterrupt() as sigterm:
        try:
            with _line_buffered_stdout(), _patched(rl_zoo3.exp_manager, "EvalCallback", eval_callback), _patched(
                rl_zoo3.train, "ExperimentManager", _experiment_manager_class(sigterm)
            ):
                rl_zoo3.train.train()
        except KeyboardInterrupt:
            if not sigterm.received:
                raise  # Ctrl-C outside training: as before
            print("sb3-mbrl train: SIGTERM before training started: nothing to save", file=sys.stderr)
    if sigterm.received:
        raise SystemExit(128 + signal.SIGTERM)


def run_enjoy(argv: List[str]) -> None:
    """
    ``rl_zoo3.enjoy`` with our algorithms registered. An unknown ``--env`` id is a usage error
    (status 2, the closest ids suggested). At the default verbosity each finished episode prints
    a line, flushed: rl-zoo's own ``Episode Reward`` lines with one env, ours
    (``env I: episode K return R (L steps, S s)``) with ``--n-envs`` above 1, where rl-zoo prints none.
    """
    import rl_zoo3.enjoy

    from sb3_mbrl.zoo_progress import print_episodes_of_several_envs

    register_algorithms()
    check_env_id("enjoy", argv)
    argv = list(argv)
    _default_num_threads(argv)
    sys.argv = ["sb3-mbrl enjoy", *argv]
    create_test_env = rl_zoo3.enjoy.create_test_env
    if _verbose(argv) > 0:
        create_test_env = print_episodes_of_several_envs(create_test_env)
    with _line_buffered_stdout(), _patched(rl_zoo3.enjoy, "create_test_env", create_test_env):
        rl_zoo3.enjoy.enjoy()
