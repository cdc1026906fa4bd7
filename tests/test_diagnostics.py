"""ModelDiagnosticsCallback and its metrics: hand-computed values, PETS and MBPO runs, errors."""
import warnings

import numpy as np
import pandas as pd
import pytest
import torch as th
from stable_baselines3 import SAC
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import KVWriter, Logger, configure

from sb3_mbrl import MBPO, PETS, REINFORCE
from sb3_mbrl.common import ModelDiagnosticsCallback, get_dynamics_ensemble
from sb3_mbrl.dynamics.diagnostics import model_diagnostics, one_step_metrics, open_loop_mse, open_loop_segments
from sb3_mbrl.dynamics import ProbabilisticEnsemble

PETS_TINY = dict(
    learning_starts=50,
    model_train_freq=50,
    ensemble_size=3,
    horizon=5,
    num_particles=2,
    planner_kwargs=dict(population_size=16, num_elites=4, iterations=2),
    model_epochs=3,
    model_net_arch=[32, 32],
)
MBPO_TINY = dict(
    learning_starts=100,
    gradient_steps=1,
    batch_size=32,
    ensemble_size=3,
    num_elites=2,
    model_net_arch=[32, 32],
    model_epochs=3,
    model_train_freq=100,
    rollout_batch_size=64,
    epoch_length=100,
    policy_kwargs=dict(net_arch=[32, 32]),
)
KEYS = ("model/one_step_mse", "model/one_step_mse_raw", "model/k_step_mse", "model/calibration_95", "model/disagreement")

# Real system of the hand-computed tests: obs (2 dims) moves by a constant step, constant reward.
STEP = th.tensor([0.3, -0.1])
REWARD = 0.5
TARGET_STD = (2.0, 1.0, 1.0)


def constant_ensemble(member_means, target_std=TARGET_STD):
    """
    Members whose prediction ignores the input: every weight 0, so the output is the last
    layer's bias. ``member_means`` ``(E, 3)`` are raw ``[d_obs0, d_obs1, reward]`` predictions;
    the raw log-variance is very negative, so each member's variance sits at the lower bound
    (exp(-10) in normalised units: std 0.0067, far below the errors used here).
    """
    means = th.tensor(member_means, dtype=th.float32)
    n_members, out = means.shape
    ensemble = ProbabilisticEnsemble(out - 1, 1, ensemble_size=n_members, hidden_sizes=(4,), learn_reward=True)
    with th.no_grad():
        for layer in (*ensemble.hidden_layers, ensemble.output_layer):
            layer.weight.zero_()
            layer.bias.zero_()
        std = th.tensor([target_std])
        ensemble.target_std.copy_(std)
        ensemble.output_layer.bias[:, 0, :out] = means / std  # normalised units
        ensemble.output_layer.bias[:, 0, out:] = -30.0
    return ensemble


def real_transitions(n=64, seed=0):
    gen = th.Generator().manual_seed(seed)
    obs = th.randn(n, 2, generator=gen)
    actions = th.rand(n, 1, generator=gen) * 4 - 2
    return obs, actions, obs + STEP, th.full((n,), REWARD)


def test_exact_model_has_zero_error_and_full_calibration():
    truth = [*STEP.tolist(), REWARD]
    ensemble = constant_ensemble([truth, truth])
    metrics = one_step_metrics(ensemble, *real_transitions())
    for key in ("one_step_mse", "one_step_mse_raw", "reward_mse", "disagreement"):
        assert metrics[key] == pytest.approx(0.0, abs=1e-10), key
    assert metrics["calibration_95"] == 1.0
    obs, actions, next_obs, _ = real_transitions(8)
    seq_actions = actions[:, None].expand(-1, 4, -1)  # (S, 4, 1)
    real = obs[:, None] + STEP * th.arange(1, 5)[:, None]  # (S, 4, 2)
    assert th.allclose(open_loop_mse(ensemble, obs, seq_actions, real), th.zeros(4), atol=1e-10)


def test_biased_model_known_errors_and_growing_open_loop_error():
    bias = th.tensor([0.5, -0.2, 0.1])
    truth = th.tensor([*STEP.tolist(), REWARD])
    ensemble = constant_ensemble([(truth + bias).tolist()] * 2)
    metrics = one_step_metrics(ensemble, *real_transitions())
    # Normalised: (0.5 / 2)^2, 0.2^2, 0.1^2 averaged over the 3 targets.
    assert metrics["one_step_mse"] == pytest.approx((0.0625 + 0.04 + 0.01) / 3, rel=1e-5)
    assert metrics["one_step_mse_raw"] == pytest.approx((0.25 + 0.04) / 2, rel=1e-5)
    assert metrics["reward_mse"] == pytest.approx(0.01, rel=1e-4)
    assert metrics["calibration_95"] == 0.0  # every error is far outside the tiny predicted std
    assert metrics["disagreement"] == pytest.approx(0.0, abs=1e-7)
    # Open loop: the bias adds up, the state error after k steps is k * bias.
    obs, actions, _, _ = real_transitions(8)
    real = obs[:, None] + STEP * th.arange(1, 6)[:, None]  # (S, 5, 2)
    errors = open_loop_mse(ensemble, obs, actions[:, None].expand(-1, 5, -1), real)
    expected = th.arange(1, 6) ** 2 * 0.145
    assert th.allclose(errors, expected.float(), rtol=1e-4)
    assert (errors >= 0).all() and (errors.diff() > 0).all()


