"""Imitation learning: demo round trip, BC and GAIL smoke runs, safe policy loading, errors, CLI."""
import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import PPO, SAC

from sb3_mbrl.imitation_learning import (
    bc_defaults,
    bc_settings,
    DemonstrationError,
    ExpertBelowLevelError,
    ImitationError,
    VariableHorizonError,
    collect_demos,
    gail_bc_pretrain_default,
    gail_config_for,
    load_demos,
    load_model,
    make_venv,
    normalised_score,
    save_demos,
    train_bc,
    train_expert,
    train_gail,
)
from sb3_mbrl.imitation_learning import cli as imitate_cli

CARTPOLE = "seals/CartPole-v0"
PENDULUM = "Pendulum-v1"
TINY_GAIL = dict(n_envs=2, n_steps=64, batch_size=64, n_epochs=1)
TINY_DISC = dict(demo_batch_size=64, gen_replay_buffer_capacity=128, n_disc_updates_per_round=1)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def untrained(env_id: str, algo=PPO):
    """An untrained SB3 model: demonstrations only need the right spaces here."""
    return algo("MlpPolicy", make_venv(env_id, n_envs=1, rollout_info=False), seed=0)


@pytest.fixture(scope="module")
def cartpole_demos():
    return collect_demos(untrained(CARTPOLE), CARTPOLE, n_episodes=2, seed=0)


@pytest.fixture(scope="module")
def pendulum_demos():
    return collect_demos(untrained(PENDULUM, SAC), PENDULUM, n_episodes=2, seed=0)


def test_collect_exact_episodes_fixed_horizon(cartpole_demos, pendulum_demos):
    assert len(cartpole_demos) == 2 and all(len(t) == 500 for t in cartpole_demos)
    assert len(pendulum_demos) == 2 and all(len(t) == 200 for t in pendulum_demos)
    assert pendulum_demos[0].acts.shape == (200, 1)


def test_demo_round_trip(tmp_path, cartpole_demos):
    path = save_demos(cartpole_demos, tmp_path / "demos")
    loaded = load_demos(path, env_id=CARTPOLE)
    assert len(loaded) == len(cartpole_demos)
    for a, b in zip(cartpole_demos, loaded):
        np.testing.assert_array_equal(a.obs, b.obs)
        np.testing.assert_array_equal(a.acts, b.acts)
        np.testing.assert_array_equal(a.rews, b.rews)
        assert a.terminal == b.terminal
    assert len(load_demos(path, env_id=CARTPOLE, n_episodes=1)) == 1
    # Saving again replaces the folder; no temporary folders are left behind.
    save_demos(cartpole_demos[:1], path)
    assert len(load_demos(path)) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demos"]


def test_demo_errors(tmp_path, cartpole_demos):
    with pytest.raises(DemonstrationError, match="No demonstrations at"):
        load_demos(tmp_path / "missing")
    pickle_file = tmp_path / "demos.pkl"
    pickle_file.write_bytes(b"not a pickle")
    with pytest.raises(DemonstrationError, match="pickle"):
        load_demos(pickle_file)
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "dataset_info.json").write_text("{ not json")
    with pytest.raises(DemonstrationError, match="Could not read"):
        load_demos(corrupt)
    path = save_demos(cartpole_demos, tmp_path / "demos")
    arrow = next(path.glob("*.arrow"))
    arrow.write_bytes(arrow.read_bytes()[:200])
    with pytest.raises(DemonstrationError, match="Could not read"):
        load_demos(path)
    with pytest.raises(DemonstrationError, match="zero episodes"):
        save_demos([], tmp_path / "empty")
    assert not (tmp_path / "empty").exists()
    with pytest.raises(DemonstrationError, match="positive"):
        collect_demos(untrained(CARTPOLE), CARTPOLE, n_episodes=0)
    with pytest.raises(DemonstrationError, match="fewer than"):
        load_demos(save_demos(cartpole_demos, tmp_path / "two"), n_episodes=3)


def test_demos_must_match_env(tmp_path, cartpole_demos, pendulum_demos):
    path = save_demos(cartpole_demos, tmp_path / "cartpole")
    with pytest.raises(DemonstrationError, match="observations have shape"):
        load_demos(path, env_id=PENDULUM)
    with pytest.raises(DemonstrationError, match="observations have shape"):
        train_bc(pendulum_demos, CARTPOLE, n_batches=1)
    with pytest.raises(DemonstrationError, match="zero episodes"):
        train_bc([], CARTPOLE, n_batches=1)
    with pytest.raises(DemonstrationError, match="expert's spaces"):
        collect_demos(untrained(PENDULUM, SAC), CARTPOLE, n_episodes=1)


