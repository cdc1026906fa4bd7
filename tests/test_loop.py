"""LOOP (issue 17): MPC over the ensemble with SAC's critic as the terminal value, on SAC trained as MBPO trains it."""
import numpy as np
import pytest
import torch as th
from stable_baselines3 import SAC
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_mbrl import LOOP, MBPO
from sb3_mbrl.dynamics import ModelEnv, ProbabilisticEnsemble
from sb3_mbrl.loop.critic_value import critic_value_fn
from sb3_mbrl.loop.policy_prior import actor_rollouts
from sb3_mbrl.loop.value_error import EpisodeValueError, discounted_returns_to_go, relative_value_error
from test_mbpo import TINY as MBPO_TINY
from tiny_envs import PointMassEnv, point_mass_reward

# MBPO's tiny settings plus a small planner (the learning test is in tests/test_learning.py).
TINY = dict(
    **MBPO_TINY,
    horizon=3,
    num_particles=2,
    planner_kwargs=dict(population_size=20, num_elites=4, iterations=2),
    policy_prior_samples=3,
)


@pytest.fixture(autouse=True)
def one_thread():
    th.set_num_threads(1)


def tiny_loop(env="Pendulum-v1", **kwargs) -> LOOP:
    return LOOP("MlpPolicy", env, seed=0, **{**TINY, **kwargs})


def fitted_loop(**kwargs) -> LOOP:
    model = tiny_loop(**kwargs)
    model.learn(150)  # one model fit at step 100, then planned actions
    assert model._model_fitted
    return model


# ---------------------------------------------------------------- the objective
def test_model_env_discounts_rewards_and_terminal_value():
    ensemble = ProbabilisticEnsemble(1, 1, ensemble_size=2, hidden_sizes=[8], learn_reward=False)
    reward = lambda obs, act, next_obs: th.ones(obs.shape[0])  # noqa: E731
    value = lambda obs: th.full((obs.shape[0],), 10.0)  # noqa: E731
    candidates = th.zeros(1, 4, 3, 1)  # (M, P, H, A)
    obs = th.zeros(1, 1)
    for discount, expected in [(1.0, 3 + 10.0), (0.5, 1 + 0.5 + 0.25 + 0.125 * 10)]:
        env = ModelEnv(ensemble, reward, terminal_value_fn=value, propagation="fixed_model", deterministic=True, discount=discount)
        returns = env.evaluate_action_sequences(candidates, obs, num_particles=2)
        assert th.allclose(returns, th.full((1, 4), expected)), (discount, returns)
    with pytest.raises(ValueError, match="discount"):
        ModelEnv(ensemble, reward, discount=0.0)


def test_planning_objective_is_discounted_model_return_plus_critic_value():
    model = fitted_loop()
    env = model.planning_env
    env.deterministic = True
    obs = th.as_tensor(model.get_env().reset(), dtype=th.float32)  # (1, 3)
    candidates = th.rand(1, 5, model.horizon, 1) * 4 - 2  # (M, P, H, A) in Pendulum's [-2, 2]
    th.manual_seed(3)
    got = env.evaluate_action_sequences(candidates, obs, num_particles=1)[0]  # (P,)
    # By hand: the same member draw (TS-inf, one particle per candidate), each row stepped through
    # its member's mean, Pendulum's known reward discounted by gamma, and gamma^H min Q at mu(s_H).
    rows = candidates[0]  # (P, H, A)
    th.manual_seed(3)
    env.reset(rows.shape[0])
    members = env.member_indices(rows.shape[0])  # (P,)
    state = obs.expand(rows.shape[0], -1)
    expected = th.zeros(rows.shape[0])
    with th.no_grad():
        for t in range(model.horizon):
            mean, _ = model.dynamics.predict(state, rows[:, t])  # (E, P, out)
            next_state = state + mean[members, th.arange(rows.shape[0]), : state.shape[1]]
            expected += model.gamma**t * model.model_env.reward_fn(state, rows[:, t], next_state)
            state = next_state
        q = th.cat(model.critic(state, model.actor(state, deterministic=True)), dim=1).min(dim=1).values
    expected += model.gamma**model.horizon * q
    assert th.allclose(got, expected, rtol=1e-4, atol=1e-3), (got, expected)


