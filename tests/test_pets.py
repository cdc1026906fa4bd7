"""PETS as an SB3 algorithm."""
import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.callbacks import (
    BaseCallback,
    CallbackList,
    CheckpointCallback,
    EvalCallback,
    StopTrainingOnRewardThreshold,
)
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import KVWriter, Logger

from sb3_mbrl import PETS
from sb3_mbrl.dynamics import inference
from sb3_mbrl.envs.rewards import pendulum_reward

TINY = dict(
    learning_starts=50,
    model_train_freq=50,
    ensemble_size=3,
    horizon=5,
    num_particles=2,
    planner_kwargs=dict(population_size=16, num_elites=4, iterations=2),
    model_epochs=3,
    model_net_arch=[32, 32],
)


def tiny_pets(env="Pendulum-v1", **kwargs):
    settings = {**TINY, **kwargs}
    return PETS("MlpPolicy", env, seed=0, **settings)


class CaptureKeys(KVWriter):
    def __init__(self):
        self.records = []

    def write(self, key_values, key_excluded, step=0):
        self.records.append(dict(key_values))

    def close(self):
        pass


class NaNAfter(gym.Wrapper):
    def __init__(self, env, steps):
        super().__init__(env)
        self.steps, self.count = steps, 0

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.count += 1
        if self.count >= self.steps:
            obs = obs * np.nan
        return obs, reward, terminated, truncated, info


class ConstantDim(gym.ObservationWrapper):
    """Adds an observation dimension that never changes."""

    def __init__(self, env):
        super().__init__(env)
        low, high = env.observation_space.low, env.observation_space.high
        self.observation_space = spaces.Box(np.append(low, 0.0), np.append(high, 10.0), dtype=np.float32)

    def observation(self, obs):
        return np.append(obs, 3.0).astype(np.float32)


class BoxActionDiscreteObs(gym.Env):
    observation_space = spaces.Discrete(3)
    action_space = spaces.Box(-1, 1, (1,))

    def reset(self, seed=None, options=None):
        return 0, {}

    def step(self, action):
        return 0, 0.0, False, False, {}


def test_learn_logs_and_predicts():
    model = tiny_pets(verbose=0)
    capture = CaptureKeys()
    model.set_logger(Logger(None, [capture]))
    model.learn(total_timesteps=400)
    assert model.num_timesteps == 400 and model.replay_buffer.size() == 400
    assert bool(model.policy.fitted)
    keys = set().union(*capture.records)
    for key in ("rollout/ep_rew_mean", "train/model_loss", "train/model_holdout_mse", "time/planning_ms"):
        assert key in keys, key
    assert not model.dynamics.learn_reward  # Pendulum's known reward replaced the head
    action, _ = model.predict(np.zeros(3, dtype=np.float32))
    assert action.shape == (1,) and -2 <= action[0] <= 2
    mean, _ = evaluate_policy(model, gym.make("Pendulum-v1"), n_eval_episodes=1)
    assert np.isfinite(mean)


def test_reward_and_termination_lookup():
    assert tiny_pets(reward_fn=None).dynamics.learn_reward
    assert tiny_pets(reward_fn=pendulum_reward).policy.model_env.reward_fn is pendulum_reward
    model = tiny_pets("InvertedPendulum-v4")
    assert model.policy.model_env.termination_fn is not None
    with pytest.warns(UserWarning, match="termination"):
        tiny_pets("InvertedPendulum-v4", termination_fn=None)
    with pytest.raises(ValueError, match="reward_fn"):
        tiny_pets(reward_fn="pendulum")


def test_refuses_multidiscrete_actions_and_non_box_observations():
    class MultiDiscreteEnv(BoxActionDiscreteObs):
        observation_space = spaces.Box(-1, 1, (2,))
        action_space = spaces.MultiDiscrete([2, 3])

        def reset(self, seed=None, options=None):
            return np.zeros(2, np.float32), {}

    with pytest.raises(ValueError, match="PETS.*MultiDiscrete"):
        PETS("MlpPolicy", MultiDiscreteEnv())
    with pytest.raises(ValueError, match="PETS.*Box observation.*Discrete"):
        PETS("MlpPolicy", BoxActionDiscreteObs())


def test_nan_observation_stops_training():
    env = NaNAfter(gym.make("Pendulum-v1"), steps=30)
    model = tiny_pets(env)
    with pytest.raises(ValueError, match="NaN or inf observations at env step"):
        model.learn(100)
    assert model.replay_buffer.size() == 29  # nothing non-finite reached the buffer


