"""The sb3-mbrl command: rl-zoo's train and enjoy with our algorithms registered."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import sb3_mbrl
from sb3_mbrl.zoo.argv import train_argv
from sb3_mbrl.zoo.registry import register_algorithms, sb3_mbrl_algorithms


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


def test_pets_evaluation_episodes_run_side_by_side(tmp_path):
    """The default --n-eval-envs for PETS: one eval env per episode, each episode's own return recorded."""
    hyperparams = ["--hyperparams", "planner_kwargs:dict(population_size=20,num_elites=4,iterations=1)", "horizon:5",
                   "model_net_arch:[32,32]", "num_particles:1", "model_epochs:100"]
    out = _run(["train", "--algo", "pets", "--env", "Pendulum-v1", "-n", "400", "-f", "logs", "--seed", "0",
                "--eval-freq", "400", "--eval-episodes", "3", *hyperparams], tmp_path)
    run_dir = tmp_path / "logs" / "pets" / "Pendulum-v1_1"
    evaluations = np.load(run_dir / "evaluations.npz")
    assert evaluations["results"].shape == (1, 3)
    assert (evaluations["ep_lengths"] == 200).all()
    assert len(set(evaluations["results"][0].round(3))) == 3  # three different episodes, not one three times
    assert out.count("eval 1/1 at step 400: episode") == 3, out[-3000:]


def test_train_argv_defaults():
    argv = train_argv(["--algo", "sac", "--env", "Pendulum-v1", "-n", "1000"])
    assert argv[argv.index("--eval-freq") + 1] == "200"
    argv = train_argv(["--algo", "sac", "--env", "Pendulum-v1", "-n", "1000", "--eval-freq", "-1"])
    assert argv.count("--eval-freq") == 1
    # rl-zoo's abbreviations and --flag=value read as rl-zoo reads them.
    argv = train_argv(["--algo", "sac", "--env", "Pendulum-v1", "--n-time", "500"])
    assert argv[argv.index("--eval-freq") + 1] == "100"
    assert train_argv(["--algo", "sac", "--env=Pendulum-v1", "-n=500", "--eval-f=-1"]).count("--eval-freq") == 0
    assert "--n-eval-envs" not in argv  # only planners evaluate their episodes side by side
    # PETS: one eval env per evaluation episode unless given, and two evaluations per run (halfway and
    # at the end: its training episodes are planned by the same policy); LOOP's actor collects, so five.
    argv = train_argv(["--algo", "pets", "--env", "Pendulum-v1"])
    assert argv[argv.index("--n-eval-envs") + 1] == "5"
    assert argv[argv.index("--eval-freq") + 1] == "1500"  # zoo_configs/pets.yml: 3,000 steps
    argv = train_argv(["--algo", "pets", "--env", "Pendulum-v1", "-n", "800"])
    assert argv[argv.index("--eval-freq") + 1] == "400"
    argv = train_argv(["--algo", "loop", "--env", "Pendulum-v1"])
    assert argv[argv.index("--eval-freq") + 1] == "400"  # zoo_configs/loop.yml: 2,000 steps
    argv = train_argv(["--algo", "pets", "--env", "Pendulum-v1", "--eval-episodes", "3"])
    assert argv[argv.index("--n-eval-envs") + 1] == "3"
    assert train_argv(["--algo", "pets", "--env", "Pendulum-v1", "--n-eval-envs", "1"]).count("--n-eval-envs") == 1
    assert "--n-eval-envs" not in train_argv(["--algo", "pets", "--env", "Pendulum-v1", "--eval-episodes", "1"])
    # SB3's own algorithms keep rl-zoo's file for tasks our zoo_configs do not cover.
    argv = train_argv(["--algo", "ppo", "--env", "CartPole-v1", "-n", "1000"])
    assert "--conf-file" not in argv
    for algo in sb3_mbrl_algorithms():
        argv = train_argv(["--algo", algo, "--env", "Pendulum-v1"])
        conf = argv[argv.index("--conf-file") + 1]
        assert conf.endswith(f"zoo_configs/{algo}.yml")
        assert conf == str(Path(sb3_mbrl.__file__).parent / "zoo_configs" / f"{algo}.yml")  # package data