def test_soft_critic_value_subtracts_the_entropy_term():
    model = fitted_loop(ent_coef=0.5)
    obs = th.randn(64, 3)
    soft = critic_value_fn(model, "soft_critic")
    hard = critic_value_fn(model, "critic")
    th.manual_seed(0)
    got = soft(obs)
    th.manual_seed(0)
    with th.no_grad():
        actions, log_prob = model.actor.action_log_prob(obs)
        expected = th.cat(model.critic(obs, actions), dim=1).min(dim=1).values - 0.5 * log_prob
    assert got.shape == (64,) and th.allclose(got, expected)
    with th.no_grad():
        mean_q = th.cat(model.critic(obs, model.actor(obs, deterministic=True)), dim=1).min(dim=1).values
    assert th.allclose(hard(obs), mean_q)


def test_actor_warm_start_plans_around_the_actors_rollout():
    model = fitted_loop(warm_start="actor", policy_prior_samples=2)
    seen = []
    step = model.receding_horizon.step
    model.receding_horizon.step = lambda *args: seen.append(args) or step(*args)
    obs = np.array([[0.3, -0.9, 0.5]], dtype=np.float32)
    model.predict(obs, deterministic=True)
    (_, _, _, prior, initial_mean), = seen
    assert th.equal(initial_mean, prior[:, 0])  # the actor's mean rollout is the search's mean


def test_actor_rollouts_start_with_the_mean_actions_and_stay_in_bounds():
    model = fitted_loop()
    env = model.planning_env
    env.deterministic = True
    obs = th.randn(2, 3)
    low, high = model.action_space.low, model.action_space.high
    sequences = actor_rollouts(model.actor, env, obs, n_samples=4, horizon=3, low=low, high=high)  # (M, K, H, A)
    assert sequences.shape == (2, 4, 3, 1)
    assert (sequences >= -2).all() and (sequences <= 2).all()
    with th.no_grad():
        first = 2 * model.actor(obs, deterministic=True)  # Pendulum: [-1, 1] -> [-2, 2]
    assert th.allclose(sequences[:, 0, 0], first, atol=1e-5)  # the mean action, not a sample
    assert not th.allclose(sequences[:, 1, 0], first)  # the others are sampled


def test_the_terminal_value_changes_the_plan():
    # Point mass at rest at the origin, horizon 1: the reward alone says stay (any push costs
    # -0.01 a^2 and moves x'), a value that pays for x > 0 after the step says push right.
    # (A model fitted to convergence on the 100 random steps: the value reads its predicted velocity.)
    settings = {**TINY, "horizon": 1, "policy_prior_samples": 0, "model_epochs": None}
    model = LOOP("MlpPolicy", PointMassEnv(), seed=0, reward_fn=point_mass_reward, **settings)
    model.learn(150)
    obs = np.zeros((1, 2), dtype=np.float32)
    model.terminal_value = None
    no_value, _ = model.predict(obs, deterministic=True)
    model.terminal_value = lambda s: 100.0 * s[:, 1]  # velocity after the step
    with_value, _ = model.predict(obs, deterministic=True)
    assert abs(float(no_value[0, 0])) < 0.5 and float(with_value[0, 0]) > 0.8, (no_value, with_value)
    model.value_starts = 10_000  # not yet: the value is left out
    assert np.allclose(model.predict(obs, deterministic=True)[0], no_value)


# ---------------------------------------------------------------- acting, SB3's way
def test_acts_like_sac_before_the_first_fit_and_with_plan_actions_false():
    model = tiny_loop()
    obs = model.get_env().reset()
    sac_action, _ = model.policy.predict(obs, deterministic=True)
    assert np.allclose(model.predict(obs, deterministic=True)[0], sac_action)  # no model yet: the actor
    model.learn(150)
    planned, _ = model.predict(obs, deterministic=True)
    model.plan_actions = False
    assert np.allclose(model.predict(obs, deterministic=True)[0], model.policy.predict(obs, deterministic=True)[0])
    model.plan_actions = True
    assert not np.allclose(planned, model.policy.predict(obs, deterministic=True)[0])


