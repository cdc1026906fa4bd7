"""Hyperparameter search: samplers, `train -optimize` storage (SQLite, PostgreSQL) and `sb3-mbrl best`."""
import glob
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import optuna
import pytest
import yaml

from sb3_mbrl import MBPO, PETS, REINFORCE
from sb3_mbrl.common.zoo_config import zoo_config_dir
from sb3_mbrl.zoo.argv import parse_args, train_argv
from sb3_mbrl.zoo.best import python_source, to_zoo_config
from sb3_mbrl.zoo.registry import register_algorithms
from sb3_mbrl.zoo.search import SEARCH_ATTR, prepare_search
from sb3_mbrl.zoo.search_spaces import (
    MBPO_SAC_CATEGORICAL,
    SAMPLERS,
    hyperparams_from_params,
    sample_mbpo_params,
    sample_pets_params,
    sample_reinforce_params,
)
from sb3_mbrl.zoo.storage import SearchError, default_storage_path, storage_url

optuna.logging.set_verbosity(optuna.logging.WARNING)
NO_HER = {"using_her_replay_buffer": False, "her_kwargs": {}}
# Small base settings, as a config file would give them, so that constructing MBPO does not
# allocate a 100k-rollout model buffer.
MBPO_BASE = dict(rollout_batch_size=256, ensemble_size=3, num_elites=2, model_net_arch=[32, 32])


def _ask(sampler, seed: int, n_envs: int = 1):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed), direction="maximize")
    trial = study.ask()
    return trial, sampler(trial, 0, n_envs, dict(NO_HER))


def _same(a: Dict, b: Dict) -> bool:
    return python_source(a) == python_source(b)


# ---------------------------------------------------------------------------- samplers
@pytest.mark.parametrize("seed", range(4))
def test_pets_sampler_builds_pets(seed):
    trial, kwargs = _ask(sample_pets_params, seed)
    # The stored params give the same constructor arguments again (what `sb3-mbrl best` relies on).
    # Compared first: SB3 constructors add entries to the policy_kwargs dict they get.
    assert _same(hyperparams_from_params("pets", trial.params), kwargs)
    model = PETS("MlpPolicy", "Pendulum-v1", **kwargs)  # builds the planner, so its settings are checked
    planner = model.policy.receding_horizon.planner
    assert model.horizon == kwargs["horizon"] == planner.horizon
    assert type(planner).__name__.lower().startswith(kwargs["planner"])
    assert 2 <= planner.num_elites < planner.population_size == trial.params["population_size"]
    assert model.policy.net_arch == model.model_net_arch == kwargs["model_net_arch"]
    assert model.learning_rate == model.model_learning_rate == kwargs["model_learning_rate"]
    refit = trial.params["model_train_freq"]
    assert (model._refits.n, model._refits.unit.value) == ((1, "episode") if refit == "episode" else (refit, "step"))


@pytest.mark.parametrize("seed", range(4))
def test_mbpo_sampler_builds_mbpo(seed):
    trial, kwargs = _ask(sample_mbpo_params, seed)
    assert _same(hyperparams_from_params("mbpo", trial.params), kwargs)
    model = MBPO("MlpPolicy", "Pendulum-v1", **{**MBPO_BASE, **kwargs})
    # rl-zoo's SAC part, with the ranges narrowed for MBPO, plus MBPO's own.
    for name, choices in MBPO_SAC_CATEGORICAL.items():
        assert trial.params[name] in choices
    assert model.learning_starts == trial.params["learning_starts"]
    assert model.gradient_steps == trial.params["updates_per_env_step"] * trial.params["train_freq"]
    assert model.rollout_length == trial.params["rollout_length"]
    assert model.real_ratio == trial.params["real_ratio"] == model.replay_buffer.real_ratio
    assert model.model_train_freq == trial.params["model_train_freq"]
    assert 1e-5 <= trial.params["learning_rate"] <= 1e-2
    with pytest.raises(ValueError, match="HER"):
        sample_mbpo_params(optuna.trial.FixedTrial(trial.params), 0, 1, {"using_her_replay_buffer": True, "her_kwargs": {}})


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("env_id, n_envs", [("CartPole-v1", 4), ("Pendulum-v1", 1)])
def test_reinforce_sampler_builds_reinforce(seed, env_id, n_envs):
    from stable_baselines3.common.env_util import make_vec_env

    trial, kwargs = _ask(sample_reinforce_params, seed, n_envs)
    assert _same(hyperparams_from_params("reinforce", trial.params, n_envs=n_envs), kwargs)
    model = REINFORCE("MlpPolicy", make_vec_env(env_id, n_envs=n_envs), **kwargs)
    assert model.n_episodes == trial.params["n_episodes"] and model.baseline == trial.params["baseline"]
    # The rollout buffer holds the batch's episodes: each env its share, 1,000 steps per episode.
    assert model.n_steps * n_envs >= 1000 * trial.params["n_episodes"]