def test_calibration_counts_member_disagreement():
    # Members at truth +- 1 normalised unit on both obs dims: the mixture mean is the truth and
    # its total std is about 1 normalised unit (raw: 2 on obs dim 0, 1 on obs dim 1).
    truth = th.tensor([*STEP.tolist(), REWARD])
    spread = th.tensor([2.0, 1.0, 0.0])
    ensemble = constant_ensemble([(truth + spread).tolist(), (truth - spread).tolist()])
    obs, actions, next_obs, rewards = real_transitions()
    # Real targets 1.5 std off on obs dim 0 (inside the 95% interval), 2.5 std on dim 1 (outside).
    shifted = next_obs - th.tensor([1.5 * 2.0, 2.5 * 1.0])
    metrics = one_step_metrics(ensemble, obs, actions, shifted, rewards)
    assert metrics["calibration_95"] == pytest.approx(2 / 3)  # aleatoric variance alone would give 1/3
    assert metrics["disagreement"] == pytest.approx(2 / 3, rel=1e-5)  # member std [1, 1, 0]
    assert metrics["one_step_mse"] == pytest.approx((1.5**2 + 2.5**2) / 3, rel=1e-5)


def test_open_loop_segments_stop_at_episode_ends():
    dones = th.zeros(6, 2, dtype=th.bool)
    dones[2, 0] = True
    rows, cols = open_loop_segments(dones, 3)
    assert set(zip(rows.tolist(), cols.tolist())) == {(0, 0), (3, 0), (0, 1), (1, 1), (2, 1), (3, 1)}
    assert open_loop_segments(dones, 1)[0].shape[0] == 12
    assert open_loop_segments(dones, 7)[0].shape[0] == 0
    with pytest.raises(ValueError, match="horizon"):
        open_loop_segments(dones, 0)


def test_model_diagnostics_on_buffer_layout():
    # 10 rows x 2 envs of the constant system; env 0's episode ends at row 4 and a new one
    # starts elsewhere at row 5, so a window across that end would not see k * bias.
    bias = th.tensor([0.5, -0.2, 0.1])
    truth = th.tensor([*STEP.tolist(), REWARD])
    ensemble = constant_ensemble([(truth + bias).tolist()] * 3)
    starts = th.tensor([[5.0, -3.0], [1.0, 2.0]])  # (n_envs, obs_dim)
    steps = th.arange(10.0)[:, None, None]  # (T, 1, 1)
    obs = starts + steps * STEP  # (T, n_envs, obs_dim)
    obs[5:, 0] = th.tensor([-7.0, 4.0]) + (steps[5:, 0] - 5) * STEP  # env 0 resets at row 5
    dones = th.zeros(10, 2, dtype=th.bool)
    dones[4, 0] = True
    actions = th.zeros(10, 2, 1)
    metrics = model_diagnostics(ensemble, obs, actions, obs + STEP, th.full((10, 2), REWARD), dones, horizon=3)
    assert metrics["n_transitions"] == 20
    assert metrics["n_segments"] == 6 + 8  # env 0 starts 0, 1, 2, 5, 6, 7; env 1 starts 0..7
    assert metrics["one_step_mse_raw"] == pytest.approx(0.145, rel=1e-5)
    assert metrics["k_step_mse"] == pytest.approx(9 * 0.145, rel=1e-5)  # (3 * bias)^2


def test_k_step_with_horizon_one_is_the_one_step_raw_error():
    th.manual_seed(0)
    ensemble = ProbabilisticEnsemble(3, 1, ensemble_size=4, hidden_sizes=(16,), num_elites=3)
    obs, actions = th.randn(12, 2, 3), th.randn(12, 2, 1)
    next_obs, rewards, dones = obs + th.randn(12, 2, 3), th.randn(12, 2), th.rand(12, 2) < 0.2
    metrics = model_diagnostics(ensemble, obs, actions, next_obs, rewards, dones, horizon=1)
    assert metrics["k_step_mse"] == pytest.approx(metrics["one_step_mse_raw"], rel=1e-5)
    assert metrics["n_segments"] == 24
    assert 0.0 <= metrics["calibration_95"] <= 1.0 and metrics["disagreement"] > 0


def _spy_fits(model, trainer):
    """Record the number of real transitions of every model fit."""
    sizes = []
    original = trainer.fit

    def fit(obs, *args, **kwargs):
        sizes.append(obs.shape[0])
        return original(obs, *args, **kwargs)

    trainer.fit = fit
    return sizes