def test_deterministic_predict_is_repeatable_and_leaves_the_global_rng():
    model = fitted_loop()
    obs = np.array([[0.3, -0.9, 0.5]], dtype=np.float32)
    state = th.random.get_rng_state()
    first, _ = model.predict(obs, episode_start=np.array([True]), deterministic=True)
    second, _ = model.predict(obs, episode_start=np.array([True]), deterministic=True)
    assert np.array_equal(first, second)
    assert th.equal(th.random.get_rng_state(), state)
    single, _ = model.predict(obs[0], episode_start=np.array([True]), deterministic=True)
    assert single.shape == (1,) and np.allclose(single, first[0])


def test_save_load_plans_the_same_and_loads_as_bare_actor(tmp_path):
    model = fitted_loop(planning_dtype="float32", horizon=4)
    obs = np.array([[0.3, -0.9, 0.5]], dtype=np.float32)
    before, _ = model.predict(obs, episode_start=np.array([True]), deterministic=True)
    model.save(tmp_path / "loop")
    loaded = LOOP.load(tmp_path / "loop", env=model.get_env())
    assert loaded.horizon == 4 and loaded.policy_prior_samples == TINY["policy_prior_samples"]
    after, _ = loaded.predict(obs, episode_start=np.array([True]), deterministic=True)
    assert np.allclose(before, after, atol=1e-5)
    actor = LOOP.load(tmp_path / "loop", plan_actions=False)
    assert np.allclose(actor.predict(obs, deterministic=True)[0], model.policy.predict(obs, deterministic=True)[0], atol=1e-6)
    loaded.learn(100, reset_num_timesteps=False)  # continues: refits on its new real data, plans
    assert loaded.num_timesteps == 250


def test_two_envs_and_a_second_learn():
    model = tiny_loop(make_vec_env("Pendulum-v1", n_envs=2, seed=0))
    model.learn(200)
    obs = model.get_env().reset()
    actions, _ = model.predict(obs, episode_start=np.array([True, True]), deterministic=True)
    assert actions.shape == (2, 1) and np.isfinite(actions).all()
    model.learn(100, reset_num_timesteps=False)
    assert model.num_timesteps == 300
    model.learn(100)  # a new run: counters restart, warm starts are dropped
    assert model.num_timesteps == 100


def test_evaluate_policy_with_two_eval_envs():
    model = fitted_loop()
    mean, _ = evaluate_policy(model, make_vec_env("Pendulum-v1", n_envs=2, seed=1), n_eval_episodes=2)
    assert np.isfinite(mean)


def test_bad_input():
    with pytest.raises(ValueError, match="terminal_value_fn"):
        tiny_loop(terminal_value_fn="q")
    with pytest.raises(ValueError, match="icem"):
        tiny_loop(planner="cem")  # a policy prior needs iCEM's extra candidates
    tiny_loop(planner="cem", policy_prior_samples=0)
    with pytest.raises(ValueError, match="horizon"):
        tiny_loop(horizon=0)
    with pytest.raises(ValueError, match="value_starts"):
        tiny_loop(value_starts=-1)
    with pytest.raises(ValueError, match="warm_start"):
        tiny_loop(warm_start="previous")
    with pytest.raises(ValueError, match="warm_start"):
        tiny_loop(warm_start="actor", policy_prior_samples=0)
    with pytest.raises(ValueError, match="planning_dtype"):
        tiny_loop(planning_dtype="float16")
    with pytest.raises(ValueError, match="Box"):
        LOOP("MlpPolicy", "CartPole-v1")


def test_is_an_mbpo_and_a_sac():
    model = tiny_loop()
    assert isinstance(model, MBPO) and isinstance(model, SAC)
    assert model.gradient_steps == TINY["gradient_steps"] and model.model_train_freq == TINY["model_train_freq"]