def test_constant_observation_dimension_is_fine():
    model = tiny_pets(ConstantDim(gym.make("Pendulum-v1")), reward_fn=None)
    model.learn(150)
    assert th.isfinite(model.dynamics.input_std).all()
    assert model.dynamics.input_std[0, 3] == 1.0
    assert np.isfinite(model.predict(np.array([1, 0, 0, 3], np.float32))[0]).all()


def test_save_load_plans_identically(tmp_path):
    model = tiny_pets()
    model.learn(200)
    model.save(tmp_path / "pets")
    loaded = PETS.load(tmp_path / "pets")
    for key, value in model.policy.state_dict().items():
        th.testing.assert_close(loaded.policy.state_dict()[key], value, msg=key)
    assert loaded.horizon == model.horizon and loaded.planner_kwargs == model.planner_kwargs
    obs = np.array([[0.3, -0.95, 0.5]], dtype=np.float32)
    actions = []
    for algo in (model, loaded):
        th.manual_seed(7)
        actions.append(algo.predict(obs, episode_start=np.array([True]))[0])
    np.testing.assert_array_equal(actions[0], actions[1])
    # The model optimizer state is saved too, so fitting continues where it was.
    assert loaded.policy.optimizer.state_dict()["state"].keys() == model.policy.optimizer.state_dict()["state"].keys()


def test_replay_buffer_round_trip_and_continued_learning(tmp_path):
    model = tiny_pets()
    model.learn(150)
    model.save_replay_buffer(tmp_path / "buffer")
    other = tiny_pets()
    assert other.load_replay_buffer(tmp_path / "buffer") is None  # SB3's contract: it loads in place
    assert other.replay_buffer.size() == 150
    for name in ("observations", "next_observations", "actions", "rewards", "dones"):
        np.testing.assert_array_equal(getattr(other.replay_buffer, name)[:150], getattr(model.replay_buffer, name)[:150])
    # The first fit (after learning_starts, as in SB3) uses the loaded data too.
    other.learn(60, reset_num_timesteps=False)
    assert bool(other.policy.fitted) and other.replay_buffer.size() == 210
    assert other._n_updates >= 1 and bool((other.dynamics.input_mean != 0).any())  # normaliser fitted
    model.learn(100, reset_num_timesteps=False)
    assert model.num_timesteps == 250 and model.replay_buffer.size() == 250


def test_seeded_runs_are_repeatable():
    buffers = []
    for _ in range(2):
        model = tiny_pets()
        model.learn(150)
        buffers.append(model.replay_buffer.actions[:150].copy())
    np.testing.assert_array_equal(buffers[0], buffers[1])


def test_warm_start_shifts_previous_plan():
    model = tiny_pets()
    model.learn(100)
    policy = model.policy
    calls = []
    planner = policy.receding_horizon.planner
    original = planner.optimize

    def spy(objective, initial_mean=None, n_starts=1, **kwargs):
        plan = original(objective, initial_mean, n_starts, **kwargs)
        calls.append((initial_mean.clone(), plan.clone()))
        return plan

    planner.optimize = spy
    obs = np.zeros((1, 3), dtype=np.float32)
    model.predict(obs, episode_start=np.array([True]))
    model.predict(obs, episode_start=np.array([False]))
    (first_init, first_plan), (second_init, _) = calls
    assert th.equal(first_init, th.zeros_like(first_init))  # fresh episode: middle of the box
    th.testing.assert_close(second_init[:, :-1], first_plan[:, 1:])
    model.predict(obs, episode_start=np.array([True]))
    assert th.equal(calls[2][0], th.zeros_like(first_init))


def test_evaluation_does_not_disturb_the_training_warm_start():
    model = tiny_pets()
    model.learn(60)
    policy = model.policy
    policy.use_plan_slot("collect")
    collect_plan = policy.receding_horizon.plan.clone()
    policy.use_plan_slot("predict")
    evaluate_policy(model, gym.make("Pendulum-v1"), n_eval_episodes=1)
    assert policy.receding_horizon.plan is not None  # evaluation planned in its own slot
    policy.use_plan_slot("collect")
    assert th.equal(policy.receding_horizon.plan, collect_plan)
    policy.use_plan_slot("predict")


def test_vec_env_with_two_envs_and_per_env_reset():
    env = make_vec_env("Pendulum-v1", n_envs=2, seed=0)
    model = tiny_pets(env)
    model.learn(200)
    assert model.replay_buffer.size() == 100  # 100 steps x 2 envs
    actions, _ = model.predict(np.zeros((2, 3), np.float32))
    assert actions.shape == (2, 1)
    before = model.policy.receding_horizon.plan.clone()
    model.policy.reset_plans(np.array([True, False]))
    assert th.equal(model.policy.receding_horizon.plan[0], th.zeros_like(before[0]))
    assert th.equal(model.policy.receding_horizon.plan[1], before[1])


