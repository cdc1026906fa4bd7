"""rl-zoo integration: our algorithms in rl_zoo3's algorithm table, our configs as defaults."""
import sys
from pathlib import Path
from typing import Dict, List, Optional, Type

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
    return argv


def run_train(argv: List[str]) -> None:
    """
    ``rl_zoo3.train`` with our algorithms registered and our defaults; with ``-optimize``, the study
    is created (or opened) first and its location printed.
    """
    from rl_zoo3.train import train

    from sb3_mbrl import optimize

    register_algorithms()
    try:
        argv = train_argv(argv)
        if _is_optimize(argv):
            optimize.prepare_search(argv)
    except optimize.SearchError as error:
        print(f"sb3-mbrl train: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    sys.argv = ["sb3-mbrl train", *argv]
    train()


def run_enjoy(argv: List[str]) -> None:
    """``rl_zoo3.enjoy`` with our algorithms registered."""
    from rl_zoo3.enjoy import enjoy

    register_algorithms()
    sys.argv = ["sb3-mbrl enjoy", *argv]
    enjoy()
