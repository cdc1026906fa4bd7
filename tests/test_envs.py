"""Known reward/termination functions agree with the real environments."""
import gymnasium as gym
import numpy as np
import pytest
import torch as th

from sb3_mbrl.envs import get_planning_termination_fn, get_reward_fn, get_termination_fn, has_terminal_states, terminations
from sb3_mbrl.envs.model_inputs import RAIL_CONTACT_ZONE

CLASSIC_DISCRETE = ["CartPole-v1", "Acrobot-v1", "MountainCar-v0"]


def _as_tensors(env: gym.Env, rows):
    """Stack ``(obs, action, next_obs, reward, terminated)`` rows; discrete actions one-hot, as PETS passes them."""
    obs, act, nxt, rew, term = (np.array(x) for x in zip(*rows))
    as_t = lambda a: th.as_tensor(a, dtype=th.float32)  # noqa: E731
    if isinstance(env.action_space, gym.spaces.Discrete):
        act = np.eye(env.action_space.n, dtype=np.float32)[act - env.action_space.start]
    return as_t(obs), as_t(act), as_t(nxt), rew, term


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
    return _as_tensors(env, rows)


def _transitions_from_states(env_id: str, states: np.ndarray, seed: int = 0):
    """One real env step, with a random action, from each hand-set internal ``state``."""
    env = gym.make(env_id)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    inner = env.unwrapped
    rows = []
    for state in states:
        inner.state = np.array(state, dtype=np.float64)
        obs = inner._get_ob() if env_id == "Acrobot-v1" else np.array(inner.state, dtype=np.float32)
        action = env.action_space.sample()
        next_obs, reward, terminated, _, _ = inner.step(action)
        rows.append((obs, action, next_obs, reward, terminated))
    env.close()
    return _as_tensors(env, rows)


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
        *CLASSIC_DISCRETE,
    ],
)
def test_termination_matches_env(env_id):
    obs, act, nxt, _, term = _random_transitions(env_id)
    predicted = get_termination_fn(env_id)(obs, act, nxt).numpy()
    assert predicted.dtype == bool and predicted.shape == (1000,)
    np.testing.assert_array_equal(predicted, term)
    if env_id in CLASSIC_DISCRETE:
        assert has_terminal_states(env_id)
    # Random play never reaches Acrobot's or MountainCar's goal in 1,000 steps: the terminating
    # transitions of those two are checked from hand-set states below.
    if env_id not in ("Ant-v4", "HalfCheetah-v4", "Pendulum-v1", "Acrobot-v1", "MountainCar-v0"):
        # Both outcomes occur, so the comparison above is not trivially all-False.
        assert term.any() and (~term).any()
        assert has_terminal_states(env_id)


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "InvertedPendulum-v4", "Reacher-v4", *CLASSIC_DISCRETE])
def test_reward_matches_env(env_id):
    obs, act, nxt, rew, _ = _random_transitions(env_id)
    predicted = get_reward_fn(env_id)(obs, act, nxt).numpy()
    assert predicted.shape == (1000,)
    np.testing.assert_allclose(predicted, rew, rtol=1e-5, atol=1e-5)


def test_cartpole_random_play_terminates_often():
    *_, term = _random_transitions("CartPole-v1")
    assert term.sum() >= 30  # 45 episodes end by falling in these 1,000 steps (seed 0)


