"""REINFORCE: returns and loss on hand-made episodes, baselines, and the SB3 contract."""
import copy
import math
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_mbrl import REINFORCE
from sb3_mbrl.reinforce import discounted_returns


class ScriptedEnv(gym.Env):
    """Observation is the step index; rewards follow ``rewards``; the episode terminates after them."""

    def __init__(self, rewards: Tuple[float, ...] = (1.0, 2.0, 3.0), truncate: bool = False):
        super().__init__()
        self.rewards = rewards
        self.truncate = truncate
        self.observation_space = spaces.Box(low=0.0, high=10.0, shape=(1,), dtype=np.float32)
        self.action_space = spaces.Discrete(2)
        self.t = 0

    def reset(self, *, seed: Optional[int] = None, options: Optional[Dict[str, Any]] = None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0], dtype=np.float32), {}

    def step(self, action: int):
        reward = self.rewards[self.t]
        self.t += 1
        end = self.t == len(self.rewards)
        return np.array([self.t], dtype=np.float32), reward, end and not self.truncate, end and self.truncate, {}


class RolloutSnapshot(BaseCallback):
    """Copies the rollout buffer and the policy at the end of each rollout (before ``train()``)."""

    def __init__(self):
        super().__init__()
        self.snapshots: List[Dict[str, Any]] = []

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        buffer = self.model.rollout_buffer
        self.snapshots.append(
            {
                "returns": buffer.returns.copy(),
                "advantages": buffer.advantages.copy(),
                "observations": buffer.observations.copy(),
                "actions": buffer.actions.copy(),
                "mask": self.model._rollout_mask.copy(),
                "policy": copy.deepcopy(self.model.policy),
            }
        )


def zero_actor(model: REINFORCE) -> None:
    """Uniform policy: log pi(a|s) = log(1/2) for every action."""
    with th.no_grad():
        model.policy.action_net.weight.zero_()
        model.policy.action_net.bias.zero_()


# --- returns and loss, by hand ----------------------------------------------------------------


def test_discounted_returns_by_hand():
    rewards = np.array([[1.0, 1.0], [2.0, 4.0], [3.0, 8.0], [5.0, 16.0]])  # (T=4, n_envs=2)
    dones = np.array([[False, False], [False, True], [True, False], [False, False]])
    gamma = 0.5
    returns, complete = discounted_returns(rewards, dones, gamma)
    # env 0: episode of 3 steps (1, 2, 3), then an unfinished one (5)
    # env 1: episode ends at step 1 (1, 4), then an unfinished one (8, 16)
    expected = np.array([[1 + 0.5 * 2 + 0.25 * 3, 1 + 0.5 * 4], [2 + 0.5 * 3, 4], [3, 8 + 0.5 * 16], [5, 16]])
    np.testing.assert_array_equal(returns, expected)
    np.testing.assert_array_equal(complete, [[True, True], [True, True], [True, False], [False, False]])

    # bootstrapped with the values of the observations after the last step
    returns, complete = discounted_returns(rewards, dones, gamma, last_values=np.array([10.0, 100.0]))
    expected[3] = [5 + 0.5 * 10, 16 + 0.5 * 100]
    expected[2, 1] = 8 + 0.5 * expected[3, 1]
    np.testing.assert_array_equal(returns, expected)
    assert complete.all()


