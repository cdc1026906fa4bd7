"""
``sb3-mbrl train`` / ``enjoy`` arguments: read with rl-zoo's own parsers, so that abbreviations
(``--n-time 5``), ``--flag=value`` and repeated flags mean what they mean to rl-zoo, and completed
with the defaults rl-zoo lacks (:func:`train_argv`).
"""
import argparse
import importlib
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

from sb3_mbrl.common.zoo_config import ZooConfigError, default_conf_file, read_zoo_entry, zoo_config_dir
from sb3_mbrl.zoo import storage
from sb3_mbrl.zoo.registry import register_algorithms


class _ParserBuilt(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        super().__init__()
        self.parser = parser


def _hand_over(parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
    raise _ParserBuilt(parser)


def rl_zoo_parser(command: str) -> argparse.ArgumentParser:
    """
    The argument parser of ``rl_zoo3.train`` or ``rl_zoo3.enjoy``, with our algorithms among the
    ``--algo`` choices and ``sb3-mbrl COMMAND`` as its name. rl-zoo 2.2 builds it inside ``train()`` /
    ``enjoy()`` and parses ``sys.argv`` at once: the function is run up to that ``parse_args`` call,
    before which it only adds arguments, and stopped there.

    :param command: ``train`` or ``enjoy``
    :return: A new parser
    """
    if command not in ("train", "enjoy"):
        raise ValueError(f"rl-zoo has no parser for {command!r}")
    register_algorithms()
    entry_point = getattr(importlib.import_module(f"rl_zoo3.{command}"), command)  # rl_zoo3.train.train ...
    parse = argparse.ArgumentParser.parse_args
    argparse.ArgumentParser.parse_args = _hand_over  # type: ignore[assignment]
    try:
        entry_point()
    except _ParserBuilt as built:
        parser = built.parser
    else:  # pragma: no cover - rl-zoo always parses
        raise RuntimeError(f"rl_zoo3 {command}() returned without parsing its arguments")
    finally:
        argparse.ArgumentParser.parse_args = parse  # type: ignore[assignment]
    parser.prog = f"sb3-mbrl {command}"
    return parser


def parse_args(command: str, argv: List[str], unset: Iterable[str] = ()) -> argparse.Namespace:
    """
    ``argv`` as rl-zoo's ``command`` reads it (arguments it does not know are left to rl-zoo to report;
    a value of the wrong type is its usage error, status 2).

    :param command: ``train`` or ``enjoy``
    :param argv: Its arguments
    :param unset: Destinations that are None when their flag is not given (instead of rl-zoo's default)
    :return: The namespace
    """
    namespace = argparse.Namespace(**{dest: None for dest in unset})
    args, _ = rl_zoo_parser(command).parse_known_args(list(argv), namespace)
    return args


def hyperparams_strings(argv: List[str]) -> List[str]:
    """The ``key:value`` strings of ``--hyperparams`` as given (rl-zoo's ``StoreDict`` evaluates them)."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=True)
    parser.add_argument("-params", "--hyperparams", nargs="+", default=[])
    return parser.parse_known_args(list(argv))[0].hyperparams


def parse_hyperparams(strings: List[str]) -> Dict[str, Any]:
    """``key:value`` strings to values, as rl-zoo's ``--hyperparams`` reads them."""
    return parse_args("train", ["--hyperparams", *strings]).hyperparams if strings else {}


# Evaluations per run when ``--eval-freq`` is not given.
EVALUATIONS_PER_RUN = 5
# PETS collects its training episodes with the planner it is evaluated with, so their returns (the
# Monitor's, ``rollout/ep_rew_mean``) already trace its learning curve, while each evaluation plans
# as many steps as its episodes (Pendulum-v1 zoo entry: 5 evaluations of 5 episodes were 25 planned
# episodes against 15 in training, 48% of the run). Two evaluations: halfway and at the end.
EVALUATIONS_PER_RUN_BY_ALGO = {"pets": 2}


def default_eval_freq(args: argparse.Namespace, conf_file: str) -> Optional[int]:
    """
    Env steps between evaluations: :data:`EVALUATIONS_PER_RUN` per run (PETS:
    :data:`EVALUATIONS_PER_RUN_BY_ALGO`), from ``-n`` or the entry's ``n_timesteps`` (None when
    neither says).
    """
    n_timesteps = args.n_timesteps
    if n_timesteps <= 0:
        try:
            n_timesteps = int(float(read_zoo_entry(args.algo, args.env, conf_file, args.hyperparams).get("n_timesteps", 0)))
        except (ZooConfigError, ValueError, TypeError):
            return None  # rl-zoo reports a config it cannot use itself
    n_evaluations = EVALUATIONS_PER_RUN_BY_ALGO.get(args.algo, EVALUATIONS_PER_RUN)
    return max(1, n_timesteps // n_evaluations) if n_timesteps > 0 else None


# Algorithms that plan at every step: one planning call for several start states costs much less
# than one call per state (PETS, zoo Pendulum config: 5 states in 0.31 s against 5 x 0.09 s), so
# their evaluation episodes run side by side, one per eval env.
BATCHED_EVALUATION_ALGOS = ("pets", "loop")


def default_n_eval_envs(args: argparse.Namespace) -> Optional[int]:
    """One eval env per evaluation episode for :data:`BATCHED_EVALUATION_ALGOS`, else None (rl-zoo's 1)."""
    if args.algo in BATCHED_EVALUATION_ALGOS and args.eval_episodes > 1:
        return int(args.eval_episodes)
    return None


def with_default_num_threads(command: str, argv: List[str]) -> List[str]:
    """One torch thread unless ``--num-threads`` is given (:mod:`sb3_mbrl.common.threads` says why)."""
    if parse_args(command, argv, unset=["num_threads"]).num_threads is None:
        return [*argv, "--num-threads", "1"]
    return list(argv)


def train_argv(argv: List[str]) -> List[str]:
    """
    rl-zoo ``train`` arguments with our defaults added (argparse keeps the last value of a flag):
    ``zoo_configs/<algo>.yml`` as the hyperparameter file when none is given (for SB3's own
    algorithms only when that file has an entry for the env, else rl-zoo's file), and five
    evaluations per run (PETS: two) when ``--eval-freq`` is not given, and for PETS one eval env per
    evaluation episode when ``--n-eval-envs`` is not given (the episodes are planned together).
    With ``-optimize``: the study in a local SQLite file, ``<log folder>/optuna/<algo>-<env>.db``,
    when ``--storage`` is not given (rl-zoo's default keeps it in memory, lost at exit), a file
    path given as ``--storage`` as an SQLite URL, and ``<algo>-<env>`` as the study name, so that
    running the same command again resumes the study. One torch thread (``--num-threads 1``)
    unless ``--num-threads`` is given: see :mod:`sb3_mbrl.common.threads`.

    :raises storage.SearchError: For a ``--storage`` Optuna cannot open from rl-zoo
    """
    argv = list(argv)
    args = parse_args("train", argv, unset=["eval_freq", "n_eval_envs"])
    conf_file = args.conf_file
    if conf_file is None:
        conf_file = default_conf_file(args.algo, args.env)
        if Path(conf_file).parent == zoo_config_dir():  # rl-zoo finds its own file by itself
            argv += ["--conf-file", conf_file]
    if args.optimize_hyperparameters:
        if args.storage is None:
            path = storage.default_storage_path(args.log_folder, args.algo, args.env)
            argv += ["--storage", storage.sqlite_url(path)]
        else:
            url = storage.storage_url(args.storage)
            if url != args.storage:
                argv += ["--storage", url]
        if args.study_name is None:
            argv += ["--study-name", storage.default_study_name(args.algo, args.env)]
    elif args.eval_freq is None:
        eval_freq = default_eval_freq(args, conf_file)
        if eval_freq is not None:
            argv += ["--eval-freq", str(eval_freq)]
    if args.n_eval_envs is None and not args.optimize_hyperparameters:
        n_eval_envs = default_n_eval_envs(args)
        if n_eval_envs is not None:
            argv += ["--n-eval-envs", str(n_eval_envs)]
    return with_default_num_threads("train", argv)


__all__ = [
    "BATCHED_EVALUATION_ALGOS",
    "EVALUATIONS_PER_RUN",
    "EVALUATIONS_PER_RUN_BY_ALGO",
    "default_eval_freq",
    "default_n_eval_envs",
    "hyperparams_strings",
    "parse_args",
    "parse_hyperparams",
    "rl_zoo_parser",
    "train_argv",
    "with_default_num_threads",
]
