"""The planning forward (EnsembleInference) and the member-grouped TS-inf rollout against the plain paths."""
import gymnasium as gym
import numpy as np
import pytest
import torch as th

from sb3_mbrl.dynamics import EnsembleTrainer, ModelEnv, ProbabilisticEnsemble
from sb3_mbrl.dynamics.inference import EnsembleInference
from sb3_mbrl.planning import CEMOptimizer


def _random_model(seed: int = 0, n_members: int = 5, n_elites: int = 3) -> ProbabilisticEnsemble:
    """A model with non-trivial weights, normaliser and elites (members 0, 2, 4 of 5)."""
    th.manual_seed(seed)
    model = ProbabilisticEnsemble(3, 2, ensemble_size=n_members, hidden_sizes=(32, 32), num_elites=n_elites)
    with th.no_grad():
        for p in model.parameters():
            p.add_(0.3 * th.randn_like(p))
    inputs, targets = th.randn(200, 5) * 2 + 1, th.randn(200, 4) * 0.5 - 0.2
    model.fit_normalizer(inputs, targets)
    model.elite_indices.copy_(th.tensor([0, 2, 4])[:n_elites])
    return model


@pytest.mark.parametrize("members", [None, th.tensor([0, 2, 4])])
def test_inference_matches_ensemble_predict(members):
    model = _random_model()
    n = 5 if members is None else 3
    obs, act = th.randn(n, 7, 3), th.randn(n, 7, 2)
    inference = EnsembleInference(model)
    mean, var = inference.predict(obs, act, members)
    ref_mean, ref_var = model.predict(obs, act, members=members)
    th.testing.assert_close(mean, ref_mean, rtol=1e-5, atol=1e-6)
    th.testing.assert_close(var, ref_var, rtol=1e-5, atol=1e-7)
    # bfloat16: the same function as the ensemble under autocast, within bf16 rounding.
    with th.autocast("cpu", dtype=th.bfloat16):
        auto_mean, _ = model.predict(obs, act, members=members)
    bf_mean, bf_var = EnsembleInference(model, th.bfloat16).predict(obs, act, members)
    assert bf_mean.dtype == th.float32 and bf_var.dtype == th.float32
    th.testing.assert_close(bf_mean, auto_mean.float(), rtol=0.05, atol=0.05)


def test_inference_follows_weight_and_elite_changes():
    """The cast weights are a cache: an optimiser step, a loaded state dict or new elites must show."""
    model = _random_model()
    inference = EnsembleInference(model)
    obs, act = th.randn(5, 4, 3), th.randn(5, 4, 2)
    before = inference.predict(obs, act)[0].clone()
    optimizer = th.optim.Adam(model.parameters(), lr=0.1)
    model.nll_loss(th.randn(5, 8, 5), th.randn(5, 8, 4)).sum().backward()
    optimizer.step()
    after = inference.predict(obs, act)[0]
    assert not th.allclose(before, after)
    th.testing.assert_close(after, model.predict(obs, act)[0], rtol=1e-5, atol=1e-6)
    model.load_state_dict(_random_model(seed=1).state_dict())
    th.testing.assert_close(inference.predict(obs, act)[0], model.predict(obs, act)[0], rtol=1e-5, atol=1e-6)
    three = (obs[:3], act[:3])
    elites_a = inference.predict(*three, model.elite_indices)[0].clone()
    model.elite_indices.copy_(th.tensor([1, 2, 3]))
    elites_b = inference.predict(*three, model.elite_indices)[0]
    th.testing.assert_close(elites_b, model.predict(*three, members=th.tensor([1, 2, 3]))[0], rtol=1e-5, atol=1e-6)
    assert not th.allclose(elites_a, elites_b)


def _step_by_step_returns(env: ModelEnv, seqs: th.Tensor, obs0: th.Tensor, n_particles: int) -> th.Tensor:
    """Per-row returns of the plain TS-inf rollout: gather and scatter through ``step`` at every step."""
    population, horizon, action_dim = seqs.shape
    n_rows = population * n_particles
    obs = obs0.expand(n_rows, -1).clone()
    actions = seqs.repeat_interleave(n_particles, dim=0)  # (P*N, H, A)
    env.reset(n_rows)
    return env._rollout(obs, actions.transpose(0, 1), env.step)