def test_wheel_install_trains_pets_with_packaged_zoo_configs(tmp_path):
    """
    A non-editable install (the wheel, not the checkout) carries zoo_configs/<algo>.yml as package
    data, so ``sb3-mbrl train --algo pets --env Pendulum-v1`` finds its hyperparameters.
    The wheel is built from a copy of the packaging inputs so that the build leaves no build/ or
    egg-info folder in the checkout.
    """
    import os
    import shutil

    root = Path(__file__).resolve().parent.parent
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, src / name)
    shutil.copytree(root / "sb3_mbrl", src / "sb3_mbrl", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    wheels, site, work = tmp_path / "wheels", tmp_path / "site", tmp_path / "work"
    work.mkdir()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    result = subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(src)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (wheel,) = wheels.glob("sb3_mbrl-*.whl")
    result = subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(site), str(wheel)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    where = subprocess.run(
        [sys.executable, "-c", "import sb3_mbrl, sb3_mbrl.common.zoo_config as z; print(sb3_mbrl.__file__); print(z.zoo_config_dir())"],
        cwd=work, env=env, capture_output=True, text=True, timeout=120,
    )
    assert where.returncode == 0, where.stderr[-3000:]
    package_file, config_dir = where.stdout.split()
    assert Path(package_file).resolve().is_relative_to(site.resolve())  # not the checkout's editable install
    assert Path(config_dir).resolve().is_relative_to(site.resolve())
    assert (Path(config_dir) / "pets.yml").is_file()
    hyperparams = ["--hyperparams", "planner_kwargs:dict(population_size=50,num_elites=5,iterations=2,noise_beta=2.0)",
                   "model_epochs:100"]  # the zoo fit on 200 rows runs ~3,400 epochs (45 s)
    train = [sys.executable, "-m", "sb3_mbrl", "train", "--algo", "pets", "--env", "Pendulum-v1", "-n", "250"]
    result = subprocess.run(
        [*train, "--eval-freq", "-1", "-f", "logs", "--seed", "0", *hyperparams],
        cwd=work, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (work / "logs" / "pets" / "Pendulum-v1_1" / "Pendulum-v1.zip").is_file()


def test_registered_algorithms_are_in_rl_zoo_table():
    from rl_zoo3.utils import ALGOS

    ours = register_algorithms()
    for name, cls in ours.items():
        assert ALGOS[name] is cls


def test_unknown_command_exits_with_usage():
    result = subprocess.run([sys.executable, "-m", "sb3_mbrl", "fly"], capture_output=True, text=True)
    assert result.returncode == 2 and "unknown command" in result.stderr
    with pytest.raises(SystemExit):
        from sb3_mbrl.zoo.cli import main

        main(["fly"])


@pytest.mark.parametrize("args, code", [(["--help"], 0), ([], 0), (["fly"], 2)])
def test_help_and_usage_errors_import_no_heavy_modules(args, code):
    """`sb3-mbrl --help` and usage errors answer without importing torch, SB3 or rl-zoo (was about 12 s)."""
    script = (
        "import sys\n"
        "from sb3_mbrl.zoo.cli import main\n"
        "try:\n"
        f"    main({args!r})\n"
        "except SystemExit as exit:\n"
        "    code = exit.code\n"
        "else:\n"
        "    code = 0\n"
        "heavy = sorted(m for m in ('torch', 'stable_baselines3', 'rl_zoo3', 'gymnasium') if m in sys.modules)\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == code
    assert "HEAVY []" in result.stderr
    assert "usage: sb3-mbrl COMMAND" in result.stdout + result.stderr


def test_package_exports_the_algorithms_lazily():
    import sb3_mbrl

    assert {"PETS", "MBPO", "REINFORCE"} <= set(dir(sb3_mbrl))
    from sb3_mbrl import MBPO, PETS, REINFORCE  # noqa: F401

    with pytest.raises(AttributeError, match="no attribute 'NOPE'"):
        sb3_mbrl.NOPE  # noqa: B018


@pytest.mark.parametrize("command", ["train", "enjoy"])
def test_shipped_command_help_is_rl_zoos_live_help(command):
    """`sb3-mbrl train --help` prints a shipped copy (no torch import); it must equal rl-zoo's live help."""
    import os

    from sb3_mbrl.zoo import cli

    env = {**os.environ, "COLUMNS": cli.HELP_COLUMNS, "SB3_MBRL_LIVE_HELP": "1"}
    live = subprocess.run([sys.executable, "-m", "sb3_mbrl", command, "--help"], capture_output=True, text=True,
                          env=env, timeout=120).stdout
    shipped = (cli.HELP_DIR / f"{command}.txt").read_text()
    assert live == shipped, "rl-zoo's help changed: run `python -m sb3_mbrl.zoo.cli --write-help`"
    script = (
        "import sys\nfrom sb3_mbrl.zoo.cli import main\n"
        f"main([{command!r}, '--help'])\n"
        "assert 'torch' not in sys.modules and 'rl_zoo3' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == shipped
