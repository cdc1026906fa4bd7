"""Terminal values: the value of a candidate's last planned state (PETS' ``terminal_value_fn``)."""
import math

import gymnasium as gym
import numpy as np
import pytest
import torch as th

from sb3_mbrl import PETS
from sb3_mbrl.dynamics import ModelEnv, ProbabilisticEnsemble
from sb3_mbrl.envs import get_reward_fn, get_terminal_value_fn, get_termination_fn
from sb3_mbrl.envs.terminal_values import cartpole_terminal_value, inverted_pendulum_terminal_value
from sb3_mbrl.envs.terminations import INVERTED_PENDULUM_RAIL, INVERTED_PENDULUM_THETA_THRESHOLD
from sb3_mbrl.planning import CategoricalCEMOptimizer, CEMOptimizer


def cartpole_step(state: th.Tensor, action: th.Tensor) -> th.Tensor:
    """gymnasium 0.29's CartPole-v1 Euler step, batched: ``state (B, 4)``, ``action (B,)`` in {0, 1}."""
    gravity, masscart, masspole, length, force_mag, tau = 9.8, 1.0, 0.1, 0.5, 10.0, 0.02
    total_mass, polemass_length = masscart + masspole, masspole * length
    x, x_dot, theta, theta_dot = state.unbind(-1)
    force = th.where(action > 0.5, force_mag, -force_mag)
    cos, sin = th.cos(theta), th.sin(theta)
    temp = (force + polemass_length * theta_dot**2 * sin) / total_mass
    theta_acc = (gravity * sin - cos * temp) / (length * (4.0 / 3.0 - masspole * cos**2 / total_mass))
    x_acc = temp - polemass_length * theta_acc * cos / total_mass
    return th.stack([x + tau * x_dot, x_dot + tau * x_acc, theta + tau * theta_dot, theta_dot + tau * theta_acc], -1)


def exact_cartpole_objective(start: th.Tensor, with_terminal_value: bool):
    """Return of one-hot candidates ``(1, P, H, 2)`` under the exact dynamics and the registry's known functions."""
    reward_fn, termination_fn = get_reward_fn("CartPole-v1"), get_termination_fn("CartPole-v1")
    value_fn = get_terminal_value_fn("CartPole-v1")

    def objective(candidates: th.Tensor) -> th.Tensor:
        actions = candidates[0]  # (P, H, 2)
        state = start.expand(actions.shape[0], 4)
        total = th.zeros(actions.shape[0])
        alive = th.ones(actions.shape[0], dtype=th.bool)
        for t in range(actions.shape[1]):
            next_state = cartpole_step(state, actions[:, t].argmax(-1).float())
            total += th.where(alive, reward_fn(state, actions[:, t], next_state), th.zeros_like(total))
            alive &= ~termination_fn(state, actions[:, t], next_state)
            state = next_state
        if with_terminal_value:
            total += th.where(alive, value_fn(state), th.zeros_like(total))
        return total[None]

    return objective


def balance(with_terminal_value: bool, seed: int = 1, **planner_kwargs) -> int:
    """Steps CartPole-v1 stays up under MPC with the categorical CEM (horizon 30, 100 x 3) on the exact dynamics."""
    th.manual_seed(0)
    planner = CategoricalCEMOptimizer(2, 30, population_size=100, num_elites=10, iterations=3, **planner_kwargs)
    env = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=1000 + seed)
    plan = None
    for step in range(500):
        plan = planner.optimize(exact_cartpole_objective(th.as_tensor(obs)[None], with_terminal_value), initial_mean=plan)
        action = int(planner.first_actions(plan)[0])
        plan = th.cat([plan[:, 1:], planner.initial_mean(1)[:, :1]], dim=1)
        obs, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            return step + 1
    return 500


def test_exact_dynamics_keep_cartpole_up_only_with_the_terminal_value():
    # With a reward of 1 per step alive every candidate that survives 30 steps ties, the plan is an
    # arbitrary survivor and the cart drifts off the track (measured on this start: 249 steps).
    assert balance(with_terminal_value=True) == 500
    assert balance(with_terminal_value=False) < 500
    # Acting with the best sequence sampled instead of each step's most likely action works as well.
    assert balance(with_terminal_value=True, return_mean_elites=False) == 500


def test_cartpole_terminal_value_stays_below_one_step_and_prefers_the_centre_at_rest():
    states = th.tensor([
        [0.0, 0.0, 0.0, 0.0],  # centred, at rest, upright
        [1.2, 0.0, 0.0, 0.0],  # off centre
        [0.0, 0.0, 0.1, 0.0],  # pole tilted
        [0.0, 1.2, 0.0, 0.0],  # centred but moving: 1.2 off centre in one second
        [1.2, -1.2, 0.0, 0.0],  # off centre, coming back
        [2.39, 3.0, 0.2, 2.0],  # about to leave
        [9.0, 0.0, 1.0, 0.0],  # far outside
    ])
    value = cartpole_terminal_value(states)
    assert value.shape == (7,) and value.dtype == th.float32
    assert value[0] == 0.5 and value[0] > value[1] > value[5] and value[0] > value[2] > value[5]
    th.testing.assert_close(value[3], value[1])
    th.testing.assert_close(value[4], value[0])
    assert value[5] == 0.0 and value[6] == 0.0 and bool((value >= 0).all()) and bool((value < 1).all())  # below one step's reward
    assert get_terminal_value_fn("CartPole-v1") is cartpole_terminal_value
    assert get_terminal_value_fn("Pendulum-v1") is None and get_terminal_value_fn(None) is None