@pytest.mark.parametrize("deterministic", [False, True])
@pytest.mark.parametrize("n_particles", [4, 7])  # 7 x 9 rows do not split into 3 elites: padding
def test_grouped_fixed_model_rollout_equals_step_by_step(deterministic, n_particles):
    model = _random_model()
    kwargs = dict(
        propagation="fixed_model",
        deterministic=deterministic,
        termination_fn=lambda o, a, n: n[:, 0] > 3.0,
        terminal_value_fn=lambda o: -o[:, 1].abs(),
    )
    seqs, obs0 = th.randn(9, 6, 2), th.randn(3)
    grouped_env = ModelEnv(model, generator=th.Generator().manual_seed(3), **kwargs)
    grouped = grouped_env.evaluate_action_sequences(seqs, obs0, num_particles=n_particles)  # (P,)
    plain_env = ModelEnv(model, generator=th.Generator().manual_seed(3), **kwargs)
    per_row = _step_by_step_returns(plain_env, seqs, obs0, n_particles)  # (P*N,)
    assert per_row.shape == (9 * n_particles,)
    th.testing.assert_close(grouped, per_row.view(9, n_particles).mean(dim=1), rtol=1e-5, atol=1e-5)
    # Per particle, not only on average: the grouped rollout's rows put back in row order.
    grouped_env = ModelEnv(model, generator=th.Generator().manual_seed(3), **kwargs)
    obs = obs0.expand(9 * n_particles, -1).clone()
    grouped_env.reset(9 * n_particles)
    rows = grouped_env._rollout_grouped(obs, seqs.repeat_interleave(n_particles, dim=0))
    th.testing.assert_close(rows, per_row, rtol=1e-5, atol=1e-5)
    assert rows.std() > 0  # the members and the noise differ across particles


def _pendulum_model() -> ProbabilisticEnsemble:
    env = gym.make("Pendulum-v1")
    obs, _ = env.reset(seed=0)
    env.action_space.seed(0)
    rows = []
    for _ in range(600):
        action = env.action_space.sample()
        next_obs, reward, terminated, truncated, _ = env.step(action)
        rows.append((obs, action, next_obs, reward))
        obs = env.reset()[0] if terminated or truncated else next_obs
    o, a, n, r = (np.array(x, dtype=np.float32) for x in zip(*rows))
    th.manual_seed(0)
    model = ProbabilisticEnsemble(3, 1, ensemble_size=5, hidden_sizes=(64, 64))
    EnsembleTrainer(model, max_epochs=40, min_updates=0).fit(o, a, n, r, generator=th.Generator().manual_seed(0))
    return model


def test_bf16_and_fp32_plans_reach_the_same_predicted_return():
    """On a fixed fitted model and fixed seeds, the bf16 planner's plans score within 1% of the fp32 ones."""
    model = _pendulum_model()
    starts = th.tensor([[-1.0, 0.0, 0.0], [0.0, 1.0, -1.0], [0.8, -0.6, 2.0], [-0.5, -0.87, 0.5]])
    judge = ModelEnv(model, propagation="expectation", deterministic=True)  # fp32 scores both plans
    gaps = []
    for dtype in (None, th.bfloat16):
        env = ModelEnv(model, propagation="fixed_model", compute_dtype=dtype, generator=th.Generator().manual_seed(0))
        planner = CEMOptimizer(-2 * np.ones(1), 2 * np.ones(1), horizon=15, population_size=300, iterations=5)
        th.manual_seed(0)
        plans = planner.optimize(lambda c: env.evaluate_action_sequences(c, starts, 5), n_starts=4)  # (M, H, A)
        gaps.append(judge.evaluate_action_sequences(plans[:, None], starts)[:, 0])  # (M,)
    fp32_returns, bf16_returns = gaps
    assert (fp32_returns < -1.0).all()  # a real task: the returns are far from 0
    relative = ((bf16_returns - fp32_returns) / fp32_returns.abs()).abs()
    assert relative.max() < 0.01, (fp32_returns, bf16_returns)


def test_policy_fitted_flag_follows_fill_and_loaded_state():
    """MPCPolicy.is_fitted() caches bool(fitted) (no device sync per step) but must see every change."""
    from sb3_mbrl.pets.policies import MPCPolicy

    env = gym.make("Pendulum-v1")
    make = lambda: MPCPolicy(env.observation_space, env.action_space, lambda _: 1e-3, net_arch=[8])  # noqa: E731
    policy, fresh = make(), make()
    assert not policy.is_fitted()
    policy.fitted.fill_(True)
    assert policy.is_fitted()
    policy.load_state_dict(fresh.state_dict())
    assert not policy.is_fitted()
    fresh.fitted.fill_(True)
    policy.load_state_dict(fresh.state_dict())
    assert policy.is_fitted()