def _near_goal_states(env_id: str, n: int = 1000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if env_id == "Acrobot-v1":  # [t1, t2, dt1, dt2] over the whole circle, velocities within the env's bounds
        return np.stack(
            [
                rng.uniform(-np.pi, np.pi, n),
                rng.uniform(-np.pi, np.pi, n),
                rng.uniform(-4 * np.pi, 4 * np.pi, n),
                rng.uniform(-9 * np.pi, 9 * np.pi, n),
            ],
            axis=1,
        )
    # MountainCar-v0: [position, velocity] around the flag at 0.5 (max_position 0.6, max_speed 0.07)
    return np.stack([rng.uniform(0.4, 0.6, n), rng.uniform(-0.07, 0.07, n)], axis=1)


@pytest.mark.parametrize("env_id", ["Acrobot-v1", "MountainCar-v0"])
def test_goal_transitions_match_env(env_id):
    """Real env steps from hand-set states on both sides of the goal: many terminate."""
    obs, act, nxt, rew, term = _transitions_from_states(env_id, _near_goal_states(env_id))
    predicted = get_termination_fn(env_id)(obs, act, nxt).numpy()
    assert predicted.dtype == bool and predicted.shape == (1000,)
    np.testing.assert_array_equal(predicted, term)
    np.testing.assert_allclose(get_reward_fn(env_id)(obs, act, nxt).numpy(), rew, rtol=1e-5, atol=1e-5)
    assert term.sum() >= 100 and (~term).sum() >= 100
    if env_id == "Acrobot-v1":
        np.testing.assert_array_equal(rew, np.where(term, 0.0, -1.0))
    else:  # MountainCar: -1 on the step that reaches the flag too
        np.testing.assert_array_equal(rew, -np.ones(1000))


def test_classic_thresholds_are_the_envs():
    cartpole = gym.make("CartPole-v1").unwrapped
    assert terminations.CARTPOLE_X_THRESHOLD == cartpole.x_threshold
    assert terminations.CARTPOLE_THETA_THRESHOLD == cartpole.theta_threshold_radians
    car = gym.make("MountainCar-v0").unwrapped
    assert terminations.MOUNTAIN_CAR_GOAL_POSITION == car.goal_position
    assert terminations.MOUNTAIN_CAR_GOAL_VELOCITY == car.goal_velocity


def _terminated(env_id: str, next_obs) -> np.ndarray:
    next_obs = th.tensor(np.asarray(next_obs), dtype=th.float32)
    action = th.zeros(next_obs.shape[0], 3)  # one-hot width is irrelevant: the functions ignore it
    return get_termination_fn(env_id)(th.zeros_like(next_obs), action, next_obs).numpy()


def test_mountain_car_goal_boundary():
    next_obs = [
        [0.5, 0.0],  # exactly at the flag, standing still: terminated (>= on both)
        [0.5, 0.01],
        [0.6, 0.07],  # the right wall, top speed
        [0.6, 0.0],
        [0.5001, 0.0],
        [0.5, -1e-6],  # at the flag but rolling back
        [0.6, -0.01],
        [0.4999, 0.07],  # just short of the flag
        [0.49, 0.0],
        [-0.5, 0.0],  # the valley
        [-1.2, 0.0],  # the left wall
    ]
    expected = [True] * 5 + [False] * 6
    np.testing.assert_array_equal(_terminated("MountainCar-v0", next_obs), expected)
    rew = get_reward_fn("MountainCar-v0")(th.zeros(11, 2), th.zeros(11, 3), th.tensor(next_obs))
    np.testing.assert_array_equal(rew.numpy(), -np.ones(11))


def test_acrobot_goal_boundary():
    """Tip height ``-cos t1 - cos(t1 + t2)`` just above / below 1 agrees with the env's own check."""
    env = gym.make("Acrobot-v1")
    env.reset(seed=0)
    inner = env.unwrapped
    # t2 = 0: height = -2 cos t1, which is 1 at t1 = +-2 pi / 3.
    angles = [(sign * (2 * np.pi / 3 + d), 0.0) for sign in (1, -1) for d in (-1e-3, 1e-3)]
    angles += [(np.pi, 0.0), (0.0, 0.0), (np.pi / 2, 0.0), (np.pi, np.pi), (np.pi / 2 + 0.3, np.pi / 2), (np.pi, 1.0)]
    states = [np.array([t1, t2, 0.0, 0.0]) for t1, t2 in angles]
    expected = []
    next_obs = []
    for state in states:
        inner.state = state
        expected.append(inner._terminal())
        next_obs.append(inner._get_ob())
    assert expected == [False, True, False, True, True, False, False, False, True, True]
    np.testing.assert_array_equal(_terminated("Acrobot-v1", next_obs), expected)
    rew = get_reward_fn("Acrobot-v1")(th.zeros(10, 6), th.zeros(10, 3), th.tensor(np.array(next_obs)))
    np.testing.assert_array_equal(rew.numpy(), np.where(expected, 0.0, -1.0))


def test_classic_discrete_functions_are_batched():
    """Any batch size, float32 or float64, action as a one-hot (B, n) or as (B,) indices."""
    for env_id, obs_dim in (("CartPole-v1", 4), ("Acrobot-v1", 6), ("MountainCar-v0", 2)):
        for dtype in (th.float32, th.float64):
            obs, nxt = th.randn(7, obs_dim, dtype=dtype), th.randn(7, obs_dim, dtype=dtype)
            for action in (th.eye(3, dtype=dtype)[th.randint(3, (7,))], th.randint(3, (7,))):
                term = get_termination_fn(env_id)(obs, action, nxt)
                rew = get_reward_fn(env_id)(obs, action, nxt)
                assert term.shape == (7,) and term.dtype == th.bool
                assert rew.shape == (7,) and rew.dtype == dtype


def test_unknown_env_has_no_functions():
    assert get_reward_fn("NoSuchEnv-v0") is None
    assert get_termination_fn("NoSuchEnv-v0") is None
    assert not has_terminal_states("NoSuchEnv-v0")


def test_pets_plans_inverted_pendulum_to_stop_short_of_the_rail_while_the_env_function_matches_the_env():
    # obs = [x, theta, x_dot, theta_dot]: at the rail's contact zone, just inside it, inside with the
    # pole leaning, fallen at the centre, and the other side of the zone.
    nxt = th.tensor([[0.95, 0.0, 0.0, 0.0], [-0.9, 0.0, 0.0, 0.0], [0.5, 0.1, 0.0, 0.0], [0.0, 0.3, 0.0, 0.0], [-0.89, 0.0, 0.0, 0.0]])
    obs, action = th.zeros_like(nxt), th.zeros(5, 1)
    planning = get_planning_termination_fn("InvertedPendulum-v4")(obs, action, nxt)
    assert planning.tolist() == [True, True, False, True, False]
    # The env itself ends an episode only when the pole falls (test_termination_matches_env).
    assert get_termination_fn("InvertedPendulum-v4")(obs, action, nxt).tolist() == [False, False, False, True, False]
    # The stop is where the model's rail-contact input starts to rise (sb3_mbrl.envs.model_inputs).
    assert terminations.INVERTED_PENDULUM_PLANNING_RAIL_STOP == terminations.INVERTED_PENDULUM_RAIL - RAIL_CONTACT_ZONE
    for env_id in ("Pendulum-v1", "CartPole-v1", "Hopper-v4", "gymnasium/InvertedPendulum-v4"):
        expected = terminations.inverted_pendulum_planning_termination if "Inverted" in env_id else get_termination_fn(env_id)
        assert get_planning_termination_fn(env_id) is expected
    assert get_planning_termination_fn("NoSuchEnv-v0") is None