def test_inverted_pendulum_terminal_value_prefers_the_rail_centre_at_rest_and_is_never_negative():
    states = th.tensor([
        [0.0, 0.0, 0.0, 0.0],  # centred, at rest, upright
        [0.5, 0.0, 0.0, 0.0],  # off centre
        [0.0, 0.1, 0.0, 0.0],  # pole tilted
        [0.0, 0.0, 0.5, 0.0],  # centred but moving: 0.5 off centre in one second
        [0.5, 0.0, -0.5, 0.0],  # off centre, coming back
        [0.95, 0.19, 1.0, 2.0],  # at the end of the rail, pole falling
        [0.0, 0.5, 0.0, 0.0],  # pole past the termination angle
    ])  # obs = [x, theta, x_dot, theta_dot]
    value = inverted_pendulum_terminal_value(states)
    assert value.shape == (7,) and value.dtype == th.float32
    assert value[0] == 5.0 and value[0] > value[1] > value[5] and value[0] > value[2] > value[5]
    th.testing.assert_close(value[3], value[1])
    th.testing.assert_close(value[4], value[0])
    assert value[5] == 0.0 and value[6] == 0.0 and bool((value >= 0).all())
    assert get_terminal_value_fn("InvertedPendulum-v4") is inverted_pendulum_terminal_value
    pytest.importorskip("mujoco")
    slider_range = gym.make("InvertedPendulum-v4").unwrapped.model.jnt_range[0]  # the value's rail
    assert list(slider_range) == [-INVERTED_PENDULUM_RAIL, INVERTED_PENDULUM_RAIL]


def balance_inverted_pendulum(with_terminal_value: bool, steps: int, seed: int = 0) -> int:
    """Steps InvertedPendulum-v4 stays up under CEM MPC (100 x 5, horizon 15) on the exact MuJoCo dynamics."""
    mujoco = pytest.importorskip("mujoco")
    from mujoco import rollout

    value_fn = get_terminal_value_fn("InvertedPendulum-v4")
    env, sim = gym.make("InvertedPendulum-v4"), gym.make("InvertedPendulum-v4").unwrapped
    sim.reset(seed=0)
    frame_skip, full_state = sim.frame_skip, mujoco.mjtState.mjSTATE_FULLPHYSICS
    start_state = np.zeros(mujoco.mj_stateSize(sim.model, full_state))
    threads = [mujoco.MjData(sim.model) for _ in range(2)]  # rollout's worker threads, one per core of CI

    def objective_at(obs: np.ndarray):
        sim.data.qpos[:], sim.data.qvel[:] = obs[:2], obs[2:]
        mujoco.mj_getState(sim.model, sim.data, start_state, full_state)

        def objective(candidates: th.Tensor) -> th.Tensor:
            actions = candidates[0].double().numpy()  # (P, H, 1)
            # All candidates in one call in C (the physics is the test's cost): each action held for
            # frame_skip physics steps, as env.step does; every candidate starts from the same solver state.
            controls = np.repeat(actions, frame_skip, axis=1)  # (P, H * frame_skip, 1)
            states, _ = rollout.rollout(sim.model, threads, start_state[None], controls)
            # (P, H, 5) after each env step: [time, x, theta, x_dot, theta_dot]
            states = states[:, frame_skip - 1 :: frame_skip]
            fallen = np.abs(states[:, :, 2]) > INVERTED_PENDULUM_THETA_THRESHOLD  # the env's termination
            alive = ~fallen.any(axis=1)
            # 1 per step alive, the terminal step's included, none after it.
            total = np.where(alive, actions.shape[1], fallen.argmax(axis=1) + 1).astype(np.float64)
            if with_terminal_value:
                last = th.as_tensor(states[:, -1, 1:], dtype=th.float32)  # (P, 4) = [qpos, qvel]
                total += np.where(alive, value_fn(last).numpy(), 0.0)
            return th.as_tensor(total, dtype=th.float32)[None]

        return objective

    th.manual_seed(seed)
    planner = CEMOptimizer(env.action_space.low, env.action_space.high, 15, population_size=100, num_elites=10, iterations=5)
    obs, _ = env.reset(seed=seed)
    plan = None
    for step in range(steps):
        plan = planner.optimize(objective_at(obs), initial_mean=plan)
        obs, _, terminated, _, _ = env.step(plan[0, 0].numpy())
        if terminated:
            return step + 1
        plan = th.cat([plan[:, 1:], planner.initial_mean(1)[:, :1]], dim=1)
    return steps


