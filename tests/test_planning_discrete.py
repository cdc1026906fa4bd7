"""Planners over Discrete(n) actions, on objectives whose optimum is known."""
import pytest
import torch as th

from sb3_mbrl.planning import (
    DISCRETE_OPTIMIZERS,
    CategoricalCEMOptimizer,
    CategoricalRandomShootingOptimizer,
    floor_probabilities,
    make_discrete_optimizer,
)

M, H, N = 3, 5, 4

SETTINGS = {
    "cem": dict(population_size=200, iterations=6),
    "random": dict(population_size=4000, iterations=2),  # 4^5 = 1024 sequences: all but surely seen
}


def reward_table(seed: int = 0) -> th.Tensor:
    """``R (M, H, n)`` with a unique best action per step and start (margin >= 0.2 over the rest)."""
    gen = th.Generator().manual_seed(seed)
    table = th.rand(M, H, N, generator=gen)
    best = th.randint(N, (M, H), generator=gen)
    table.scatter_(2, best[..., None], table.max(dim=2, keepdim=True).values + 0.2 + th.rand(M, H, 1, generator=gen))
    return table


def table_objective(table: th.Tensor, seen=None):
    """Value of one-hot candidates (M, P, H, n): the sum over steps of R at the chosen actions."""

    def objective(candidates: th.Tensor) -> th.Tensor:
        if seen is not None:
            seen.append(candidates)
        return (candidates * table[:, None]).sum(dim=(2, 3))

    return objective


@pytest.mark.parametrize("name", sorted(DISCRETE_OPTIMIZERS))
def test_finds_optimum_for_each_start(name):
    th.manual_seed(0)
    table = reward_table()
    optimum = table.argmax(dim=2)  # (M, H)
    seen = []
    opt = make_discrete_optimizer(name, N, H, **SETTINGS[name])
    plan = opt.optimize(table_objective(table, seen), n_starts=M)
    assert plan.shape == (M, H, N) and plan.dtype == th.float32
    assert th.allclose(plan.sum(-1), th.ones(M, H), atol=1e-5)
    # The policy acts with the argmax of the plan's first step; here the whole plan's argmax is the optimum.
    assert th.equal(plan.argmax(dim=-1), optimum)
    assert th.equal(opt.first_actions(plan), optimum[:, 0])
    assert th.equal(opt.best_sequences(), optimum)
    assert th.allclose(opt.best_values(), table.max(dim=2).values.sum(dim=1))
    # Candidates are one-hot float sequences (M, P, H, n).
    candidates = seen[-1]
    assert candidates.shape[:1] == (M,) and candidates.shape[2:] == (H, N) and candidates.dtype == th.float32
    assert ((candidates == 0) | (candidates == 1)).all() and (candidates.sum(-1) == 1).all()


def test_cem_probabilities_keep_the_floor_and_sum_to_one():
    th.manual_seed(1)
    table = reward_table(1)
    opt = CategoricalCEMOptimizer(N, H, population_size=100, iterations=10, alpha=0.0, min_prob=0.05)
    plan = opt.optimize(table_objective(table), n_starts=M)
    assert (plan >= 0.05 - 1e-6).all()
    assert th.allclose(plan.sum(-1), th.ones(M, H), atol=1e-5)
    # Converged: the optimum takes all the mass the floor leaves.
    assert th.allclose(plan.max(dim=-1).values, th.full((M, H), 1 - (N - 1) * 0.05), atol=1e-5)
    # Floor: raises low entries, leaves rows that already satisfy it unchanged.
    floored = floor_probabilities(th.tensor([[1.0, 0.0, 0.0, 0.0], [0.4, 0.3, 0.2, 0.1]]), 0.1)
    assert th.allclose(floored, th.tensor([[0.7, 0.1, 0.1, 0.1], [0.4, 0.3, 0.2, 0.1]]))


def test_defaults_and_return_best_sequence():
    opt = make_discrete_optimizer("cem", N, H)
    assert (opt.population_size, opt.num_elites, opt.iterations, opt.alpha, opt.min_prob) == (100, 10, 5, 0.1, 0.01)
    assert CategoricalCEMOptimizer(N, H, population_size=5).num_elites == 1
    assert make_discrete_optimizer("random", N, H).population_size == 1000
    uniform = opt.initial_mean(2)
    assert uniform.shape == (2, H, N) and th.allclose(uniform, th.full((2, H, N), 1 / N))
    th.manual_seed(2)
    table = reward_table(2)
    best = CategoricalCEMOptimizer(N, H, population_size=200, iterations=6, return_mean_elites=False)
    plan = best.optimize(table_objective(table), n_starts=M)
    assert th.equal(plan, th.nn.functional.one_hot(table.argmax(2), N).float())