# ---------------------------------------------------------------- rl-zoo
def test_zoo_train_and_enjoy(tmp_path):
    import subprocess
    import sys

    hyperparams = ["--hyperparams", "planner_kwargs:dict(population_size=20,num_elites=4,iterations=2)", "horizon:3",
                   "model_net_arch:[32,32]", "num_particles:1", "gradient_steps:1", "rollout_batch_size:256",
                   "model_epochs:5", "ensemble_size:3", "num_elites:2", "policy_kwargs:dict(net_arch=[32,32])"]
    run = lambda args: subprocess.run([sys.executable, "-m", "sb3_mbrl", *args], cwd=tmp_path, capture_output=True, text=True, timeout=300)  # noqa: E731
    train = run(["train", "--algo", "loop", "--env", "Pendulum-v1", "-n", "400", "-f", "logs", "--seed", "0",
                 "--eval-freq", "400", "--eval-episodes", "2", *hyperparams])
    assert train.returncode == 0, train.stdout[-3000:] + train.stderr[-3000:]
    run_dir = tmp_path / "logs" / "loop" / "Pendulum-v1_1"
    assert (run_dir / "Pendulum-v1.zip").is_file()
    evaluations = np.load(run_dir / "evaluations.npz")
    assert evaluations["results"].shape == (1, 2)  # the two episodes side by side, each its own return
    assert len(set(evaluations["results"][0].round(3))) == 2
    loaded = LOOP.load(run_dir / "Pendulum-v1.zip")
    assert loaded.horizon == 3 and loaded.gamma == 0.99 and loaded.learning_starts == 200  # the zoo entry's own setting
    enjoy = run(["enjoy", "--algo", "loop", "--env", "Pendulum-v1", "-f", "logs", "-n", "200", "--no-render"])
    assert enjoy.returncode == 0, enjoy.stdout[-3000:] + enjoy.stderr[-3000:]


def test_search_space_builds_loops():
    import optuna

    from sb3_mbrl.zoo.search_spaces import hyperparams_from_params, sample_loop_params

    for seed in range(4):
        trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed)).ask()
        hyperparams = sample_loop_params(trial, 0, 1, {})
        assert hyperparams_from_params("loop", trial.params) == hyperparams  # what `sb3-mbrl best` writes
        model = LOOP("MlpPolicy", "Pendulum-v1", **hyperparams)  # every sample is a valid LOOP
        assert model.horizon == hyperparams["horizon"] and model.receding_horizon.planner.horizon == model.horizon


def test_logs_planning_times_of_data_collection_only():
    from stable_baselines3.common.logger import configure

    model = tiny_loop(plan_collection=True)
    model.set_logger(configure(None, ["csv"]))
    records = {}
    record = model.logger.record
    model.logger.record = lambda key, value, exclude=None: records.__setitem__(key, value) or record(key, value, exclude)
    model.learn(210, log_interval=1)  # the dump at the end of the first episode (step 200)
    # Planned: steps 102-200 (SAC's first update, and with it the first model fit, follows step 101).
    assert records["time/planning_steps"] == 99 and records["time/planning_ms"] > 0
    collected = len(model.planning_ms)  # steps 201-210, since the dump
    evaluate_policy(model, model.get_env(), n_eval_episodes=1)  # evaluations are not collection steps
    assert collected == 10 and len(model.planning_ms) == collected


def test_value_starts_counts_every_env_step_the_model_collected():
    model = tiny_loop(value_starts=200, plan_collection=True)
    model.learn(150)
    assert model.planning_env.terminal_value_fn is None  # 150 steps: not yet
    model.learn(150)  # a new run: num_timesteps restarts at 0 (random until 100, as SAC), the model's 300th step
    assert model.planning_env.terminal_value_fn is model.terminal_value


def test_the_actor_collects_unless_plan_collection():
    model = fitted_loop()
    planned = []
    plan = model._plan
    model._plan = lambda obs: planned.append(obs) or plan(obs)
    model.learn(20, reset_num_timesteps=False)
    assert planned == []  # SAC's actor collected, as in MBPO
    evaluate_policy(model, model.get_env(), n_eval_episodes=1)
    assert len(planned) == 200  # evaluation planned every step
    model.plan_collection = True
    planned.clear()
    model.learn(20, reset_num_timesteps=False)
    assert len(planned) == 20


@pytest.mark.skipif(not th.cuda.is_available(), reason="needs CUDA")
def test_cuda():
    model = tiny_loop(device="cuda", plan_collection=True)
    model.learn(150)
    assert model.receding_horizon.planner.device.type == "cuda"
    actions, _ = model.predict(np.zeros((2, 3), dtype=np.float32), deterministic=True)
    assert actions.shape == (2, 1) and np.isfinite(actions).all()