def test_callbacks_fire_and_can_stop(tmp_path):
    class StopAt(BaseCallback):
        def _on_step(self):
            return self.num_timesteps < 75

    model = tiny_pets()
    model.learn(1000, callback=StopAt())
    assert model.num_timesteps == 75

    eval_env = gym.make("Pendulum-v1")
    stop = StopTrainingOnRewardThreshold(reward_threshold=-1e9, verbose=0)
    eval_cb = EvalCallback(eval_env, callback_on_new_best=stop, eval_freq=70, n_eval_episodes=1, verbose=0)
    checkpoint = CheckpointCallback(save_freq=70, save_path=str(tmp_path), name_prefix="pets")
    model = tiny_pets()
    model.learn(1000, callback=CallbackList([checkpoint, eval_cb]))
    assert model.num_timesteps == 70
    assert eval_cb.last_mean_reward > -1e9
    assert (tmp_path / "pets_70_steps.zip").is_file()


@pytest.mark.parametrize("planner", ["icem", "mppi", "random"])
@pytest.mark.parametrize("propagation", ["random_model", "expectation"])
def test_planners_and_propagations_beat_random_action_sequences(planner, propagation):
    """
    The plan of predict(deterministic=True) scores a higher model return (known Pendulum reward over the
    fitted ensemble, under the policy's propagation) than uniform random action sequences of the same length.
    """
    # MPPI's temperature is in units of return: the returns of 10-step candidates here differ by ~0.1-1,
    # so its default (1.0) would weight the candidates almost uniformly.
    kwargs = {
        "icem": dict(population_size=32, num_elites=4, iterations=3),
        "mppi": dict(population_size=32, iterations=3, temperature=0.02),
        "random": dict(population_size=32, iterations=3),
    }[planner]
    model = tiny_pets(planner=planner, propagation=propagation, planner_kwargs=kwargs, reward_fn="auto",
                      horizon=10, num_particles=10, learning_starts=200)
    model.learn(201)  # 200 random steps, one fit, one planned step
    policy, model_env = model.policy, model.policy.model_env
    assert bool(policy.fitted) and model_env.propagation == propagation and model_env.reward_fn is not None
    theta, theta_dot = np.array([0.5, -1.0, 2.5, 3.0]), np.array([-3.0, 4.0, 0.0, 1.0])
    obs = np.stack([np.cos(theta), np.sin(theta), theta_dot], axis=1).astype(np.float32)  # (M=4, 3)
    policy.reset_plans()
    first_action, _ = model.predict(obs, deterministic=True)  # (M, 1)
    # the full plan: its first action, then the rest, kept shifted as the next warm start
    plan = th.cat([th.as_tensor(first_action)[:, None], policy.receding_horizon.plan[:, :-1]], dim=1)  # (M, H, 1)
    assert plan.shape == (4, 10, 1)

    th.manual_seed(0)
    low, high = th.as_tensor(model.action_space.low), th.as_tensor(model.action_space.high)
    random_sequences = low + th.rand(4, 100, 10, 1) * (high - low)  # (M, 100, H, 1)
    obs_t = th.as_tensor(obs)
    model_env.deterministic = True  # the model's mean next states, as the plan was made
    try:
        plan_return = model_env.evaluate_action_sequences(plan[:, None], obs_t, num_particles=50)[:, 0]  # (M,)
        random_returns = model_env.evaluate_action_sequences(random_sequences, obs_t, num_particles=50)  # (M, 100)
    finally:
        model_env.deterministic = False
    margin = (plan_return - random_returns.mean(dim=1)) / random_returns.std(dim=1)
    assert (margin > 1.0).all(), margin  # by more than one std of the random returns, at every start state
    assert (random_returns < plan_return[:, None]).float().mean() >= 0.9


def test_bf16_planning():
    model = tiny_pets(policy_kwargs=dict(planning_dtype="bfloat16"))
    model.learn(60)
    assert model.policy.model_env.compute_dtype == th.bfloat16
    assert np.isfinite(model.predict(np.zeros(3, np.float32))[0]).all()
    with pytest.raises(ValueError, match="planning_dtype"):
        tiny_pets(policy_kwargs=dict(planning_dtype="float8"))


