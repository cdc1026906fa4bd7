"""Known reward/termination functions agree with the real environments."""
import gymnasium as gym
import numpy as np
import pytest
import torch as th

from sb3_mbrl.envs import get_reward_fn, get_termination_fn, has_terminal_states


def _random_transitions(env_id: str, n: int = 1000, seed: int = 0):
    env = gym.make(env_id)
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    rows = []
    while len(rows) < n:
        action = env.action_space.sample()
        next_obs, reward, terminated, truncated, _ = env.step(action)
        rows.append((obs, action, next_obs, reward, terminated))
        obs = next_obs
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()
    obs, act, nxt, rew, term = (np.array(x) for x in zip(*rows))
    as_t = lambda a: th.as_tensor(a, dtype=th.float32)  # noqa: E731
    return as_t(obs), as_t(act), as_t(nxt), rew, term


@pytest.mark.parametrize(
    "env_id",
    [
        "InvertedPendulum-v4",
        "InvertedDoublePendulum-v4",
        "Hopper-v4",
        "Walker2d-v4",
        "Ant-v4",
        "Humanoid-v4",
        "HalfCheetah-v4",
        "Pendulum-v1",
    ],
)
def test_termination_matches_env(env_id):
    obs, act, nxt, _, term = _random_transitions(env_id)
    predicted = get_termination_fn(env_id)(obs, act, nxt).numpy()
    assert predicted.dtype == bool and predicted.shape == (1000,)
    np.testing.assert_array_equal(predicted, term)
    if env_id not in ("Ant-v4", "HalfCheetah-v4", "Pendulum-v1"):
        # Both outcomes occur, so the comparison above is not trivially all-False.
        assert term.any() and (~term).any()
        assert has_terminal_states(env_id)


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "InvertedPendulum-v4"])
def test_reward_matches_env(env_id):
    obs, act, nxt, rew, _ = _random_transitions(env_id)
    predicted = get_reward_fn(env_id)(obs, act, nxt).numpy()
    np.testing.assert_allclose(predicted, rew, rtol=1e-5, atol=1e-5)


def test_unknown_env_has_no_functions():
    assert get_reward_fn("NoSuchEnv-v0") is None
    assert get_termination_fn("NoSuchEnv-v0") is None
    assert not has_terminal_states("NoSuchEnv-v0")