def test_fixed_trial_conversion_is_real_and_checked():
    params = dict(horizon=15, planner="cem", population_size=100, elite_fraction=0.2, iterations=4, num_particles=3,
                  propagation="random_model", model_net_arch="small", model_learning_rate=5e-4, model_train_freq="episode")
    kwargs = hyperparams_from_params("pets", params)
    assert kwargs["planner_kwargs"] == {"population_size": 100, "num_elites": 20, "iterations": 4}
    assert kwargs["model_net_arch"] == [64, 64, 64]  # "small" -> the layers
    assert kwargs["model_train_freq"] == (1, "episode")  # "episode" -> PETS's per-episode schedule
    with pytest.raises(ValueError, match="do not fit"):
        hyperparams_from_params("pets", {**params, "planner": "icem"})  # iCEM's noise_beta is missing
    with pytest.raises(ValueError, match="not in the current"):
        hyperparams_from_params("pets", {**params, "batch_size": 64})
    with pytest.raises(ValueError, match="No hyperparameter sampler"):
        hyperparams_from_params("nope", params)
    # A study made before model_train_freq was searched: its trials ran with PETS's default, one refit per episode.
    before = {key: value for key, value in params.items() if key != "model_train_freq"}
    assert hyperparams_from_params("pets", before) == kwargs


def test_samplers_registered_in_rl_zoo():
    from rl_zoo3.hyperparams_opt import HYPERPARAMS_SAMPLER

    register_algorithms()
    for name, sampler in SAMPLERS.items():
        assert HYPERPARAMS_SAMPLER[name] is sampler


def test_zoo_config_values_evaluate_back_in_rl_zoo():
    import rl_zoo3.exp_manager
    from torch import nn

    _, kwargs = _ask(sample_reinforce_params, 0)
    config = to_zoo_config({**kwargs, "planner_kwargs": {"population_size": 50}, "train_freq": (1, "episode")})
    assert isinstance(config["policy_kwargs"], str) and config["planner_kwargs"] == {"population_size": 50}
    assert config["train_freq"] == [1, "episode"]  # rl-zoo turns lists back into tuples
    # rl-zoo eval()-s policy_kwargs strings in its exp_manager module.
    assert eval(config["policy_kwargs"], vars(rl_zoo3.exp_manager)) == kwargs["policy_kwargs"]
    assert yaml.safe_load(yaml.safe_dump(config)) == config
    assert python_source({"activation_fn": nn.SiLU, "sizes": (3,)}) == "dict(activation_fn=nn.SiLU, sizes=(3,))"
    with pytest.raises(ValueError, match="Cannot write"):
        python_source(object())