def test_warm_start_is_used():
    th.manual_seed(3)
    table = reward_table(3)
    optimum = table.argmax(dim=2)
    concentrated = floor_probabilities(th.nn.functional.one_hot(optimum, N).float(), 0.01)  # 0.97 on the optimum
    opt = CategoricalCEMOptimizer(N, H, population_size=30, num_elites=3, iterations=1)
    cold = opt.optimize(table_objective(table), n_starts=M)
    warm = opt.optimize(table_objective(table), initial_mean=concentrated)
    assert th.equal(warm.argmax(-1), optimum)
    assert not th.equal(cold.argmax(-1), optimum)  # one iteration from uniform is not enough
    on_optimum = lambda plan: plan.gather(2, optimum[..., None]).mean()  # noqa: E731
    assert on_optimum(warm) > on_optimum(cold) + 0.3
    # Random shooting scores the warm start's argmax sequence: one candidate per iteration is enough.
    shooter = CategoricalRandomShootingOptimizer(N, H, population_size=1)
    assert th.equal(shooter.optimize(table_objective(table), initial_mean=concentrated).argmax(-1), optimum)
    # The MPC policy's warm start: the shifted plan plus a uniform tail step.
    shifted = th.cat([warm[:, 1:], opt.initial_mean(M)[:, :1]], dim=1)
    assert opt.optimize(table_objective(table), initial_mean=shifted).shape == (M, H, N)
    with pytest.raises(ValueError, match="initial_mean"):
        opt.optimize(table_objective(table), initial_mean=th.ones(M, H + 1, N))
    with pytest.raises(ValueError, match="initial_mean"):
        opt.optimize(table_objective(table), initial_mean=-th.ones(M, H, N))


@pytest.mark.parametrize("name", sorted(DISCRETE_OPTIMIZERS))
def test_nan_candidates_rank_last(name):
    """Action 3 at step 0 pays most but the model gives NaN/inf there: the plan must avoid it."""
    th.manual_seed(4)
    table = th.zeros(M, H, N)
    table[:, :, 1] = 1.0
    table[:, 0, 3] = 10.0

    def objective(candidates):
        value = (candidates * table[:, None]).sum(dim=(2, 3))
        broken = candidates[:, :, 0, 3] > 0
        value = th.where(broken, th.full_like(value, float("nan")), value)
        return th.where(broken & (candidates[:, :, 1, 0] > 0), th.full_like(value, float("inf")), value)

    plan = make_discrete_optimizer(name, N, H, **SETTINGS[name]).optimize(objective, n_starts=M)
    assert th.equal(plan.argmax(-1), th.ones(M, H, dtype=th.long))
    assert th.isfinite(plan).all()


def test_bad_arguments():
    refused = "'icem'/'mppi' plan continuous actions only; for Discrete action spaces use 'cem' or 'random'"
    for name in ("icem", "mppi"):
        with pytest.raises(ValueError, match=refused):
            make_discrete_optimizer(name, N, H)
    with pytest.raises(ValueError, match="Unknown discrete optimizer 'newton'"):
        make_discrete_optimizer("newton", N, H)
    with pytest.raises(ValueError, match="n_actions"):
        make_discrete_optimizer("cem", 1, H)
    with pytest.raises(ValueError, match="n_actions"):
        make_discrete_optimizer("random", 2.5, H)
    with pytest.raises(ValueError, match="positive"):
        make_discrete_optimizer("cem", N, 0)
    with pytest.raises(ValueError, match="positive"):
        make_discrete_optimizer("random", N, H, population_size=0)
    with pytest.raises(ValueError, match="num_elites"):
        make_discrete_optimizer("cem", N, H, population_size=10, num_elites=11)
    with pytest.raises(ValueError, match="alpha"):
        make_discrete_optimizer("cem", N, H, alpha=1.0)
    with pytest.raises(ValueError, match="alpha"):
        make_discrete_optimizer("cem", N, H, alpha=-0.1)
    with pytest.raises(ValueError, match="min_prob"):
        make_discrete_optimizer("cem", N, H, min_prob=1 / N)
    with pytest.raises(ValueError, match="min_prob"):
        make_discrete_optimizer("cem", N, H, min_prob=-0.01)
    opt = make_discrete_optimizer("cem", N, H)
    with pytest.raises(RuntimeError, match="optimize"):
        opt.best_sequences()
    with pytest.raises(ValueError, match="objective must return"):
        opt.optimize(lambda c: c.sum(dim=(2, 3))[:, :1], n_starts=2)
