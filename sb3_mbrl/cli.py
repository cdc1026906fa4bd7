"""The ``sb3-mbrl`` command: rl-zoo's train and enjoy with sb3_mbrl's algorithms registered, imitation, search results."""
import importlib
import sys
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
    "train": ("sb3_mbrl.zoo", "run_train"),
    "enjoy": ("sb3_mbrl.zoo", "run_enjoy"),
    "best": ("sb3_mbrl.optimize", "best_main"),
    "plot": ("sb3_mbrl.plotting", "main"),
    "imitate": ("sb3_mbrl.imitation_learning.cli", "main"),
}


def main(argv: Optional[List[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"sb3-mbrl: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
        raise SystemExit(2)
    module, function = COMMANDS[command]
    getattr(importlib.import_module(module), function)(rest)


if __name__ == "__main__":
    main()
