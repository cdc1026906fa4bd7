"""Issue 11: every SB3 path of PETS and MBPO either works right or refuses clearly.

Each test here failed on the code before the fix it names.
"""
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from sb3_mbrl import MBPO, PETS
from test_mbpo import TINY as MBPO_TINY
from test_pets import TINY as PETS_TEST_TINY
from test_pets import NaNAfter

PAPER_WEIGHT_DECAYS = (2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4)  # MBPO paper, 4 hidden layers + output

# The tiny settings of tests/test_pets.py and tests/test_mbpo.py; PETS keeps its default refit schedule here.
PETS_TINY = {key: value for key, value in PETS_TEST_TINY.items() if key != "model_train_freq"}


def tiny_pets(env="Pendulum-v1", **kwargs):
    return PETS("MlpPolicy", env, seed=0, **{**PETS_TINY, **kwargs})


def tiny_mbpo(env="Pendulum-v1", **kwargs):
    return MBPO("MlpPolicy", env, seed=0, **{**MBPO_TINY, **kwargs})


def record_fits(model):
    """Wrap the model-fit method to record the real-buffer size at every fit."""
    sizes = []
    name = "fit_model" if isinstance(model, PETS) else "train_model_and_rollout"
    original = getattr(model, name)

    def spy(*args, **kwargs):
        sizes.append(model.replay_buffer.size() * model.n_envs)
        return original(*args, **kwargs)

    setattr(model, name, spy)
    return sizes


# ---------------------------------------------------------------- 1. PETS with several envs, exact step counts
def test_pets_two_envs_with_default_schedule_refits_after_every_episode():
    """Defaults (model_train_freq=(1, "episode")) with 2 envs: no SB3 assertion, one refit per episode end."""
    model = tiny_pets(make_vec_env("Pendulum-v1", n_envs=2, seed=0))
    assert model.model_train_freq == (1, "episode")
    fits = record_fits(model)
    model.learn(800)  # 400 steps per env: both envs end episodes at 200 and 400
    assert model.num_timesteps == 800
    assert fits == [50, 400, 800]  # first fit at learning_starts, then after each pair of episode ends


def test_pets_learn_runs_exactly_the_requested_steps():
    env = gym.make("Pendulum-v1", max_episode_steps=100)
    model = tiny_pets(env, learning_starts=20)
    model.learn(64)
    assert model.num_timesteps == 64 and model.replay_buffer.size() == 64
    model.learn(30, reset_num_timesteps=False)
    assert model.num_timesteps == 94


def test_pets_step_schedule_counts_steps_over_envs():
    model = tiny_pets(make_vec_env("Pendulum-v1", n_envs=2, seed=0), model_train_freq=100)
    fits = record_fits(model)
    model.learn(300)
    assert fits == [50, 150, 250]
    with pytest.raises(ValueError, match="model_train_freq"):
        tiny_pets(model_train_freq=(2, "epoch"))


# ---------------------------------------------------------------- 2. MBPO refits on a second learn() and after loading
def test_mbpo_second_learn_refits_and_keeps_the_rollout_schedule():
    model = tiny_mbpo(rollout_length=(0, 2, 1, 3))
    lengths = []
    original = model.branched_rollouts
    model.branched_rollouts = lambda obs, length: lengths.append(length) or original(obs, length)
    fits = record_fits(model)
    model.learn(300)
    assert len(fits) == 2 and lengths[-1] == 3  # epoch 2 of 100 steps: full length
    model.learn(250, reset_num_timesteps=True)  # learning_starts again, then refits on schedule
    assert len(fits) == 4, fits  # the old code waited until num_timesteps passed 200 again
    assert lengths[-2:] == [3, 3]  # the schedule does not restart with num_timesteps
    assert model.model_buffer.size > 0


def test_mbpo_load_replay_buffer_refits_before_the_next_update(tmp_path):
    model = tiny_mbpo()
    model.learn(250)
    model.save_replay_buffer(tmp_path / "buffer")
    fits = record_fits(model)
    model.load_replay_buffer(tmp_path / "buffer")
    assert model.model_buffer.size == 0
    model.learn(2, reset_num_timesteps=False)
    assert fits == [251]  # refitted on the loaded data at the first update
    assert model.model_buffer.size > 0