def test_variable_horizon_refused_unless_asked():
    with pytest.raises(VariableHorizonError, match="variable horizon.*seals/CartPole-v0"):
        collect_demos(untrained("CartPole-v1"), "CartPole-v1", n_episodes=1)
    demos = collect_demos(untrained("CartPole-v1"), "CartPole-v1", n_episodes=2, allow_variable_horizon=True)
    assert len(demos) == 2
    with pytest.raises(VariableHorizonError):
        train_gail(demos, "CartPole-v1", timesteps=128, gen_kwargs=TINY_GAIL, disc_kwargs=TINY_DISC)


def _actions_in_fresh_process(path: Path, obs: np.ndarray) -> np.ndarray:
    """Load ``path`` with PPO.load in a new interpreter (torch's default, safe, loading) and act."""
    code = (
        "import sys, json, numpy as np, torch\n"
        "from stable_baselines3 import PPO\n"
        "model = PPO.load(sys.argv[1], device='cpu')\n"
        "obs = np.array(json.loads(sys.argv[2]), dtype=np.float32)\n"
        "print(json.dumps(model.predict(obs, deterministic=True)[0].tolist()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path), json.dumps(obs.tolist())],
                         capture_output=True, text=True, check=True, timeout=120)
    return np.array(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("env_id", [CARTPOLE, PENDULUM])
def test_bc_smoke_and_safe_reload(tmp_path, env_id, cartpole_demos, pendulum_demos):
    demos = cartpole_demos if env_id == CARTPOLE else pendulum_demos
    model = train_bc(demos, env_id, seed=0, n_batches=50)
    assert isinstance(model, PPO)
    path = tmp_path / "bc_policy.zip"
    model.save(path)
    obs = np.concatenate([demos[0].obs[:5], demos[1].obs[-5:]]).astype(np.float32)
    expected = model.predict(obs, deterministic=True)[0]
    np.testing.assert_allclose(_actions_in_fresh_process(path, obs), expected, rtol=1e-5, atol=1e-6)
    reloaded = load_model(path)
    np.testing.assert_allclose(reloaded.predict(obs, deterministic=True)[0], expected, rtol=1e-5, atol=1e-6)


def test_bc_defaults_per_action_space(pendulum_demos, cartpole_demos):
    """Box actions get the wider policy (the Pendulum swing-up needs it), Discrete keeps (64, 64); arguments win."""
    assert bc_defaults(gym.spaces.Box(-1, 1, (1,))) == {"n_batches": 10_000, "net_arch": (256, 256)}
    assert bc_settings(gym.spaces.Discrete(2), n_batches=5, net_arch=[8]) == {"n_batches": 5, "net_arch": (8,)}

    def widths(model):
        return [layer.out_features for layer in model.policy.mlp_extractor.policy_net if hasattr(layer, "out_features")]

    assert widths(train_bc(pendulum_demos, PENDULUM, n_batches=1)) == [256, 256]
    assert widths(train_bc(cartpole_demos, CARTPOLE, n_batches=1)) == [64, 64]
    assert widths(train_bc(pendulum_demos, PENDULUM, n_batches=1, net_arch=[32])) == [32]


def test_bc_learns_expert_actions(cartpole_demos):
    """BC reproduces a deterministic expert's actions on its own states (imitation: BC improves after 1 epoch)."""
    model = train_bc(cartpole_demos, CARTPOLE, seed=0, n_batches=300)
    obs = np.concatenate([t.obs[:-1] for t in cartpole_demos])
    acts = np.concatenate([t.acts for t in cartpole_demos])
    assert np.mean(model.predict(obs, deterministic=True)[0] == acts) > 0.8


@pytest.mark.parametrize("env_id", [CARTPOLE, PENDULUM])
def test_gail_smoke(tmp_path, env_id, cartpole_demos, pendulum_demos):
    demos = cartpole_demos if env_id == CARTPOLE else pendulum_demos
    rounds = []
    model = train_gail(demos, env_id, timesteps=256, seed=0, gen_kwargs=TINY_GAIL, disc_kwargs=TINY_DISC,
                       callback=rounds.append, bc_pretrain_batches=20)
    assert rounds == [0, 1] and model.num_timesteps == 256
    model.save(tmp_path / "gail")
    obs = demos[0].obs[:4].astype(np.float32)
    np.testing.assert_allclose(_actions_in_fresh_process(tmp_path / "gail.zip", obs),
                               model.predict(obs, deterministic=True)[0], rtol=1e-5, atol=1e-6)


def test_gail_generator_schedules_follow_the_whole_run_not_each_round(tmp_path, pendulum_demos):
    """
    imitation trains the generator one round per ``learn`` call, so SB3's progress restarts every
    round and ends each at 0: a linear learning rate was 0 at every update (the generator never
    moved). The schedules follow the run instead: round k of n updates at progress 1 - (k + 1) / n.
    """
    seen = []

    def learning_rate(progress_remaining: float) -> float:
        seen.append(progress_remaining)
        return 1e-3 * progress_remaining

    model = train_gail(pendulum_demos, PENDULUM, timesteps=4 * 128, seed=0,
                       gen_kwargs={**TINY_GAIL, "learning_rate": learning_rate, "clip_range": "lin_0.2"},
                       disc_kwargs=TINY_DISC, bc_pretrain_batches=0)
    # Each round's update: progress 3/4, 2/4, 1/4, 0 (SB3 asks once at set-up, with 1, then twice
    # per update: to log and to set; before the fix every update saw 0).
    assert list(dict.fromkeys(round(p, 6) for p in seen[1:])) == [0.75, 0.5, 0.25, 0.0], seen
    assert model.num_timesteps == 4 * 128
    # After training the model holds SB3's own schedules again: saved and loaded, a further learn()
    # follows its own progress.
    assert model.lr_schedule(1.0) == pytest.approx(1e-3) and model.clip_range(0.5) == pytest.approx(0.1)
    # A further learn() continues on fresh envs, with or without resetting the step count.
    model.learn(128, reset_num_timesteps=False)
    assert model.num_timesteps == 5 * 128
    model.learn(128, reset_num_timesteps=True)
    assert model.num_timesteps == 128
    model.save(tmp_path / "gail")
    loaded = PPO.load(tmp_path / "gail")
    assert loaded.lr_schedule(0.5) == pytest.approx(5e-4)


def test_gail_generator_starts_from_bc_on_the_demos(pendulum_demos):
    """bc_pretrain_batches clones the demos into the generator before the first round (Box default: 10,000)."""
    assert gail_bc_pretrain_default(gym.spaces.Box(-1, 1, (1,))) == 10_000
    assert gail_bc_pretrain_default(gym.spaces.Discrete(2)) == 0
    obs = np.concatenate([traj.obs[:-1] for traj in pendulum_demos]).astype(np.float32)
    acts = np.concatenate([traj.acts for traj in pendulum_demos])
    errors = {}
    for batches in (0, 500):
        # A learning rate of 0: the one round of GAIL leaves the generator as it started.
        model = train_gail(pendulum_demos, PENDULUM, timesteps=128, seed=0, disc_kwargs=TINY_DISC,
                           gen_kwargs={**TINY_GAIL, "learning_rate": 0.0}, bc_pretrain_batches=batches)
        errors[batches] = float(np.mean((model.predict(obs, deterministic=True)[0] - acts) ** 2))
    assert errors[500] < 0.25 * errors[0], errors
    with pytest.raises(ImitationError, match="bc_pretrain_batches"):
        train_gail(pendulum_demos, PENDULUM, timesteps=128, gen_kwargs=TINY_GAIL, bc_pretrain_batches=-1)


def test_normalised_score():
    assert normalised_score(500.0, 20.0, 500.0) == 1.0
    assert normalised_score(20.0, 20.0, 500.0) == 0.0
    assert normalised_score(-200.0, -1200.0, -150.0) == pytest.approx(1000 / 1050)
    assert normalised_score(1.0, 1.0, 1.0) is None


def test_cli_pipeline(tmp_path, capsys):
    out = tmp_path / "run"
    common = ["--env", CARTPOLE, "--output-dir", str(out), "--eval-episodes", "2"]
    imitate_cli.main(["expert", *common, "--expert-steps", "256", "--allow-weak-expert"])
    imitate_cli.main(["demos", *common, "--n-episodes", "2", "--allow-weak-expert"])
    imitate_cli.main(["bc", *common, "--bc-batches", "20", "--n-episodes", "1"])
    # Fewer steps than one default generator round is an error, and nothing is written for it.
    with pytest.raises(SystemExit):
        imitate_cli.main(["gail", *common, "--gail-steps", "100"])
    assert "at least one round" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["bc_policy.zip", "demos", "expert.zip", "summary.json"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["env_id"] == CARTPOLE and set(summary) == {"env_id", "expert", "demos", "bc"}
    assert summary["demos"]["n_episodes"] == 2 and summary["bc"]["n_demo_episodes"] == 1
    assert summary["bc"]["n_batches"] == 20 and summary["bc"]["net_arch"] == [64, 64]  # Discrete: bc_defaults' layers
    assert summary["bc"]["expert_return_source"].endswith("expert.zip")
    assert {"mean_return", "random_return", "expert_return", "normalised_score"} <= set(summary["bc"])
    assert isinstance(PPO.load(out / "bc_policy.zip"), PPO) and isinstance(load_model(out / "expert.zip"), PPO)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no staging folders left


def test_cli_errors_leave_nothing(tmp_path, capsys, cartpole_demos):
    out = tmp_path / "run"
    common = ["--env", CARTPOLE, "--output-dir", str(out)]
    with pytest.raises(SystemExit) as exit_info:
        imitate_cli.main(["demos", *common])
    assert exit_info.value.code == 2 and "No expert at" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        imitate_cli.main(["bc", *common])
    assert "No demonstrations at" in capsys.readouterr().err
    # Demonstrations of another task: refused, and the existing folder is left as it was.
    save_demos(cartpole_demos, out / "demos")
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(SystemExit):
        imitate_cli.main(["bc", "--env", PENDULUM, "--output-dir", str(out), "--demos", str(out / "demos")])
    assert "observations have shape" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        imitate_cli.main(["demos", "--env", "CartPole-v1", "--output-dir", str(tmp_path / "v1"),
                          "--expert", str(tmp_path / "missing.zip")])
    assert "No expert at" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_cli_variable_horizon_message(tmp_path, capsys):
    expert = untrained("CartPole-v1")
    expert.save(tmp_path / "expert.zip")
    with pytest.raises(SystemExit):
        imitate_cli.main(["demos", "--env", "CartPole-v1", "--output-dir", str(tmp_path / "v1"),
                          "--expert", str(tmp_path / "expert.zip")])
    err = capsys.readouterr().err
    assert "variable horizon" in err and "--allow-variable-horizon" in err
    assert not (tmp_path / "v1").exists()


def test_expert_below_its_level_is_retrained_then_refused():
    """An expert is evaluated after each round and trains again while below the level; never silently weak."""
    # 256 PPO steps already balance seals' CartPole for 500 steps from the evaluation seeds: a level
    # above the maximum makes every round miss.
    missed = r"after 512 env steps \(2 rounds of 256\), below the expert level 501"
    with pytest.raises(ExpertBelowLevelError, match=missed) as error:
        train_expert(CARTPOLE, timesteps=256, min_return=501, max_rounds=2, eval_episodes=2)
    assert "mean return of" in str(error.value)
    one_round = train_expert(CARTPOLE, timesteps=256, min_return="auto", max_rounds=2, eval_episodes=2)
    with pytest.warns(UserWarning, match="below the expert level 501"):
        two_rounds = train_expert(CARTPOLE, timesteps=256, min_return=501, max_rounds=2, eval_episodes=2, on_miss="warn")
    assert two_rounds.num_timesteps >= 2 * one_round.num_timesteps  # the second round trained the same model further
    unchecked = train_expert(CARTPOLE, timesteps=256, min_return=None)
    assert unchecked.num_timesteps == one_round.num_timesteps
    with pytest.raises(ValueError, match="min_return must be"):
        train_expert(CARTPOLE, timesteps=256, min_return="high")


def test_cli_refuses_a_weak_expert_and_weak_demos(tmp_path, capsys):
    out = tmp_path / "run"
    common = ["--env", CARTPOLE, "--output-dir", str(out), "--eval-episodes", "2"]
    with pytest.raises(SystemExit) as exit_info:
        imitate_cli.main(["expert", *common, "--expert-steps", "256", "--max-rounds", "1", "--min-return", "501"])
    assert exit_info.value.code == 2 and "below the expert level 501" in capsys.readouterr().err
    assert not out.exists()  # nothing written for a refused expert
    imitate_cli.main(["expert", *common, "--expert-steps", "256", "--min-return", "none"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["expert"]["expert_level"] is None and summary["expert"]["expert_level_met"] is None
    # Demonstrations of an untrained Pendulum expert (about -1,200) are below its level -200.
    weak = tmp_path / "weak.zip"
    untrained(PENDULUM, SAC).save(weak)
    pendulum = ["--env", PENDULUM, "--output-dir", str(tmp_path / "pendulum"), "--expert", str(weak), "--n-episodes", "2"]
    with pytest.raises(SystemExit):
        imitate_cli.main(["demos", *pendulum])
    assert "below the expert level -200" in capsys.readouterr().err and not (tmp_path / "pendulum").exists()
    imitate_cli.main(["demos", *pendulum, "--allow-weak-expert"])
    assert json.loads((tmp_path / "pendulum" / "summary.json").read_text())["demos"]["expert_level"] == -200.0
    with pytest.raises(SystemExit):
        imitate_cli.main(["expert", *common, "--min-return", "high"])
    assert "expected 'auto', 'none' or a number" in capsys.readouterr().err


def test_gail_progress_per_round(tmp_path, capsys, pendulum_demos):
    """GAIL records each round's discriminator and generator statistics and the true return on the SB3 logger."""
    gen = dict(TINY_GAIL, n_steps=256)  # 2 envs x 256 steps: one 200-step episode ends in each env per round
    rounds = []
    train_gail(pendulum_demos, PENDULUM, timesteps=1024, seed=0, gen_kwargs=gen, disc_kwargs=TINY_DISC,
               log_dir=tmp_path / "log", callback=rounds.append, verbose=1, bc_pretrain_batches=0)
    assert rounds == [0, 1]
    table = capsys.readouterr().out
    assert "acc_expert" in table and "ep_rew_mean" in table
    import pandas as pd

    progress = pd.read_csv(tmp_path / "log" / "progress.csv")
    assert progress["time/round"].tolist() == [1, 2] and progress["time/total_timesteps"].tolist() == [512, 1024]
    assert progress["rollout/n_episodes"].tolist() == [2, 2]
    # The true Pendulum return (rewards in [-16.3, 0] per step), not the discriminator's reward.
    assert ((progress["rollout/ep_rew_mean"] < -10) & (progress["rollout/ep_rew_mean"] > -16.3 * 200)).all()
    for key in ("disc/acc_expert", "disc/acc_gen", "disc/acc"):
        assert progress[key].between(0, 1).all()
    assert (progress["disc/loss"] > 0).all() and progress["gen/value_loss"].notna().all()
    # imitation's own logs go beside it, not over it.
    assert (tmp_path / "log" / "imitation" / "progress.csv").is_file()
    train_gail(pendulum_demos, PENDULUM, timesteps=512, seed=0, gen_kwargs=gen, disc_kwargs=TINY_DISC,
               bc_pretrain_batches=0)
    assert capsys.readouterr().out == ""  # verbose=0 and no log_dir: quiet


def test_gail_config_for():
    direct = {"disc": {"n_disc_updates_per_round": 2}}
    assert gail_config_for(direct, PENDULUM) == {"gen": {}, "disc": {"n_disc_updates_per_round": 2}}
    keyed = {PENDULUM: {"gen": {"n_envs": 2}}, CARTPOLE: direct}
    assert gail_config_for(keyed, PENDULUM) == {"gen": {"n_envs": 2}, "disc": {}}
    assert gail_config_for(keyed, "CartPole-v1") == {"gen": {}, "disc": {}}
    with pytest.raises(ImitationError, match="unknown keys"):
        gail_config_for({PENDULUM: {"generator": {}}}, PENDULUM)
    repo_config = json.loads((Path(__file__).parent.parent / "benchmarks/configs/imitation_gail.json").read_text())
    assert gail_config_for(repo_config, PENDULUM)["disc"]["n_disc_updates_per_round"] == 4


def test_cli_gail_knobs_and_progress(tmp_path, capsys, cartpole_demos):
    out = tmp_path / "run"
    save_demos(cartpole_demos, out / "demos")
    config = tmp_path / "gail.json"
    config.write_text(json.dumps({CARTPOLE: {"gen": TINY_GAIL, "disc": TINY_DISC}}))
    common = ["--env", CARTPOLE, "--output-dir", str(out), "--eval-episodes", "1"]
    imitate_cli.main(["gail", *common, "--gail-steps", "256", "--gail-config", str(config),
                      "--n-disc-updates-per-round", "2", "--disc-lr", "1e-4", "--verbose", "0"])
    entry = json.loads((out / "summary.json").read_text())["gail"]
    assert entry["gail_overrides"]["disc"] == {**TINY_DISC, "n_disc_updates_per_round": 2, "disc_opt_kwargs": {"lr": 1e-4}}
    assert entry["gail_overrides"]["gen"] == TINY_GAIL and entry["progress"] == "gail_log/progress.csv"
    assert entry["bc_pretrain_batches"] == 0  # the Discrete default
    assert len((out / "gail_log" / "progress.csv").read_text().strip().splitlines()) == 1 + 2  # header, 2 rounds
    with pytest.raises(SystemExit):
        imitate_cli.main(["gail", *common, "--gail-config", str(tmp_path / "missing.json")])
    assert "No GAIL config at" in capsys.readouterr().err