# ---------------------------------------------------------------------------- storage defaults
def test_train_argv_fills_in_local_study(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = train_argv(["--algo", "pets", "--env", "Pendulum-v1", "-optimize", "--n-trials", "3"])
    db = tmp_path / "logs" / "optuna" / "pets-Pendulum-v1.db"
    assert argv[argv.index("--storage") + 1] == f"sqlite:///{db}"
    assert argv[argv.index("--study-name") + 1] == "pets-Pendulum-v1"
    assert "--eval-freq" not in argv  # rl-zoo evaluates with --n-evaluations while searching
    argv = train_argv(["--algo", "reinforce", "--env", "seals/CartPole-v0", "-f", "runs", "-optimize"])
    assert argv[argv.index("--storage") + 1] == f"sqlite:///{tmp_path / 'runs' / 'optuna' / 'reinforce-seals-CartPole-v0.db'}"
    # A file given as --storage becomes an SQLite URL (added after it: argparse keeps a flag's last value),
    # abbreviated flags read as rl-zoo reads them.
    for given in (["--storage", "here.db", "--study-name", "s"], ["--stor=here.db", "--study", "s"]):
        args = parse_args("train", train_argv(["--algo", "mbpo", "--env", "Pendulum-v1", "-optimize", *given]))
        assert args.storage == f"sqlite:///{tmp_path / 'here.db'}" and args.study_name == "s"
    url = "postgresql+psycopg2://me:secret@db.example/search"
    argv = train_argv(["--algo", "mbpo", "--env", "Pendulum-v1", "--optimize-hyperparameters", f"--storage={url}"])
    assert f"--storage={url}" in argv and argv[argv.index("--study-name") + 1] == "mbpo-Pendulum-v1"
    with pytest.raises(SearchError, match="not a database URL"):
        train_argv(["--algo", "mbpo", "--env", "Pendulum-v1", "-optimize", "--storage", "nosuchdb://x/y"])
    with pytest.raises(SearchError, match="journal"):
        train_argv(["--algo", "mbpo", "--env", "Pendulum-v1", "-optimize", "--storage", "study.log"])


def test_storage_errors_are_retried_then_named():
    from sqlalchemy.exc import IntegrityError, OperationalError

    from sb3_mbrl.zoo.storage import retrying

    calls = []

    def flaky() -> str:  # a worker that lost the race to create Optuna's tables
        calls.append(1)
        if len(calls) == 1:
            raise IntegrityError("INSERT INTO version_info", {}, Exception("duplicate key"))
        return "study"

    assert retrying(flaky, "sqlite:///x.db", attempts=2) == "study" and len(calls) == 2

    def refused() -> None:
        raise OperationalError("connect", {}, Exception('connection to server at "db" failed: Connection refused'))

    with pytest.raises(SearchError, match=r"postgresql://me:\*\*\*@db/search: .*Connection refused") as error:
        retrying(refused, "postgresql://me:secret@db/search", attempts=2)
    assert "secret" not in str(error.value)


def _train(argv: List[str], monkeypatch) -> None:
    """``sb3-mbrl train`` in this process (rl-zoo reads sys.argv, which run_train sets)."""
    from sb3_mbrl.zoo.cli import main

    monkeypatch.setattr(sys, "argv", list(sys.argv))
    main(["train", *argv])


def _search_flags(n_trials: int, seed: int) -> List[str]:
    return ["-optimize", "--n-trials", str(n_trials), "--sampler", "random", "--seed", str(seed),
            "--eval-episodes", "2", "--no-optim-plots", "--num-threads", "1"]


def _finished(study: optuna.Study) -> List[optuna.trial.FrozenTrial]:
    return [t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]


# ---------------------------------------------------------------------------- local searches
def test_reinforce_search_resumes_and_best_config_trains(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    search = ["--algo", "reinforce", "--env", "CartPole-v1", "-n", "1000", "--n-evaluations", "2"]
    _train([*search, *_search_flags(2, 0)], monkeypatch)
    db = default_storage_path("logs", "reinforce", "CartPole-v1")
    assert db.is_file() and db.parent == tmp_path / "logs" / "optuna"
    assert "Optuna study 'reinforce-CartPole-v1'" in capsys.readouterr().out
    study = optuna.load_study(study_name="reinforce-CartPole-v1", storage=f"sqlite:///{db}")
    assert len(_finished(study)) == 2
    assert study.user_attrs[SEARCH_ATTR]["algo"] == "reinforce" and study.user_attrs[SEARCH_ATTR]["n_timesteps"] == 1000
    # Each trial was evaluated twice by rl-zoo's TrialEvalCallback (what the pruner sees).
    # (at steps 500 and 1000; the last rollout may run past 1000 steps and add a third)
    assert all(len(t.intermediate_values) >= 2 for t in study.trials)

    _train([*search, *_search_flags(1, 1)], monkeypatch)  # the same command again: the same study
    study = optuna.load_study(study_name="reinforce-CartPole-v1", storage=f"sqlite:///{db}")
    assert len(_finished(study)) == 3 and [t.number for t in study.trials] == [0, 1, 2]

    from sb3_mbrl.zoo.cli import main

    main(["best", "--algo", "reinforce", "--env", "CartPole-v1", "--yaml", "best.yml"])
    out = capsys.readouterr().out
    best = study.best_trial
    assert f"Best trial: #{best.number}, value {best.value}" in out and "Trials: 3 complete" in out
    entry = yaml.safe_load((tmp_path / "best.yml").read_text())["CartPole-v1"]
    expected = hyperparams_from_params("reinforce", best.params, n_envs=8)  # zoo_configs: 8 envs
    assert entry["n_envs"] == 8 and entry["n_timesteps"] == 200_000  # the base config's, not the search's
    for key, value in to_zoo_config(expected).items():
        assert entry[key] == value, key
    _train(["--algo", "reinforce", "--env", "CartPole-v1", "--conf-file", "best.yml", "-n", "400",
            "--eval-freq", "-1", "-f", "trained", "--num-threads", "1"], monkeypatch)
    run = tmp_path / "trained" / "reinforce" / "CartPole-v1_1"
    assert (run / "CartPole-v1.zip").is_file()
    # rl-zoo saves the hyperparameters it used as an OrderedDict: [[key, value], ...] under a Python tag.
    config = dict(yaml.load((run / "CartPole-v1" / "config.yml").read_text(), Loader=yaml.UnsafeLoader))
    assert config["learning_rate"] == best.params["learning_rate"] and config["n_episodes"] == best.params["n_episodes"]


def test_mbpo_search(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    conf = {"Pendulum-v1": {"n_timesteps": 260, "policy": "MlpPolicy", "model_epochs": 3, "epoch_length": 100, **MBPO_BASE}}
    (tmp_path / "mbpo.yml").write_text(yaml.safe_dump(conf))
    _train(["--algo", "mbpo", "--env", "Pendulum-v1", "--conf-file", "mbpo.yml", "--env-kwargs", "max_episode_steps:50",
            *_search_flags(2, 2)], monkeypatch)
    db = default_storage_path("logs", "mbpo", "Pendulum-v1")
    study = optuna.load_study(study_name="mbpo-Pendulum-v1", storage=f"sqlite:///{db}")
    trials = _finished(study)
    assert len(trials) == 2 and all(np.isfinite(t.value) for t in trials)
    assert all(t.params["learning_starts"] in MBPO_SAC_CATEGORICAL["learning_starts"] for t in trials)


PETS_CHEAP = dict(horizon=10, planner="icem", population_size=50, elite_fraction=0.1, iterations=3, num_particles=1,
                  propagation="fixed_model", model_net_arch="small", model_learning_rate=1e-3, noise_beta=2.0,
                  model_train_freq="episode")


def test_pets_search_evaluates_the_planner(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    conf = {"Pendulum-v1": dict(n_timesteps=60, policy="MlpPolicy", learning_starts=20, ensemble_size=3, model_epochs=3)}
    (tmp_path / "pets.yml").write_text(yaml.safe_dump(conf))
    db = default_storage_path("logs", "pets", "Pendulum-v1")
    db.parent.mkdir(parents=True)
    # A cheap planner for this test, through the real sampler: the trial's suggestions return these.
    study = optuna.create_study(storage=f"sqlite:///{db}", study_name="pets-Pendulum-v1", direction="maximize")
    study.enqueue_trial(PETS_CHEAP)
    _train(["--algo", "pets", "--env", "Pendulum-v1", "--conf-file", "pets.yml", "--env-kwargs", "max_episode_steps:20",
            "--n-evaluations", "2", *_search_flags(1, 0)], monkeypatch)
    study = optuna.load_study(study_name="pets-Pendulum-v1", storage=f"sqlite:///{db}")
    (trial,) = study.trials
    assert trial.state == optuna.trial.TrialState.COMPLETE and trial.params == PETS_CHEAP
    # TrialEvalCallback ran PETS's MPC predict twice (20-step episodes: returns between -20 * 16.3 and 0).
    assert sorted(trial.intermediate_values) == [1, 2]
    assert all(-330 < value <= 0 for value in trial.intermediate_values.values())


def test_pets_search_refuses_evaluations_before_the_first_model_fit(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    conf = {"Pendulum-v1": {"n_timesteps": 60, "policy": "MlpPolicy", "learning_starts": 40}}
    (tmp_path / "pets.yml").write_text(yaml.safe_dump(conf))
    with pytest.raises(SystemExit) as exit_info:
        _train(["--algo", "pets", "--env", "Pendulum-v1", "--conf-file", "pets.yml", "--n-evaluations", "3",
                *_search_flags(1, 0)], monkeypatch)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "every 20 env steps" in err and "learning_starts=40" in err
    assert not (tmp_path / "logs").exists()  # refused before anything was created


def test_a_study_holds_one_algorithm_and_env(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    common = ["-optimize", "--storage", "shared.db", "--study-name", "s"]
    prepare_search(train_argv(["--algo", "reinforce", "--env", "CartPole-v1", *common]))
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'shared.db'}")
    assert study.user_attrs[SEARCH_ATTR]["conf_file"] == str(zoo_config_dir() / "reinforce.yml")  # package data
    with pytest.raises(SearchError, match="searches reinforce on CartPole-v1"):
        prepare_search(train_argv(["--algo", "mbpo", "--env", "Pendulum-v1", *common]))
    with pytest.warns(UserWarning, match="same command"):
        prepare_search(train_argv(["--algo", "reinforce", "--env", "CartPole-v1", "-n", "5", *common]))


def test_best_config_of_a_search_made_elsewhere(tmp_path, monkeypatch, capsys):
    """The recorded config file is not on this machine: the default one, with the search's --hyperparams."""
    from sb3_mbrl.zoo.cli import main

    monkeypatch.chdir(tmp_path)
    study = optuna.create_study(storage="sqlite:///s.db", study_name="remote", direction="maximize")
    study.set_user_attr(SEARCH_ATTR, dict(algo="reinforce", env="CartPole-v1", conf_file="/elsewhere/reinforce.yml",
                                          hyperparams=["max_grad_norm:0.3", "n_envs:2"], n_timesteps=1000))
    params = dict(learning_rate=1e-3, gamma=0.99, baseline=None, n_episodes=5, n_epochs=1, ent_coef=0.0,
                  normalize_advantage=True, net_arch="small", activation_fn="relu")
    study.enqueue_trial(params)
    study.optimize(lambda trial: sample_reinforce_params(trial, 0, 2, {})["gamma"], n_trials=1)  # no training needed
    main(["best", "--storage", "s.db", "--yaml", "best.yml"])
    base = "zoo_configs/reinforce.yml, entry CartPole-v1, with --hyperparams max_grad_norm:0.3 n_envs:2"
    assert base in capsys.readouterr().out
    entry = yaml.safe_load((tmp_path / "best.yml").read_text())["CartPole-v1"]
    assert entry["max_grad_norm"] == 0.3 and entry["n_envs"] == 2 and entry["n_timesteps"] == 200_000
    assert entry["baseline"] is None and entry["n_steps"] == 3000  # 5 episodes over 2 envs: 3 x 1000 steps each
    assert entry["policy_kwargs"] == "dict(net_arch=dict(pi=[64, 64], vf=[64, 64]), activation_fn=nn.ReLU)"
    main(["best", "--storage", "s.db", "--yaml", "short.yml", "-n", "500", "--conf-file", "none.yml"])
    assert "the config holds the sampled values only" in capsys.readouterr().out
    entry = yaml.safe_load((tmp_path / "short.yml").read_text())["CartPole-v1"]
    assert entry["n_timesteps"] == 500 and entry["policy"] == "MlpPolicy" and "max_grad_norm" not in entry


def test_best_errors_name_the_study_and_storage(tmp_path, monkeypatch, capsys):
    from sb3_mbrl.zoo.cli import main

    monkeypatch.chdir(tmp_path)

    def error(*argv: str) -> str:
        with pytest.raises(SystemExit) as exit_info:
            main(["best", *argv])
        assert exit_info.value.code == 2
        return capsys.readouterr().err

    assert "No study storage at" in error("--algo", "pets", "--env", "Pendulum-v1")
    optuna.create_study(storage="sqlite:///s.db", study_name="mine").enqueue_trial({})
    message = error("--storage", "s.db", "--study-name", "other")
    assert "No study 'other'" in message and str(tmp_path / "s.db") in message and "['mine']" in message
    assert "no complete trial" in error("--storage", "s.db", "--algo", "pets", "--env", "Pendulum-v1")
    assert "give --algo and --env" in error("--storage", "s.db")
    assert not (tmp_path / "logs").exists()


# ---------------------------------------------------------------------------- PostgreSQL
def _postgres_bin() -> Optional[Path]:
    """Folder of initdb / pg_ctl: on PATH, else Debian's /usr/lib/postgresql/<version>/bin."""
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3].split(".")[0]))
    return Path(found[-1]).parent if found else None


def _unavailable(reason: str) -> None:
    if os.environ.get("SB3_MBRL_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"SB3_MBRL_REQUIRE_POSTGRES=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture
def postgres_url(request) -> str:
    """A throw-away PostgreSQL server on 127.0.0.1 (trust auth) with an empty database; stopped afterwards."""
    bin_dir = _postgres_bin()
    if bin_dir is None:
        _unavailable("PostgreSQL's initdb was not found (PATH, /usr/lib/postgresql/*/bin)")
    try:
        import psycopg2
    except ImportError:
        _unavailable("psycopg2 is not installed (pip install -e '.[postgres]')")
    as_root = os.geteuid() == 0
    folder = Path(tempfile.mkdtemp(prefix="sb3_mbrl_pg_"))  # in /tmp: the postgres user must reach it
    request.addfinalizer(lambda: shutil.rmtree(folder, ignore_errors=True))
    if as_root:  # PostgreSQL refuses to run as root
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            _unavailable("running as root and there is no 'postgres' user to run the server")
        os.chown(folder, user.pw_uid, user.pw_gid)

    def run(*cmd: str) -> subprocess.CompletedProcess:
        command = [str(bin_dir / cmd[0]), *cmd[1:]]
        if as_root:
            command = ["runuser", "-u", "postgres", "--", *command] if shutil.which("runuser") else \
                ["su", "postgres", "-s", "/bin/sh", "-c", shlex.join(command)]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    data = folder / "data"
    result = run("initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
    assert result.returncode == 0, result.stdout + result.stderr
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    options = f"-k {folder} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off"
    request.addfinalizer(lambda: run("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop"))
    result = run("pg_ctl", "-D", str(data), "-l", str(folder / "server.log"), "-w", "-t", "60", "-o", options, "start")
    log = (folder / "server.log").read_text() if (folder / "server.log").exists() else ""
    assert result.returncode == 0, result.stdout + result.stderr + log
    connection = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("CREATE DATABASE sb3_mbrl_search")
    connection.close()
    return f"postgresql://postgres@127.0.0.1:{port}/sb3_mbrl_search"


def _sb3_mbrl(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sb3_mbrl", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_two_workers_share_a_postgresql_study(postgres_url, tmp_path):
    search = ["--algo", "reinforce", "--env", "CartPole-v1", "-n", "1000", "--n-evaluations", "2", "--storage", postgres_url,
              "--study-name", "shared"]
    workers = [
        _sb3_mbrl("train", *search, *_search_flags(2, seed), "--optimization-log-path", f"worker{seed}", cwd=tmp_path)
        for seed in (0, 1)
    ]
    outputs = [worker.communicate(timeout=300)[0] for worker in workers]
    for worker, output in zip(workers, outputs):
        assert worker.returncode == 0, output[-3000:]
        assert "Optuna study 'shared'" in output and "postgres@127.0.0.1" in output

    # (a bare postgresql:// URL means psycopg 3 to SQLAlchemy 2.1; storage_url picks the installed driver)
    study = optuna.load_study(study_name="shared", storage=storage_url(postgres_url))
    finished = _finished(study)
    assert len(finished) == len(study.trials) == 4  # 2 trials from each worker
    # rl-zoo logs each trial's evaluations under the --optimization-log-path of the worker that ran it.
    ran = [{int(p.name.split("_")[1]) for p in (tmp_path / f"worker{seed}").glob("trial_*")} for seed in (0, 1)]
    assert len(ran[0]) == len(ran[1]) == 2 and ran[0] | ran[1] == {t.number for t in study.trials}

    best = _sb3_mbrl("best", "--storage", postgres_url, "--study-name", "shared", "--yaml", "best.yml", cwd=tmp_path)
    output = best.communicate(timeout=120)[0]
    assert best.returncode == 0, output
    assert f"Best trial: #{study.best_trial.number}, value {study.best_trial.value}" in output
    for key, value in study.best_trial.params.items():
        assert f"    {key}: {value}" in output
    entry = yaml.safe_load((tmp_path / "best.yml").read_text())["CartPole-v1"]
    assert entry["learning_rate"] == study.best_trial.params["learning_rate"]

    train = _sb3_mbrl("train", "--algo", "reinforce", "--env", "CartPole-v1", "--conf-file", "best.yml", "-n", "400",
                      "--eval-freq", "-1", "-f", "trained", "--num-threads", "1", cwd=tmp_path)
    output = train.communicate(timeout=120)[0]
    assert train.returncode == 0, output[-3000:]
    assert (tmp_path / "trained" / "reinforce" / "CartPole-v1_1" / "CartPole-v1.zip").is_file()
