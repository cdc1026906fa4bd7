"""The sb3-mbrl command: rl-zoo's train and enjoy with our algorithms registered."""
import subprocess
import sys

import numpy as np
import pytest

from sb3_mbrl import zoo


def _run(args, cwd, timeout=300):
    result = subprocess.run(
        [sys.executable, "-m", "sb3_mbrl", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def test_train_and_enjoy_sac_pendulum(tmp_path):
    _run(["train", "--algo", "sac", "--env", "Pendulum-v1", "-n", "300", "-f", "logs", "--seed", "0", "--num-threads", "1"], tmp_path)
    run_dir = tmp_path / "logs" / "sac" / "Pendulum-v1_1"
    assert (run_dir / "Pendulum-v1.zip").is_file()
    evaluations = np.load(run_dir / "evaluations.npz")
    assert evaluations["timesteps"].shape[0] >= 1 and evaluations["results"].shape[1] == 5
    out = _run(["enjoy", "--algo", "sac", "--env", "Pendulum-v1", "-f", "logs", "-n", "200", "--no-render"], tmp_path)
    assert "Episode Reward" in out or "Mean reward" in out


def test_train_argv_defaults():
    argv = zoo.train_argv(["--algo", "sac", "--env", "Pendulum-v1", "-n", "1000"])
    assert argv[argv.index("--eval-freq") + 1] == "200"
    argv = zoo.train_argv(["--algo", "sac", "--env", "Pendulum-v1", "-n", "1000", "--eval-freq", "-1"])
    assert argv.count("--eval-freq") == 1
    # SB3's own algorithms keep rl-zoo's file for tasks our zoo_configs do not cover.
    argv = zoo.train_argv(["--algo", "ppo", "--env", "CartPole-v1", "-n", "1000"])
    assert "--conf-file" not in argv
    for algo in zoo.sb3_mbrl_algorithms():
        argv = zoo.train_argv(["--algo", algo, "--env", "Pendulum-v1"])
        conf = argv[argv.index("--conf-file") + 1]
        assert conf.endswith(f"zoo_configs/{algo}.yml")


def test_registered_algorithms_are_in_rl_zoo_table():
    from rl_zoo3.utils import ALGOS

    ours = zoo.register_algorithms()
    for name, cls in ours.items():
        assert ALGOS[name] is cls


def test_unknown_command_exits_with_usage():
    result = subprocess.run([sys.executable, "-m", "sb3_mbrl", "fly"], capture_output=True, text=True)
    assert result.returncode == 2 and "unknown command" in result.stderr
    with pytest.raises(SystemExit):
        from sb3_mbrl.cli import main

        main(["fly"])


def test_ci_runs_the_readme_commands():
    """.ci/run must install and test exactly as the README's Quick start says."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text()
    ci = (root / ".ci" / "run").read_text()
    setup = 'python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 && pip install -e ".[tests]"'
    assert setup in readme and setup in ci
    assert "python -m pytest -q" in readme and "python -m pytest -q" in ci