def test_hand_made_episode_returns_and_policy_loss():
    gamma = 0.5
    model = REINFORCE(
        "MlpPolicy", DummyVecEnv([ScriptedEnv]), n_episodes=1, n_steps=8, gamma=gamma, baseline=None,
        normalize_advantage=False, learning_rate=0.0, seed=0,
    )
    zero_actor(model)
    snapshot = RolloutSnapshot()
    model.learn(3, callback=snapshot)
    assert model.num_timesteps == 3
    data = snapshot.snapshots[0]
    expected_returns = np.array([1 + gamma * 2 + gamma**2 * 3, 2 + gamma * 3, 3.0], dtype=np.float32)  # 2.75, 3.5, 3
    np.testing.assert_array_equal(data["returns"][:3, 0], expected_returns)
    np.testing.assert_array_equal(data["advantages"][:3, 0], expected_returns)  # no baseline
    np.testing.assert_array_equal(data["mask"][:, 0], [True] * 3 + [False] * 5)  # rows past the episode unused

    # the loss the implementation logged, from the same policy by the same torch operations
    obs = th.as_tensor(data["observations"][:3, 0])
    actions = th.as_tensor(data["actions"][:3, 0]).long().flatten()
    _, log_prob, _ = data["policy"].evaluate_actions(obs, actions)
    expected_loss = -(th.as_tensor(expected_returns) * log_prob).mean()
    assert model.logger.name_to_value["train/policy_loss"] == expected_loss.item()
    # and by hand: uniform policy over 2 actions
    assert model.logger.name_to_value["train/policy_loss"] == pytest.approx(np.mean(expected_returns) * math.log(2), rel=1e-6)
    assert model.logger.name_to_value["train/entropy_loss"] == pytest.approx(-math.log(2), rel=1e-6)


def _one_update(baseline: Optional[str], normalize_advantage: bool, uniform: bool = False):
    """One rollout of the 3-step ScriptedEnv episode and one update (learning rate 0): the model, the
    rollout snapshot, and the snapshot policy's log pi(a_t | s_t) of the 3 steps."""
    model = REINFORCE("MlpPolicy", DummyVecEnv([ScriptedEnv]), n_episodes=1, n_steps=8, gamma=0.5, baseline=baseline,
                      normalize_advantage=normalize_advantage, learning_rate=0.0, seed=0)
    if uniform:
        zero_actor(model)
    snapshot = RolloutSnapshot()
    model.learn(3, callback=snapshot)
    data = snapshot.snapshots[0]
    obs = th.as_tensor(data["observations"][:3, 0])
    actions = th.as_tensor(data["actions"][:3, 0]).long().flatten()
    with th.no_grad():
        _, log_prob, _ = data["policy"].evaluate_actions(obs, actions)
    return model, data, log_prob.numpy().astype(np.float64)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x))))


def test_mean_baseline_and_normalization():
    # normalize_advantage only rescales (divides by the root mean square over the batch); the mean
    # baseline centres. The mean-baseline update is the same as when normalisation also centred (the
    # advantages already have zero mean, so their RMS is their std), but it now checks the advantages
    # the loss used (after normalisation), not only the loss of a uniform policy.
    model, data, _ = _one_update("mean", True, uniform=True)
    returns = np.array([2.75, 3.5, 3.0])
    advantages = returns - returns.mean()
    np.testing.assert_allclose(data["advantages"][:3, 0], advantages, rtol=1e-6)  # before normalisation
    normalized = advantages / (_rms(advantages) + 1e-8)
    np.testing.assert_allclose(normalized, (advantages - advantages.mean()) / advantages.std(), rtol=1e-6)
    np.testing.assert_allclose(model.rollout_buffer.advantages.ravel()[:3], normalized, rtol=1e-5)
    # uniform policy: the loss is -mean(normalized) * log(1/2) = 0
    assert model.logger.name_to_value["train/policy_loss"] == pytest.approx(np.mean(normalized) * math.log(2), abs=1e-6)


def test_no_baseline_is_plain_reinforce_and_differs_from_mean_baseline():
    """With normalisation on (the default), baseline=None weights each step by its discounted return G_t
    divided by the batch RMS of the returns: plain REINFORCE's gradient, rescaled, not the mean baseline."""
    returns = np.array([2.75, 3.5, 3.0])  # G_t of the 3 steps, gamma = 0.5
    none, none_data, log_prob = _one_update(None, True)
    assert not np.allclose(log_prob, log_prob[0])  # a policy whose log-probabilities differ between steps
    np.testing.assert_allclose(none.rollout_buffer.advantages.ravel()[:3], returns / _rms(returns), rtol=1e-5)
    loss = none.logger.name_to_value["train/policy_loss"]
    assert loss == pytest.approx(-np.mean(returns / _rms(returns) * log_prob), rel=1e-5)
    assert loss * _rms(returns) == pytest.approx(-np.mean(returns * log_prob), rel=1e-5)  # REINFORCE's loss, rescaled

    mean, _, mean_log_prob = _one_update("mean", True)
    np.testing.assert_array_equal(mean_log_prob, log_prob)  # same seed: same policy, same actions
    centred = returns - returns.mean()
    np.testing.assert_allclose(mean.rollout_buffer.advantages.ravel()[:3], centred / _rms(centred), rtol=1e-5)
    assert not np.allclose(none.rollout_buffer.advantages.ravel()[:3], mean.rollout_buffer.advantages.ravel()[:3], atol=0.1)
    assert mean.logger.name_to_value["train/policy_loss"] == pytest.approx(-np.mean(centred / _rms(centred) * log_prob), abs=1e-6)
    assert abs(loss - mean.logger.name_to_value["train/policy_loss"]) > 0.5

    # without normalisation the weights are the returns themselves
    raw, _, _ = _one_update(None, False)
    np.testing.assert_allclose(raw.rollout_buffer.advantages.ravel()[:3], returns, rtol=1e-6)