def test_mbpo_after_load_first_refit_waits_for_model_train_freq_new_steps(tmp_path):
    model = tiny_mbpo()
    model.learn(250)
    model.save(tmp_path / "mbpo")
    loaded = MBPO.load(tmp_path / "mbpo", env=make_vec_env("Pendulum-v1", n_envs=1, seed=1))
    fits = record_fits(loaded)
    loaded.learn(120, reset_num_timesteps=False)  # training continues at step 251: updates from the start
    assert fits == [100]  # the old code refitted on the first 5 transitions
    loaded = MBPO.load(tmp_path / "mbpo", env=make_vec_env("Pendulum-v1", n_envs=1, seed=1))
    fits = record_fits(loaded)
    loaded.learn(250)  # reset: learning_starts (100) again; each refit has 100 new steps
    assert fits == [101, 201]


# ---------------------------------------------------------------- 3. VecNormalize is refused clearly
@pytest.mark.parametrize("make", [tiny_pets, tiny_mbpo])
def test_vec_normalize_is_refused_at_construction_and_set_env(make):
    normalized = VecNormalize(make_vec_env("Pendulum-v1", n_envs=1))
    with pytest.raises(ValueError, match="does not support VecNormalize.*normalize: true"):
        make(normalized)
    model = make()
    with pytest.raises(ValueError, match="does not support VecNormalize"):
        model.set_env(VecNormalize(make_vec_env("Pendulum-v1", n_envs=1)))


@pytest.mark.parametrize("algo", ["pets", "mbpo"])
def test_vec_normalize_is_refused_through_the_cli(tmp_path, algo):
    """rl-zoo's ``normalize: true`` wraps the env in VecNormalize before the model is built."""
    result = subprocess.run(
        [sys.executable, "-m", "sb3_mbrl", "train", "--algo", algo, "--env", "Pendulum-v1", "-n", "50",
         "-f", "logs", "--hyperparams", "normalize:True", "--eval-freq", "-1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode != 0
    assert f"{algo.upper()} does not support VecNormalize" in result.stderr


# ---------------------------------------------------------------- 4. MBPO weight decay follows the architecture
def test_mbpo_weight_decays_follow_the_architecture():
    def decays(model):
        return [layer.weight_decay for layer in [*model.dynamics.hidden_layers, model.dynamics.output_layer]]

    assert decays(tiny_mbpo(model_net_arch=[200, 200, 200, 200])) == pytest.approx(list(PAPER_WEIGHT_DECAYS))
    three = decays(tiny_mbpo(model_net_arch=[32, 32]))
    assert len(three) == 3 and three[0] == pytest.approx(2.5e-5) and three[-1] == pytest.approx(1e-4)
    assert all(d > 0 for d in three)
    assert decays(tiny_mbpo(model_weight_decays=None)) == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="model_weight_decays has 5 entries.*3 layers"):
        tiny_mbpo(model_net_arch=[32, 32], model_weight_decays=PAPER_WEIGHT_DECAYS)


# ---------------------------------------------------------------- 5. PETS predict(deterministic=True)
def test_pets_deterministic_predict_is_repeatable_and_survives_save_load(tmp_path):
    model = tiny_pets()
    model.learn(120)
    obs = np.array([[0.3, -0.95, 0.5]], dtype=np.float32)
    start = np.array([True])
    first = model.predict(obs, episode_start=start, deterministic=True)[0]
    th.rand(3)  # the global random state moved on: no effect on deterministic planning
    second = model.predict(obs, episode_start=start, deterministic=True)[0]
    np.testing.assert_array_equal(first, second)
    random_actions = {float(model.predict(obs, episode_start=start)[0][0, 0]) for _ in range(3)}
    assert len(random_actions) > 1  # deterministic=False still explores

    def evaluate(algo):
        env = Monitor(gym.make("Pendulum-v1"))
        env.reset(seed=3)
        return evaluate_policy(algo, env, n_eval_episodes=1, deterministic=True)[0]

    assert evaluate(model) == evaluate(model)
    model.save(tmp_path / "pets")
    loaded = PETS.load(tmp_path / "pets")
    np.testing.assert_array_equal(loaded.predict(obs, episode_start=start, deterministic=True)[0], first)
    assert evaluate(loaded) == evaluate(model)


# ---------------------------------------------------------------- 8. learning-rate schedules take effect
def test_pets_learning_rate_schedule_updates_the_model_optimizer():
    model = tiny_pets(model_learning_rate=lambda progress: 1e-3 * progress, model_train_freq=50)
    rates = []
    fit = model.fit_model

    def fit_and_record():
        fit()
        rates.append((model.num_timesteps, model.policy.optimizer.param_groups[0]["lr"]))

    model.fit_model = fit_and_record
    model.learn(200)
    # fits at steps 50, 100, 150, 200 with the schedule's value at the progress of each
    assert [step for step, _ in rates] == [50, 100, 150, 200]
    for step, lr in rates:
        assert lr == pytest.approx(1e-3 * (1 - step / 200), abs=1e-5)


def test_mbpo_model_learning_rate_accepts_a_schedule():
    model = tiny_mbpo(model_learning_rate=lambda progress: 1e-3 * progress)
    model.learn(300)
    assert model.dynamics_optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * (1 - 200 / 300), rel=0.02)
    assert tiny_mbpo(model_learning_rate=5e-4).dynamics_optimizer.param_groups[0]["lr"] == 5e-4


