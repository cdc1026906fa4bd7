"""The ``sb3-mbrl`` command: rl-zoo's train and enjoy with sb3_mbrl's algorithms registered, imitation, search results."""
import importlib
import os
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

USAGE = """usage: sb3-mbrl COMMAND [ARGS]

commands:
  train    rl-zoo's train (same flags as `python -m rl_zoo3.train`), sb3_mbrl algorithms
           registered and zoo_configs/<algo>.yml as their default hyperparameters;
           `-optimize --n-trials N` searches hyperparameters with Optuna, the study kept in
           <log folder>/optuna/<algo>-<env>.db unless --storage names a database
           (postgresql://user:password@host/db to share one study between machines)
  best     the best hyperparameters of a search: `sb3-mbrl best --algo ALGO --env ENV` (local
           study) or `--storage URL --study-name NAME`; `--yaml OUT.yml` writes them as an
           rl-zoo config for `sb3-mbrl train --conf-file OUT.yml`
  enjoy    rl-zoo's enjoy (same flags as `python -m rl_zoo3.enjoy`)
  imitate  imitation learning: `sb3-mbrl imitate expert|demos|bc|gail --env ENV ...`
  plot     learning curves of rl-zoo runs, mean and spread over seeds: `sb3-mbrl plot -f logs/
           baselines/ --algos pets sac --env Pendulum-v1 -o curves.png` (docs/diagnostics.md)

`sb3-mbrl COMMAND --help` shows the flags of a command.
"""


# command -> (module, function taking the remaining argv); imported only when the command runs,
# so help and usage errors answer at once.
COMMANDS = {
    "train": ("sb3_mbrl.zoo.run", "run_train"),
    "enjoy": ("sb3_mbrl.zoo.run", "run_enjoy"),
    "best": ("sb3_mbrl.zoo.best", "best_main"),
    "plot": ("sb3_mbrl.zoo.plots", "main"),
    "imitate": ("sb3_mbrl.imitation_learning.cli", "main"),
}


# `sb3-mbrl train --help` / `enjoy --help` are rl-zoo's argparse help, which needs torch, SB3 and
# rl-zoo imported (seconds): a copy ships in sb3_mbrl/zoo/help/ (tests/test_cli.py checks it against
# the live text; `python -m sb3_mbrl.zoo.cli --write-help` rewrites it). SB3_MBRL_LIVE_HELP=1 skips it.
HELP_DIR = Path(__file__).resolve().parent / "help"
HELP_COMMANDS = ("train", "enjoy")
HELP_COLUMNS = "100"


def write_help_texts() -> None:
    """Regenerate the shipped help texts from rl-zoo's live parsers, at ``HELP_COLUMNS`` columns."""
    env = {**os.environ, "COLUMNS": HELP_COLUMNS, "SB3_MBRL_LIVE_HELP": "1"}
    for command in HELP_COMMANDS:
        text = subprocess.run(
            [sys.executable, "-m", "sb3_mbrl", command, "--help"], capture_output=True, text=True, env=env, check=True
        ).stdout
        (HELP_DIR / f"{command}.txt").write_text(text)


def main(argv: Optional[List[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"sb3-mbrl: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
        raise SystemExit(2)
    shipped_help = HELP_DIR / f"{command}.txt"
    if rest in (["-h"], ["--help"]) and shipped_help.is_file() and not os.environ.get("SB3_MBRL_LIVE_HELP"):
        print(shipped_help.read_text(), end="")
        return
    module, function = COMMANDS[command]
    getattr(importlib.import_module(module), function)(rest)


if __name__ == "__main__":
    if sys.argv[1:] == ["--write-help"]:
        write_help_texts()
    else:
        main()