def test_baseline_and_normalization_choices_are_distinct_updates():
    """The Optuna search samples baseline in ("value", "mean", None) and normalize_advantage in (True, False):
    on the same batch the six choices weight the steps differently (no two names for one update)."""
    from sb3_mbrl.reinforce.returns import BASELINES

    weights = {}
    for baseline in BASELINES:
        for normalize in (True, False):
            model, _, _ = _one_update(baseline, normalize)
            weights[(baseline, normalize)] = model.rollout_buffer.advantages.ravel()[:3].astype(np.float64)
    names = list(weights)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not np.allclose(weights[a], weights[b], rtol=1e-3, atol=1e-3), (a, b)


def test_n_steps_cut_episode_dropped_without_value_and_bootstrapped_with_it():
    # 3-step episodes, rollouts of 4 steps: the 2nd episode is cut after its 1st step
    drop = REINFORCE("MlpPolicy", DummyVecEnv([ScriptedEnv]), n_steps=4, gamma=0.5, baseline=None, seed=0)
    assert drop.partial_episodes == "drop"
    snapshot = RolloutSnapshot()
    drop.learn(8, callback=snapshot)
    first, second = snapshot.snapshots
    np.testing.assert_array_equal(first["mask"][:, 0], [True, True, True, False])
    np.testing.assert_array_equal(first["returns"][:3, 0], [2.75, 3.5, 3.0])
    # the 2nd rollout starts mid-episode: its first two steps have complete returns (2 + 0.5 * 3, 3)
    np.testing.assert_array_equal(second["returns"][:2, 0], [3.5, 3.0])
    # ... and then a 3rd episode starts and is cut after two steps
    np.testing.assert_array_equal(second["mask"][:, 0], [True, True, False, False])
    assert drop.logger.name_to_value["train/n_samples"] == 2

    boot = REINFORCE("MlpPolicy", DummyVecEnv([ScriptedEnv]), n_steps=4, gamma=0.5, baseline="value", seed=0)
    assert boot.partial_episodes == "bootstrap"
    snapshot = RolloutSnapshot()
    boot.learn(4, callback=snapshot)
    data = snapshot.snapshots[0]
    assert data["mask"].all()
    last_obs = th.as_tensor(np.array([[1.0]], dtype=np.float32))  # observation after the cut step
    with th.no_grad():
        last_value = data["policy"].predict_values(last_obs).item()
    assert data["returns"][3, 0] == pytest.approx(1.0 + 0.5 * last_value, rel=1e-6)


def test_time_limit_truncation_bootstrapped_with_value_only():
    env = lambda: ScriptedEnv(truncate=True)  # noqa: E731
    model = REINFORCE("MlpPolicy", DummyVecEnv([env]), n_episodes=1, n_steps=8, gamma=0.5, seed=0)
    snapshot = RolloutSnapshot()
    model.learn(3, callback=snapshot)
    data = snapshot.snapshots[0]
    with th.no_grad():
        terminal_value = data["policy"].predict_values(th.as_tensor(np.array([[3.0]], dtype=np.float32))).item()
    assert data["returns"][2, 0] == pytest.approx(3.0 + 0.5 * terminal_value, rel=1e-6)

    model = REINFORCE("MlpPolicy", DummyVecEnv([env]), n_episodes=1, n_steps=8, gamma=0.5, baseline=None, seed=0)
    snapshot = RolloutSnapshot()
    model.learn(3, callback=snapshot)
    np.testing.assert_array_equal(snapshot.snapshots[0]["returns"][:3, 0], [2.75, 3.5, 3.0])