def test_pets_run_logs_to_csv_on_fresh_transitions(tmp_path):
    model = PETS("MlpPolicy", "Pendulum-v1", seed=0, **PETS_TINY)
    model.set_logger(configure(str(tmp_path), ["csv"]))
    fit_sizes = _spy_fits(model, model.model_trainer)
    callback = ModelDiagnosticsCallback(eval_freq=100, horizon=5)
    model.learn(300, callback=callback)
    progress = pd.read_csv(tmp_path / "progress.csv")
    for key in KEYS:
        assert key in progress.columns, key
    assert "model/reward_mse" not in progress.columns  # PETS uses Pendulum's known reward here
    rows = progress.dropna(subset=["model/one_step_mse"])
    assert rows["time/total_timesteps"].tolist() == [100, 200, 300]
    assert (rows["model/n_transitions"] == 50).all() and (rows["model/n_segments"] > 0).all()
    assert ((rows["model/calibration_95"] >= 0) & (rows["model/calibration_95"] <= 1)).all()
    assert (rows["model/k_step_mse"] >= 0).all() and np.isfinite(rows[list(KEYS)].to_numpy()).all()
    # The last measurement used exactly the rows stored after the last fit before it (at 250 rows).
    assert fit_sizes[-2] == 250 and callback.last_rows.tolist() == list(range(250, 300))
    assert callback.ensemble is model.dynamics is model.policy.dynamics


def test_two_envs_use_fresh_rows_of_both():
    # model_train_freq counts env steps over all envs (as MBPO's does): 100 = 50 steps of each env.
    settings = {**PETS_TINY, "model_train_freq": 100}
    model = PETS("MlpPolicy", make_vec_env("Pendulum-v1", n_envs=2, seed=0), seed=0, **settings)
    fit_sizes = _spy_fits(model, model.model_trainer)
    callback = ModelDiagnosticsCallback(eval_freq=100)
    model.learn(300, callback=callback)
    # Fits on 25, 75, 125 rows of 2 envs; the last measurement takes rows 125..149 of both envs.
    assert fit_sizes == [50, 150, 250]
    assert callback.last_rows.tolist() == list(range(125, 150))
    assert callback.last_metrics["n_transitions"] == 50 and callback.last_metrics["n_segments"] > 25


def test_mbpo_run_logs_reward_error():
    class Capture(KVWriter):
        def __init__(self):
            self.rows = []

        def write(self, key_values, key_excluded, step=0):
            self.rows.append((step, dict(key_values)))

        def close(self):
            pass

    model = MBPO("MlpPolicy", "Pendulum-v1", seed=0, reward_fn=None, **MBPO_TINY)
    capture = Capture()
    model.set_logger(Logger(None, [capture]))
    fit_sizes = _spy_fits(model, model.model_trainer)
    callback = ModelDiagnosticsCallback(eval_freq=100, min_transitions=30)
    model.learn(300, callback=callback)
    measured = [(step, values) for step, values in capture.rows if "model/one_step_mse" in values]
    # Due at 100, before the first fit (after step 101): measured once 30 fresh rows exist.
    assert [step for step, _ in measured] == [131, 200, 300]
    for _, values in measured:
        for key in (*KEYS, "model/reward_mse"):
            assert np.isfinite(values[key]) and values[key] >= 0, key
    assert fit_sizes == [101, 201] and callback.last_rows.tolist() == list(range(201, 300))
    assert callback.ensemble is model.dynamics


def test_too_few_fresh_transitions_between_fits_warns():
    model = PETS("MlpPolicy", "Pendulum-v1", seed=0, **PETS_TINY)
    callback = ModelDiagnosticsCallback(eval_freq=50, min_transitions=80)
    with pytest.warns(UserWarning, match="min_transitions=80"):
        model.learn(160, callback=callback)
    assert callback.last_metrics == {}


@pytest.mark.parametrize("make", [lambda: SAC("MlpPolicy", "Pendulum-v1"), lambda: REINFORCE("MlpPolicy", "CartPole-v1")])
def test_algorithm_without_model_is_a_type_error(make):
    algo = make()
    name = type(algo).__name__
    with pytest.raises(TypeError, match=f"{name} has no dynamics ensemble"):
        get_dynamics_ensemble(algo)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(TypeError, match=f"{name} has no dynamics ensemble"):
            algo.learn(10, callback=ModelDiagnosticsCallback())
    assert algo.num_timesteps == 0  # refused before any step


def test_bad_arguments():
    for kwargs in (dict(eval_freq=0), dict(horizon=0), dict(min_transitions=0), dict(min_transitions=5, max_transitions=4)):
        with pytest.raises(ValueError):
            ModelDiagnosticsCallback(**kwargs)
    ensemble = constant_ensemble([[0.0, 0.0, 0.0]])
    obs, actions, next_obs, _ = real_transitions(4)
    with pytest.raises(ValueError, match="rewards are required"):
        one_step_metrics(ensemble, obs, actions, next_obs)