# ---------------------------------------------------------------- bad input
class DictObsEnv(gym.Env):
    observation_space = spaces.Dict({"x": spaces.Box(-1, 1, (2,))})
    action_space = spaces.Box(-1, 1, (1,))

    def reset(self, seed=None, options=None):
        return {"x": np.zeros(2, np.float32)}, {}

    def step(self, action):
        return {"x": np.zeros(2, np.float32)}, 0.0, False, False, {}


class ImageObsEnv(gym.Env):
    observation_space = spaces.Box(0, 255, (3, 16, 16), dtype=np.uint8)
    action_space = spaces.Box(-1, 1, (1,))

    def reset(self, seed=None, options=None):
        return np.zeros((3, 16, 16), np.uint8), {}

    def step(self, action):
        return np.zeros((3, 16, 16), np.uint8), 0.0, False, False, {}


@pytest.mark.parametrize("algo", [PETS, MBPO])
def test_dict_and_image_observations_are_refused_at_construction(algo):
    with pytest.raises(ValueError, match="needs a Box observation space.*Dict"):
        algo("MlpPolicy", DictObsEnv())
    with pytest.raises(ValueError, match="image observations"):
        algo("MlpPolicy", ImageObsEnv())


@pytest.mark.parametrize("make", [tiny_pets, tiny_mbpo])
def test_set_env_with_another_observation_shape_is_refused(make):
    model = make()
    other = DummyVecEnv([lambda: gym.make("InvertedPendulum-v4")])
    with pytest.raises(ValueError, match="Observation spaces do not match"):
        model.set_env(other)


@pytest.mark.parametrize(
    "reward_fn, termination_fn, message",
    [
        (lambda o, a, n: -(n**2).sum(dim=1, keepdim=True), None, r"reward_fn .* shape \(\d+,\).*returned Tensor \(\d+, 1\)"),
        (lambda o, a, n: (n[:, 0] > 0).long().numpy(), None, r"reward_fn .*returned ndarray"),
        (lambda o, a, n: -(n**2).sum(dim=1), lambda o, a, n: n[:, :1] > 9, r"termination_fn .*bool.*returned Tensor \(\d+, 1\)"),
        (lambda o, a, n: -(n**2).sum(dim=1), lambda o, a, n: n[:, 0] * 0.0, r"termination_fn .*torch.float32"),
    ],
)
def test_transition_functions_with_wrong_outputs_are_refused_on_first_use(reward_fn, termination_fn, message):
    model = tiny_pets(reward_fn=reward_fn, termination_fn=termination_fn)
    with pytest.raises(ValueError, match=message):
        model.learn(60)


@pytest.mark.parametrize("make", [tiny_pets, tiny_mbpo])
def test_nan_from_the_env_mid_episode_keeps_the_buffer_saveable(make, tmp_path):
    model = make(NaNAfter(gym.make("Pendulum-v1"), steps=70))
    with pytest.raises(ValueError, match="NaN or inf observations at env step 70"):
        model.learn(150)
    model.save_replay_buffer(tmp_path / "buffer")
    other = make()
    other.load_replay_buffer(tmp_path / "buffer")
    assert other.replay_buffer.size() == 69
    assert np.isfinite(other.replay_buffer.observations[:69]).all()
    np.testing.assert_array_equal(other.replay_buffer.observations[:69], model.replay_buffer.observations[:69])