def test_n_episodes_counts_episode_ends_over_envs():
    model = REINFORCE("MlpPolicy", make_vec_env("CartPole-v1", n_envs=2, seed=0), n_episodes=4, n_steps=1000, seed=0)
    snapshot = RolloutSnapshot()
    model.learn(1, callback=snapshot)
    n_steps = model.rollout_buffer.pos
    assert n_steps < 1000
    assert model._rollout_dones[:n_steps].sum() >= 4
    assert model._rollout_dones[: n_steps - 1].sum() < 4


def test_no_baseline_leaves_value_head_untouched():
    model = REINFORCE("MlpPolicy", make_vec_env("CartPole-v1", n_envs=2, seed=0), n_steps=64, baseline=None, seed=0)
    value_params = [p.detach().clone() for p in model._value_only_parameters()]
    actor_params = [p.detach().clone() for p in model.policy.action_net.parameters()]
    model.learn(512)
    assert model._n_updates >= 4
    for before, after in zip(value_params, model._value_only_parameters()):
        assert th.equal(before, after)
        assert after.grad is None
    assert any(not th.equal(b, a) for b, a in zip(actor_params, model.policy.action_net.parameters()))
    assert "train/value_loss" not in model.logger.name_to_value
    # and with the value baseline the value head is trained
    model = REINFORCE("MlpPolicy", make_vec_env("CartPole-v1", n_envs=2, seed=0), n_steps=64, seed=0)
    value_params = [p.detach().clone() for p in model._value_only_parameters()]
    model.learn(256)
    assert any(not th.equal(b, a) for b, a in zip(value_params, model._value_only_parameters()))


# --- the SB3 contract --------------------------------------------------------------------------


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_learn_discrete_and_box_and_logger_keys(env_id):
    model = REINFORCE("MlpPolicy", env_id, n_steps=256, ent_coef=0.01, seed=0)
    model.learn(1024)
    assert model.num_timesteps == 1024
    for key in ("train/policy_loss", "train/value_loss", "train/entropy_loss"):
        assert np.isfinite(model.logger.name_to_value[key]), key


def test_minibatches_and_epochs():
    model = REINFORCE("MlpPolicy", "Pendulum-v1", n_steps=200, n_epochs=3, batch_size=64, seed=0)
    model.learn(200)
    assert model._n_updates == 3 * 4  # ceil(200 / 64) = 4 mini-batches per epoch


class ImageEnv(gym.Env):
    """36x36 grey images (channel last), 3 actions, reward 1 for action 1, 10-step episodes."""

    observation_space = spaces.Box(0, 255, (36, 36, 1), dtype=np.uint8)
    action_space = spaces.Discrete(3)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        self.t += 1
        return self.observation_space.sample(), float(action == 1), self.t >= 10, False, {}


