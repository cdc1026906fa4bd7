"""Planners alone, on objectives whose optimum is known."""
import pytest
import torch as th

from sb3_mbrl.planning import OPTIMIZERS, colored_noise, make_optimizer, truncated_standard_normal

H, A = 6, 2
LOW, HIGH = th.tensor([-1.0, -2.0]), th.tensor([1.0, 2.0])

SETTINGS = {
    "cem": dict(population_size=300, iterations=8, num_elites=30),
    "icem": dict(population_size=300, iterations=8, num_elites=20, noise_beta=0.5),
    "mppi": dict(population_size=500, iterations=10, temperature=0.005, noise_std=0.3, noise_beta=1.0),
    "random": dict(population_size=3000, iterations=3),
}
TOLERANCE = {"cem": 0.05, "icem": 0.05, "mppi": 0.25, "random": 0.5}  # the middle of the box is ~0.6 off


def quadratic(target):
    """-||a - target||^2 over the whole sequence: optimum at target (M, H, A)."""
    return lambda seqs: -(seqs - target[:, None]).pow(2).sum(dim=(2, 3))


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_finds_optimum_of_quadratic_for_each_start(name):
    th.manual_seed(0)
    target = th.rand(3, H, A) * (HIGH - LOW) * 0.6 + LOW * 0.6  # inside the box
    opt = make_optimizer(name, LOW, HIGH, H, **SETTINGS[name])
    plan = opt.optimize(quadratic(target), n_starts=3)
    assert plan.shape == (3, H, A)
    rms = (plan - target).pow(2).mean().sqrt().item()
    assert rms < TOLERANCE[name], rms


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_samples_stay_inside_bounds_and_optimum_on_boundary(name):
    th.manual_seed(1)
    target = th.full((1, H, A), 5.0)  # outside: optimum is the upper bound
    seen = []

    def objective(seqs):
        seen.append(seqs)
        return quadratic(target)(seqs)

    plan = make_optimizer(name, LOW, HIGH, H, **SETTINGS[name]).optimize(objective)
    all_samples = th.cat([s.reshape(-1, A) for s in seen])
    assert (all_samples >= LOW - 1e-6).all() and (all_samples <= HIGH + 1e-6).all()
    assert (plan >= LOW - 1e-6).all() and (plan <= HIGH + 1e-6).all()
    # From the middle of the box (mean distance 1.5) to near the upper bound.
    # (CEM approaches a bound slowly: its variance is capped by the distance to it.)
    assert (plan - HIGH).abs().mean() < {"random": 0.6, "cem": 0.35}.get(name, 0.2)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_nan_candidates_rank_last(name):
    """The objective is best at +0.9 but NaN there (a broken model): the plan must avoid it."""
    th.manual_seed(2)

    def objective(seqs):
        value = -(seqs[..., 0] - 0.9).pow(2).sum(-1)
        return th.where(seqs[..., 0].mean(-1) > 0, th.full_like(value, float("nan")), value)

    plan = make_optimizer(name, LOW, HIGH, H, **SETTINGS[name]).optimize(objective)
    assert plan[..., 0].mean() <= 0.05


def test_warm_start_is_used():
    th.manual_seed(3)
    target = th.full((1, H, A), 0.7)
    opt = make_optimizer("cem", LOW, HIGH, H, population_size=20, iterations=1, num_elites=5, alpha=0.9)
    cold = opt.optimize(quadratic(target))
    warm = opt.optimize(quadratic(target), initial_mean=target.clone())
    assert (warm - target).abs().mean() < (cold - target).abs().mean()
    with pytest.raises(ValueError, match="initial_mean"):
        opt.optimize(quadratic(target), initial_mean=th.zeros(1, H + 1, A))


def test_icem_keeps_shifted_elites():
    th.manual_seed(4)
    opt = make_optimizer("icem", LOW, HIGH, H, **SETTINGS["icem"])
    opt.optimize(quadratic(th.zeros(2, H, A)), n_starts=2)
    shifted = opt.shifted_elites()
    assert shifted.shape == (2, round(0.3 * 20), H, A)
    th.testing.assert_close(shifted[:, :, :-1], opt.last_elites[:, : shifted.shape[1], 1:])


def test_truncated_normal_and_colored_noise_statistics():
    z = truncated_standard_normal((200_000,), th.device("cpu"))
    assert z.abs().max() <= 2.0 and abs(z.mean()) < 0.01
    assert z.std().item() == pytest.approx(0.88, abs=0.01)  # std of N(0,1) truncated at 2 sigma
    white = colored_noise(0.0, (4000, 31), th.device("cpu"))
    pink = colored_noise(2.0, (4000, 32), th.device("cpu"))
    for noise in (white, pink):
        assert noise.std().item() == pytest.approx(1.0, rel=0.05)

    def lag1(x):
        return (x[:, 1:] * x[:, :-1]).mean() / x.var()

    assert abs(lag1(white)) < 0.05 and lag1(pink) > 0.5


def test_bad_arguments():
    with pytest.raises(ValueError, match="Unknown optimizer"):
        make_optimizer("newton", LOW, HIGH, H)
    with pytest.raises(ValueError, match="num_elites"):
        make_optimizer("cem", LOW, HIGH, H, population_size=10, num_elites=20)
    with pytest.raises(ValueError, match="finite action bounds"):
        make_optimizer("cem", th.tensor([-float("inf")]), th.tensor([1.0]), H)
    with pytest.raises(ValueError, match="positive"):
        make_optimizer("mppi", LOW, HIGH, 0)


def test_default_elites_are_a_tenth_of_the_population():
    assert make_optimizer("cem", LOW, HIGH, H).num_elites == 10  # population 100 by default
    assert make_optimizer("icem", LOW, HIGH, H, population_size=250).num_elites == 25
    assert make_optimizer("cem", LOW, HIGH, H, population_size=5).num_elites == 1