def test_exact_dynamics_keep_the_inverted_pendulum_up_only_with_the_terminal_value():
    # "1 per step alive" ties every candidate that survives 15 steps: the cart drifts to the end of
    # its rail, stops dead and the pole falls (measured on this start with mujoco 4.0.1's batched
    # rollout: after 95 steps; the terminal value kept it up for 400 of 400, so the window is 250 steps).
    assert balance_inverted_pendulum(with_terminal_value=False, steps=250) < 250
    assert balance_inverted_pendulum(with_terminal_value=True, steps=250) == 250


def _model_env(terminal_value_fn) -> ModelEnv:
    th.manual_seed(0)
    model = ProbabilisticEnsemble(2, 1, ensemble_size=2, hidden_sizes=(8,), learn_reward=False)

    def zero_reward(obs, action, next_obs):
        return th.zeros(obs.shape[0])

    def ends_on_positive_action(obs, action, next_obs):
        return action[:, 0] > 0

    return ModelEnv(model, reward_fn=zero_reward, termination_fn=ends_on_positive_action, terminal_value_fn=terminal_value_fn)


def test_model_env_adds_the_terminal_value_to_rows_that_did_not_terminate():
    env = _model_env(lambda obs: th.full((obs.shape[0],), 0.25))
    sequences = th.tensor([[[-1.0], [-1.0], [-1.0]], [[-1.0], [1.0], [-1.0]]])  # (P=2, H=3, 1): the second terminates
    returns = env.evaluate_action_sequences(sequences, th.zeros(2), num_particles=3)
    th.testing.assert_close(returns, th.tensor([0.25, 0.0]))
    no_value = _model_env(None).evaluate_action_sequences(sequences, th.zeros(2), num_particles=3)
    th.testing.assert_close(no_value, th.zeros(2))


def test_a_terminal_value_of_the_wrong_shape_or_kind_is_refused():
    env = _model_env(lambda obs: th.zeros(obs.shape[0], 1))
    with pytest.raises(ValueError, match=r"terminal_value_fn .* must return a float tensor of shape \(6,\)"):
        env.evaluate_action_sequences(th.zeros(2, 3, 1), th.zeros(2), num_particles=3)
    with pytest.raises(ValueError, match="terminal_value_fn must be a callable, None or 'auto'"):
        PETS("MlpPolicy", "CartPole-v1", terminal_value_fn="centre")


def half_value(obs: th.Tensor) -> th.Tensor:
    return th.full((obs.shape[0],), 0.5)


def test_pets_resolves_the_terminal_value_and_keeps_it_on_save_and_load(tmp_path):
    assert PETS("MlpPolicy", "CartPole-v1").policy.model_env.terminal_value_fn is cartpole_terminal_value  # "auto"
    assert PETS("MlpPolicy", "CartPole-v1", terminal_value_fn=None).policy.model_env.terminal_value_fn is None
    assert PETS("MlpPolicy", "Pendulum-v1").policy.model_env.terminal_value_fn is None  # none known
    model = PETS("MlpPolicy", "CartPole-v1", terminal_value_fn=half_value, ensemble_size=2, model_net_arch=[8])
    model.save(tmp_path / "pets")
    assert PETS.load(tmp_path / "pets").policy.model_env.terminal_value_fn is half_value
    model.policy.save(str(tmp_path / "policy.pt"))
    loaded_policy = type(model.policy).load(str(tmp_path / "policy.pt"))
    assert loaded_policy.model_env.terminal_value_fn is half_value
    assert math.isclose(float(loaded_policy.model_env.terminal_value(th.zeros(3, 4))[0]), 0.5)
    assert np.isfinite(model.predict(np.zeros(4, np.float32))[0]).all()


def test_acrobot_terminal_value_is_the_tip_height_the_env_uses():
    from sb3_mbrl.envs.terminal_values import acrobot_terminal_value

    env = gym.make("Acrobot-v1")
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    obs, heights = [], []
    for _ in range(200):
        state = rng.uniform([-np.pi, -np.pi, -4, -9], [np.pi, np.pi, 4, 9])
        env.unwrapped.state = state
        obs.append(env.unwrapped._get_ob())
        heights.append(-np.cos(state[0]) - np.cos(state[1] + state[0]))  # AcrobotEnv._terminal's height
    value = acrobot_terminal_value(th.as_tensor(np.array(obs), dtype=th.float32))
    th.testing.assert_close(value, th.as_tensor(0.5 * (np.array(heights) + 2) / 4, dtype=th.float32), atol=1e-5, rtol=0)
    assert bool((value >= 0).all()) and bool((value <= 0.5).all())  # below one step's reward



@pytest.mark.parametrize("env_id", ["CartPole-v1", "Acrobot-v1"])
def test_the_zoo_entries_of_the_discrete_tasks_plan_with_their_terminal_value(env_id):
    from sb3_mbrl.common.zoo_config import load_zoo_hyperparams, zoo_config_dir

    kwargs = load_zoo_hyperparams("pets", env_id, str(zoo_config_dir() / "pets.yml")).kwargs
    assert kwargs["terminal_value_fn"] == "auto"
    model = PETS("MlpPolicy", env_id, **kwargs)
    assert model.policy.model_env.terminal_value_fn is get_terminal_value_fn(env_id) is not None