# ---------------------------------------------------------------- the value's gate (value_max_error)
def test_discounted_returns_to_go_bootstrap_only_truncated_episodes():
    rewards = np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(discounted_returns_to_go(rewards, 0.5), [1 + 0.5 * 2 + 0.25 * 3, 2 + 0.5 * 3, 3])
    np.testing.assert_allclose(discounted_returns_to_go(rewards, 0.5, bootstrap=8.0), [2.75 + 0.125 * 8, 3.5 + 0.25 * 8, 3 + 0.5 * 8])
    # the first half of the states (at least one), bias over scale
    assert relative_value_error(np.array([-1.0, -3.0, 0.0, 0.0]), np.array([-2.0, -4.0, 9.0, 9.0])) == pytest.approx(1 / 3)
    assert relative_value_error(np.array([5.0]), np.array([-5.0])) == pytest.approx(2.0)
    # the scale is the real rewards' returns, without the bootstrap
    assert relative_value_error(np.array([5.0]), np.array([4.0]), real_returns=np.array([-0.5])) == pytest.approx(2.0)


def test_episode_value_error_compares_the_value_with_each_ended_episode():
    gamma, value = 0.9, lambda obs: obs[:, 0].double() * 0 - 10.0  # noqa: E731  V = -10 everywhere
    tracker = EpisodeValueError(n_envs=2, gamma=gamma)
    obs, errors = np.zeros((2, 1), np.float32), []
    for t in range(4):  # env 0: 4 steps of reward -1, truncated; env 1: terminated after 2 steps
        dones = np.array([t == 3, t == 1])
        infos = [{"TimeLimit.truncated": True, "terminal_observation": np.zeros(1)} if t == 3 else {}, {}]
        if t >= 2:
            dones[1] = False
        errors += tracker.record(obs, np.array([-1.0, -1.0]), dones, infos, value, th.device("cpu"))
    returns_env1 = discounted_returns_to_go(np.array([-1.0, -1.0]), gamma)  # terminated: no bootstrap
    returns_env0 = discounted_returns_to_go(-np.ones(4), gamma, bootstrap=-10.0)
    real_env0 = discounted_returns_to_go(-np.ones(4), gamma)
    expected = [relative_value_error(np.full(2, -10.0), returns_env1), relative_value_error(np.full(4, -10.0), returns_env0, real_env0)]
    assert errors == pytest.approx(expected)
    assert tracker.obs[0] == [] and len(tracker.obs[1]) == 2  # env 1 is 2 steps into its next episode


@pytest.mark.parametrize("value_offset, trusted", [(0.0, True), (1000.0, False)])
def test_the_value_enters_plans_only_while_it_predicts_the_real_returns(value_offset, trusted):
    # PointMass's reward is -(x')^2 - 0.01 a^2 per step (episodes of 20 here): a value near 0 is close
    # to the returns of its short episodes, one 1,000 above them fails the gate.
    value = lambda obs: th.zeros(obs.shape[0]) + value_offset  # noqa: E731
    model = tiny_loop(env=PointMassEnv(max_steps=20), reward_fn=point_mass_reward, terminal_value_fn=value, value_max_error=1.0)
    model.learn(15)
    assert model.value_error is None and not model.value_in_plans()  # no episode has ended yet
    model.learn(105, reset_num_timesteps=False)  # 6 episodes, the model fitted at step 100
    assert model.value_error is not None and model.value_in_plans() == trusted
    model.predict(np.zeros(2, np.float32))
    assert (model.planning_env.terminal_value_fn is value) == trusted
    if not trusted:
        assert model.value_error > 10


def test_value_error_is_logged_saved_and_off_by_default(tmp_path):
    model = tiny_loop(value_max_error=0.5)
    model.learn(250)  # one Pendulum episode ended at step 200
    assert model.value_error is not None and model.value_error > 0
    model.save(tmp_path / "loop")
    loaded = LOOP.load(tmp_path / "loop")
    assert loaded.value_error == model.value_error and loaded.value_max_error == 0.5
    default = tiny_loop()
    default.learn(250)
    default.predict(np.zeros(3, np.float32))
    assert default.value_max_error is None and default.planning_env.terminal_value_fn is default.terminal_value
    with pytest.raises(ValueError, match="value_max_error"):
        tiny_loop(value_max_error=0)