@pytest.mark.parametrize("policy", ["MultiInputPolicy", "CnnPolicy"])
def test_cnn_and_multi_input_policies(policy, tmp_path: Path):
    """Dict and image observations: learning updates the actor (and the CNN), actions and values have the
    batch's shape, and a save / load round trip keeps the deterministic actions."""
    from stable_baselines3.common.envs import SimpleMultiObsEnv

    if policy == "MultiInputPolicy":
        env, kwargs = SimpleMultiObsEnv(random_start=True), {}
    else:
        env, kwargs = ImageEnv(), dict(policy_kwargs=dict(features_extractor_kwargs=dict(features_dim=16)))
    model = REINFORCE(policy, env, n_steps=32, seed=0, **kwargs)
    actor = [p.detach().clone() for p in model.policy.action_net.parameters()]
    features = [p.detach().clone() for p in model.policy.pi_features_extractor.parameters()]
    model.learn(64)
    assert model._n_updates == 2
    assert any(not th.equal(b, a) for b, a in zip(actor, model.policy.action_net.parameters()))
    if policy == "CnnPolicy":  # the CNN is trained too
        assert features and any(not th.equal(b, a) for b, a in zip(features, model.policy.pi_features_extractor.parameters()))

    n = 7
    samples = [env.observation_space.sample() for _ in range(n)]  # as the env gives them
    if isinstance(env.observation_space, spaces.Dict):
        obs = {key: np.stack([s[key] for s in samples]) for key in env.observation_space.spaces}
    else:
        obs = np.stack(samples)
        assert obs.shape == (n, 36, 36, 1)  # channel last (the model's VecTransposeImage and policy transpose)
    actions, _ = model.predict(obs, deterministic=True)
    assert actions.shape == (n,) and all(model.action_space.contains(int(a)) for a in actions)
    with th.no_grad():
        values = model.policy.predict_values(model.policy.obs_to_tensor(obs)[0])
    assert values.shape == (n, 1) and th.isfinite(values).all()

    model.save(tmp_path / "model")
    loaded = REINFORCE.load(tmp_path / "model")
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], actions)
    with th.no_grad():
        th.testing.assert_close(loaded.policy.predict_values(loaded.policy.obs_to_tensor(obs)[0]), values)


def test_save_load_identical_actions(tmp_path: Path):
    model = REINFORCE("MlpPolicy", "Pendulum-v1", n_steps=200, baseline=None, seed=0)
    model.learn(400)
    model.save(tmp_path / "reinforce")
    loaded = REINFORCE.load(tmp_path / "reinforce")
    assert loaded.baseline is None and loaded.partial_episodes == "drop"
    obs = np.stack([model.observation_space.sample() for _ in range(20)])
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
    # the loaded model keeps the value head frozen and trains on
    assert all(not p.requires_grad for p in loaded._value_only_parameters())
    loaded.set_env(make_vec_env("Pendulum-v1", n_envs=1, seed=1))
    loaded.learn(200)


def test_seeding_gives_identical_results():
    def run() -> List[np.ndarray]:
        model = REINFORCE("MlpPolicy", "CartPole-v1", n_steps=128, seed=3)
        model.learn(512)
        return [p.detach().clone().numpy() for p in model.policy.parameters()]

    for a, b in zip(run(), run()):
        np.testing.assert_array_equal(a, b)


def test_vec_env_and_continuing_learn():
    model = REINFORCE("MlpPolicy", make_vec_env("CartPole-v1", n_envs=2, seed=0), n_steps=64, seed=0)
    model.learn(256)
    assert model.num_timesteps == 256
    model.learn(256, reset_num_timesteps=False)
    assert model.num_timesteps == 512
    model.learn(128)
    assert model.num_timesteps == 128


def test_callback_false_stops_training():
    class StopAfter(BaseCallback):
        def _on_step(self) -> bool:
            return self.n_calls < 10

    model = REINFORCE("MlpPolicy", "CartPole-v1", n_steps=64, seed=0)
    model.learn(10_000, callback=StopAfter())
    assert model.num_timesteps == 10
    assert model._n_updates == 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(baseline="critic"), "baseline"),
        (dict(n_episodes=0), "n_episodes"),
        (dict(n_episodes=1.5), "n_episodes"),
        (dict(n_steps=0), "n_steps"),
        (dict(n_epochs=0), "n_epochs"),
        (dict(batch_size=0), "batch_size"),
        (dict(gamma=1.5), "gamma"),
        (dict(partial_episodes="carry"), "partial_episodes"),
        (dict(baseline="mean", partial_episodes="bootstrap"), "bootstrap"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        REINFORCE("MlpPolicy", "CartPole-v1", **kwargs)


def test_sb3_mbrl_train_cli(tmp_path: Path):
    result = subprocess.run(
        [sys.executable, "-m", "sb3_mbrl", "train", "--algo", "reinforce", "--env", "CartPole-v1", "-n", "2000",
         "-f", str(tmp_path), "--seed", "0"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    zips = list(tmp_path.glob("reinforce/CartPole-v1_*/CartPole-v1.zip"))
    assert zips, list(tmp_path.rglob("*"))
    model = REINFORCE.load(zips[0])
    assert model.num_timesteps >= 2000