@pytest.mark.parametrize("native_bf16", [False, True])
def test_auto_planning_dtype_takes_bf16_only_where_it_is_native(monkeypatch, tmp_path, native_bf16):
    # Without AVX512-BF16/AMX torch emulates bf16: a bf16 product is 20x slower than float32 on an
    # AVX2-only CPU, so "auto" plans in float32 there and an explicit "bfloat16" warns.
    monkeypatch.setattr(inference, "_cpu_has_bf16_units", lambda: native_bf16)
    obs = np.zeros(3, np.float32)
    model = tiny_pets(policy_kwargs=dict(planning_dtype="auto"))
    model.learn(60)
    model.predict(obs)
    expected = th.bfloat16 if native_bf16 else th.float32
    assert model.policy.model_env.inference.compute_dtype == expected
    assert all(w.dtype == expected for w, _ in model.policy.model_env.inference._weights)
    model.save(tmp_path / "pets.zip")
    loaded = PETS.load(tmp_path / "pets.zip", env=model.get_env())
    assert loaded.policy.planning_dtype == "auto"
    loaded.predict(obs)
    assert loaded.policy.model_env.inference.compute_dtype == expected
    explicit = tiny_pets(policy_kwargs=dict(planning_dtype="bfloat16"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        explicit.learn(60)  # plans from step 50
        explicit.predict(obs)
        explicit.predict(obs)
    slow = [w for w in caught if "no native bf16" in str(w.message)]
    assert len(slow) == (0 if native_bf16 else 1), [str(w.message) for w in caught]
    assert explicit.policy.model_env.inference.compute_dtype == th.bfloat16  # asked for, kept


def test_model_fit_dtype_fits_in_bf16_and_is_kept_by_save_load(tmp_path, autocast_dtypes_of_fits):
    model = tiny_pets(model_fit_dtype="bfloat16")
    seen = autocast_dtypes_of_fits(model.dynamics)
    model.learn(60)
    assert seen and set(seen) == {th.bfloat16}
    assert model.policy.model_env.inference.compute_dtype == th.float32  # planning keeps its own dtype
    model.save(tmp_path / "pets.zip")
    loaded = PETS.load(tmp_path / "pets.zip", env=model.get_env())
    assert loaded.model_fit_dtype == "bfloat16" and loaded.model_trainer.compute_dtype == th.bfloat16
    default = tiny_pets()
    seen = autocast_dtypes_of_fits(default.dynamics)
    default.learn(60)
    assert seen and set(seen) == {th.float32}  # the default fits in float32
    with pytest.raises(ValueError, match="model_fit_dtype must be one of"):
        tiny_pets(model_fit_dtype="bf16")


@pytest.mark.skipif(not th.cuda.is_available(), reason="needs CUDA")
def test_cuda():
    model = tiny_pets(device="cuda")
    model.learn(80)
    assert next(model.dynamics.parameters()).device.type == "cuda"
    assert model.predict(np.zeros(3, np.float32))[0].shape == (1,)


def test_cli_train_pets(tmp_path):
    cmd = [sys.executable, "-m", "sb3_mbrl", "train", "--algo", "pets", "--env", "Pendulum-v1", "-n", "250", "-f", "logs",
           "--seed", "0", "--eval-freq", "-1", "--hyperparams", "horizon:5", "num_particles:2", "learning_starts:200",
           "model_epochs:100"]
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "logs" / "pets" / "Pendulum-v1_1" / "Pendulum-v1.zip").is_file()


def test_predict_before_the_first_fit_acts_randomly_with_a_warning():
    model = tiny_pets()
    obs = np.zeros((3, 3), dtype=np.float32)
    with pytest.warns(UserWarning, match="not been fitted yet"):
        actions, _ = model.predict(obs)
    assert actions.shape == (3, 1)
    assert np.all(np.abs(actions) <= 2.0) and len(np.unique(actions)) == 3  # uniform in [-2, 2], not a constant


def test_eval_callback_during_warm_up_does_not_stop_training(tmp_path):
    # Evaluations before learning_starts (e.g. `sb3-mbrl train -n 500` evaluates every 100 steps).
    model = tiny_pets(learning_starts=120)
    eval_cb = EvalCallback(make_vec_env("Pendulum-v1", n_envs=1), eval_freq=60, n_eval_episodes=1,
                           log_path=str(tmp_path), verbose=0)
    with pytest.warns(UserWarning, match="not been fitted yet"):
        model.learn(200, callback=eval_cb)
    assert eval_cb.evaluations_timesteps[:2] == [60, 120] and bool(model.policy.fitted)


def test_model_optimiser_is_fused_adam_unless_the_caller_chooses(tmp_path):
    model = tiny_pets()
    assert model.policy.optimizer.defaults["fused"] and model.model_trainer.optimizer is model.policy.optimizer
    model.learn(60)
    model.save(tmp_path / "pets")
    assert PETS.load(tmp_path / "pets").policy.optimizer.defaults["fused"]
    chosen = tiny_pets(policy_kwargs=dict(optimizer_kwargs=dict(foreach=True)))
    assert not chosen.policy.optimizer.defaults.get("fused") and chosen.policy.optimizer.defaults["foreach"]
