"""``sb3-mbrl train`` and ``sb3-mbrl enjoy``: rl-zoo's own train and enjoy, with our algorithms registered and our defaults."""
import contextlib
import functools
import signal
import sys
from typing import Any, Iterator, List

from sb3_mbrl.zoo.argv import parse_args, train_argv, with_default_num_threads
from sb3_mbrl.zoo.env_ids import check_env_id
from sb3_mbrl.zoo.registry import register_algorithms
from sb3_mbrl.zoo.search import prepare_search
from sb3_mbrl.zoo.sigterm import SigtermAsInterrupt, experiment_manager_class
from sb3_mbrl.zoo.storage import SearchError


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


@contextlib.contextmanager
def _patched(module: Any, name: str, value: Any) -> Iterator[None]:
    """``module.name`` set to ``value`` for the duration (rl-zoo looks its classes up in its module namespace)."""
    original = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, original)


def run_train(argv: List[str]) -> None:
    """
    ``rl_zoo3.train`` with our algorithms registered and our defaults
    (:func:`sb3_mbrl.zoo.argv.train_argv`); with ``-optimize``, the study is created (or opened)
    first and its location printed. An unknown ``--env`` id is a usage error (status 2, the closest
    ids suggested). Each evaluation prints a line per episode (``--verbose 0`` silences them), flushed.

    SIGTERM is handled like Ctrl-C: training stops and rl-zoo saves the model (and, with
    ``--save-replay-buffer``, the replay buffer) as it does after ``KeyboardInterrupt``; with
    ``-optimize`` the search stops as after Ctrl-C. A second SIGTERM does not cut the save short.
    The command then exits with status 143 (128 + SIGTERM, what a process killed by it reports,
    where Ctrl-C exits 0), so that shell ``&&`` chains and job schedulers see an interrupted run,
    not a finished one. A SIGTERM before training starts exits with 143 too, with nothing saved.
    """
    import rl_zoo3.exp_manager
    import rl_zoo3.train

    from sb3_mbrl.zoo.progress import ProgressEvalCallback

    register_algorithms()
    check_env_id("train", argv)
    try:
        argv = train_argv(argv)
        args = parse_args("train", argv)
        if args.optimize_hyperparameters:
            prepare_search(argv)
    except SearchError as error:
        print(f"sb3-mbrl train: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    sys.argv = ["sb3-mbrl train", *argv]
    # rl-zoo builds EvalCallback(...) from its module namespace in ExperimentManager.create_callbacks.
    eval_callback = functools.partial(ProgressEvalCallback, print_episodes=args.verbose > 0)
    with SigtermAsInterrupt() as sigterm:
        try:
            with _line_buffered_stdout(), _patched(rl_zoo3.exp_manager, "EvalCallback", eval_callback), _patched(
                rl_zoo3.train, "ExperimentManager", experiment_manager_class(sigterm)
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

    from sb3_mbrl.zoo.progress import print_episodes_of_several_envs

    register_algorithms()
    check_env_id("enjoy", argv)
    argv = with_default_num_threads("enjoy", argv)
    sys.argv = ["sb3-mbrl enjoy", *argv]
    create_test_env = rl_zoo3.enjoy.create_test_env
    if parse_args("enjoy", argv).verbose > 0:
        create_test_env = print_episodes_of_several_envs(create_test_env)
    with _line_buffered_stdout(), _patched(rl_zoo3.enjoy, "create_test_env", create_test_env):
        rl_zoo3.enjoy.enjoy()


__all__ = ["run_enjoy", "run_train"]
