"""PETS over Discrete actions (issue 16): one-hot actions into the model, a categorical CEM plans."""
import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

from sb3_mbrl import PETS
from sb3_mbrl.common.buffers import replay_buffer_transitions
from sb3_mbrl.envs.terminations import cartpole_termination
from test_pets import TINY as PETS_TEST_TINY

# test_pets.py's tiny settings, with the default refit schedule.
TINY = {key: value for key, value in PETS_TEST_TINY.items() if key != "model_train_freq"}


def tiny_pets(env="CartPole-v1", **kwargs):
    return PETS("MlpPolicy", env, seed=0, **{**TINY, **kwargs})


@pytest.fixture(autouse=True)
def one_thread():
    previous = th.get_num_threads()
    th.set_num_threads(1)
    yield
    th.set_num_threads(previous)


def test_discrete_actions_enter_the_model_one_hot_and_come_out_as_indices():
    model = tiny_pets()
    assert model.dynamics.action_dim == 2  # Discrete(2): one-hot
    assert model.policy.model_env.termination_fn is cartpole_termination  # known by env id
    model.learn(120)
    assert model.num_timesteps == 120 and bool(model.policy.fitted)
    obs, actions, _, _ = replay_buffer_transitions(model.replay_buffer, model.policy, model.device)
    assert actions.shape == (120, 2) and th.equal(actions.sum(dim=1), th.ones(120))
    stored = model.replay_buffer.actions[:120, 0, 0].astype(int)
    np.testing.assert_array_equal(actions.argmax(dim=1).numpy(), stored)
    action, _ = model.predict(np.zeros(4, np.float32), deterministic=True)
    assert action.shape == () and action in (0, 1)
    actions, _ = model.predict(np.zeros((3, 4), np.float32))
    assert actions.shape == (3,) and set(actions.tolist()) <= {0, 1}


def test_planner_choice_for_discrete_actions():
    for name in ("icem", "mppi"):
        with pytest.raises(ValueError, match="continuous actions only.*'cem' or 'random'"):
            tiny_pets(planner=name)
    model = tiny_pets(planner="random", planner_kwargs=dict(population_size=32))
    model.learn(80)
    assert bool(model.policy.fitted)


def test_deterministic_predict_save_load_and_two_envs(tmp_path):
    model = tiny_pets(make_vec_env("CartPole-v1", n_envs=2, seed=0))
    model.learn(160)
    assert model.num_timesteps == 160 and model.replay_buffer.size() == 80
    obs = np.array([[0.01, 0.2, -0.03, -0.1], [0.0, -0.1, 0.05, 0.3]], np.float32)
    start = np.array([True, True])
    first = model.predict(obs, episode_start=start, deterministic=True)[0]
    np.testing.assert_array_equal(first, model.predict(obs, episode_start=start, deterministic=True)[0])
    model.save(tmp_path / "pets_cartpole")
    loaded = PETS.load(tmp_path / "pets_cartpole")
    np.testing.assert_array_equal(loaded.predict(obs, episode_start=start, deterministic=True)[0], first)


def test_pets_balances_cartpole_after_a_few_hundred_steps():
    """A learning test: a broken model fit or planner stays near the random policy's ~20 steps."""
    model = PETS("MlpPolicy", "CartPole-v1", seed=0, learning_starts=100, horizon=15, num_particles=2,
                 planner_kwargs=dict(population_size=100, num_elites=10, iterations=3),
                 model_net_arch=[64, 64], ensemble_size=3, model_train_freq=100,
                 model_epochs=300)  # uncapped, CartPole's exact dynamics keep fits improving for ~4,000 epochs
    model.learn(400)
    env = Monitor(gym.make("CartPole-v1", max_episode_steps=200))  # 200 of 200 here; 2 epochs of fitting: 20, 15
    env.reset(seed=100)
    mean, _ = evaluate_policy(model, env, n_eval_episodes=2, deterministic=True)
    random_env = Monitor(gym.make("CartPole-v1"))
    random_env.reset(seed=100)
    random_env.action_space.seed(0)
    random_returns = []
    for _ in range(10):
        done, total = False, 0.0
        random_env.reset()
        while not done:
            _, reward, terminated, truncated, _ = random_env.step(random_env.action_space.sample())
            total, done = total + reward, terminated or truncated
        random_returns.append(total)
    assert np.mean(random_returns) < 40
    assert mean >= 150, mean


def test_search_space_samples_discrete_planners_for_discrete_envs():
    import optuna

    from sb3_mbrl.zoo import search, search_spaces

    assert search._has_discrete_actions("CartPole-v1") and not search._has_discrete_actions("Pendulum-v1")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    search_spaces.set_pets_discrete_actions(True)
    try:
        planners = set()
        for _ in range(12):
            params = search_spaces.sample_pets_params(study.ask(), 0, 1, {})
            planners.add(params["planner"])
            PETS("MlpPolicy", "CartPole-v1", **params)  # every sampled setting builds for Discrete actions
        assert planners == {"cem", "random"}
    finally:
        search_spaces.set_pets_discrete_actions(False)
    continuous_study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))  # one space per study
    params = search_spaces.sample_pets_params(continuous_study.ask(), 0, 1, {})
    assert params["planner"] in ("cem", "icem")


def test_cli_trains_and_enjoys_pets_on_cartpole(tmp_path):
    import subprocess
    import sys

    train = [sys.executable, "-m", "sb3_mbrl", "train", "--algo", "pets", "--env", "CartPole-v1", "-n", "150", "-f", "logs",
             "--seed", "0", "--eval-freq", "-1", "--hyperparams", "horizon:5", "learning_starts:100", "model_train_freq:100",
             "model_epochs:100"]
    result = subprocess.run(train, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    saved = tmp_path / "logs" / "pets" / "CartPole-v1_1" / "CartPole-v1.zip"
    model = PETS.load(saved)
    assert model.planner == "cem" and model.dynamics.action_dim == 2  # the zoo entry, one-hot actions
    enjoy = [sys.executable, "-m", "sb3_mbrl", "enjoy", "--algo", "pets", "--env", "CartPole-v1", "-f", "logs", "-n", "30",
             "--no-render"]
    result = subprocess.run(enjoy, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
