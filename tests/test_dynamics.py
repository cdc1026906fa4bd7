"""The ensemble, its trainer and ModelEnv."""
import math
import warnings

import numpy as np
import pytest
import torch as th

from sb3_mbrl.dynamics import EnsembleLinear, EnsembleTrainer, ModelEnv, ProbabilisticEnsemble, inference


def _linear_data(n=600, obs_dim=3, act_dim=2, seed=0, noise=0.01):
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, obs_dim)).astype(np.float32)
    act = rng.uniform(-1, 1, size=(n, act_dim)).astype(np.float32)
    a_mat = rng.normal(scale=0.3, size=(obs_dim, obs_dim))
    b_mat = rng.normal(scale=0.3, size=(act_dim, obs_dim))
    next_obs = obs + obs @ a_mat + act @ b_mat + noise * rng.normal(size=(n, obs_dim))
    rew = -(obs**2).sum(1) + act[:, 0]
    return obs, act, next_obs.astype(np.float32), rew.astype(np.float32)


def _small_model(**kwargs):
    defaults = dict(obs_dim=3, action_dim=2, ensemble_size=3, hidden_sizes=(32, 32))
    defaults.update(kwargs)
    return ProbabilisticEnsemble(**defaults)


def test_ensemble_linear_matches_per_member_matmul():
    layer = EnsembleLinear(4, 5, 3)
    with th.no_grad():
        layer.bias.normal_()
    x = th.randn(4, 7, 5)
    out = layer(x)
    assert out.shape == (4, 7, 3)
    for e in range(4):
        th.testing.assert_close(out[e], x[e] @ layer.weight[e] + layer.bias[e])
    members = th.tensor([2, 0])
    th.testing.assert_close(layer(x[:2], members)[0], x[0] @ layer.weight[2] + layer.bias[2])


def test_decay_loss_is_the_l2_penalty_and_free_without_decays():
    """decay_loss is sum_l decay_l * |W_l|^2 / 2 per member; layers without decay add no autograd work."""
    th.manual_seed(0)
    decays = [1e-4, 0.0, 5e-4]
    model = ProbabilisticEnsemble(3, 1, ensemble_size=4, hidden_sizes=[8, 8], weight_decays=decays)
    layers = [*model.hidden_layers, model.output_layer]
    expected = sum(d * 0.5 * layer.weight.pow(2).sum(dim=(1, 2)) for d, layer in zip(decays, layers))
    assert th.allclose(model.decay_loss(), expected)
    model.decay_loss().sum().backward()
    assert layers[1].weight.grad is None  # the zero-decay layer's weights are not in the graph
    assert th.allclose(layers[0].weight.grad, 1e-4 * layers[0].weight)
    undecayed = ProbabilisticEnsemble(3, 1, ensemble_size=4, hidden_sizes=[8, 8])
    loss = undecayed.decay_loss()
    assert loss.shape == (4,) and not loss.requires_grad and (loss == 0).all()


def test_nll_matches_hand_computation():
    model = _small_model(ensemble_size=2, logvar_penalty=0.01)
    x = th.randn(2, 5, 5)
    y = th.randn(2, 5, 4)
    mean, logvar = model(x)
    loss = model.nll_loss(x, y)
    for e in range(2):
        expected = 0.0
        for b in range(5):
            for d in range(4):
                m, lv, t = mean[e, b, d].item(), logvar[e, b, d].item(), y[e, b, d].item()
                expected += (m - t) ** 2 / math.exp(lv) + lv
        expected /= 20
        expected += 0.01 * (model.max_logvar[e].sum() - model.min_logvar[e].sum()).item()
        assert loss[e].item() == pytest.approx(expected, rel=1e-4)


def test_logvar_stays_inside_bounds():
    model = _small_model()
    with th.no_grad():
        for layer in model.hidden_layers:
            layer.weight.mul_(30)
    x = th.randn(3, 200, 5) * 100
    _, logvar = model(x)
    assert (logvar <= model.max_logvar + 1e-4).all()  # soft bound: within softplus(-(max-min))
    assert (logvar >= model.min_logvar - 1e-4).all()
    assert logvar.max() > 0 and logvar.min() < -5  # the bounds were actually reached


def test_logvar_bounds_are_learned():
    obs, act, nxt, rew = _linear_data(300)
    model = _small_model()
    before = model.max_logvar.detach().clone()
    EnsembleTrainer(model, max_epochs=30).fit(obs, act, nxt, rew)
    assert model.max_logvar.requires_grad
    assert not th.equal(before, model.max_logvar.detach())


def test_fit_learns_linear_dynamics_and_reports_metrics():
    th.manual_seed(0)
    obs, act, nxt, rew = _linear_data(1000)
    model = _small_model(hidden_sizes=(64, 64), num_elites=2)
    metrics = EnsembleTrainer(model, batch_size=64, max_epochs=60).fit(obs, act, nxt, rew)
    assert metrics["epochs"] >= 2
    assert len(metrics["holdout_mse"]) == 3 and len(metrics["elites"]) == 2
    assert metrics["holdout_mse_elites"] < 0.05  # normalised targets: 1.0 is "predict the mean"
    assert metrics["n_holdout"] == 200


def test_best_weights_are_restored_after_a_worse_epoch():
    th.manual_seed(0)
    obs, act, nxt, rew = _linear_data(400)
    model = _small_model()
    snapshot = {}

    def sabotage(epoch, train_loss, holdout_mse):
        if epoch == 1:
            snapshot.update({k: v.clone() for k, v in model.state_dict().items()})
            with th.no_grad():  # every later epoch starts from ruined weights
                for layer in model.hidden_layers:
                    layer.weight.mul_(20.0)

    # Any improvement counts, so epoch 1 beats the starting weights however little it moved.
    trainer = EnsembleTrainer(model, learning_rate=1e-6, patience=3, min_updates=0, improvement_threshold=0.0)
    metrics = trainer.fit(obs, act, nxt, rew, epoch_callback=sabotage)
    assert metrics["epochs"] == 4  # epoch 1 best, three epochs without improvement
    for name, value in model.state_dict().items():
        if name != "elite_indices":
            th.testing.assert_close(value, snapshot[name], msg=name)


def test_elites_are_the_members_with_lowest_holdout_error():
    th.manual_seed(0)
    obs, act, nxt, rew = _linear_data(400)
    model = _small_model(num_elites=2)
    with th.no_grad():  # member 1 starts far off; one tiny-lr epoch cannot repair it
        for layer in model.hidden_layers:
            layer.weight[1].normal_(0, 5.0)
    metrics = EnsembleTrainer(model, learning_rate=1e-5, max_epochs=1).fit(obs, act, nxt, rew)
    mse = metrics["holdout_mse"]
    assert mse[1] == max(mse)
    assert metrics["elites"] == sorted(np.argsort(mse)[:2].tolist())
    assert 1 not in metrics["elites"]
    # ModelEnv only ever uses elites: poison the non-elite and predictions stay finite.
    with th.no_grad():
        model.output_layer.weight[1].fill_(float("nan"))
    env = ModelEnv(model, propagation="random_model")
    next_obs, reward, _ = env.step(th.as_tensor(obs[:50]), th.as_tensor(act[:50]))
    assert th.isfinite(next_obs).all() and th.isfinite(reward).all()


def test_normalizer_survives_state_dict_round_trip(tmp_path):
    obs, act, nxt, rew = _linear_data(300)
    obs[:, 1] = 4.0  # a constant dimension must not break normalisation
    model = _small_model()
    EnsembleTrainer(model, max_epochs=2).fit(obs, act, nxt, rew)
    assert th.isfinite(model.input_std).all() and model.input_std[0, 1] == 1.0
    assert model.input_mean[0, 1] == pytest.approx(4.0)
    th.save(model.state_dict(), tmp_path / "model.pt")
    clone = _small_model()
    clone.load_state_dict(th.load(tmp_path / "model.pt"))
    for name in ("input_mean", "input_std", "target_mean", "target_std", "elite_indices"):
        th.testing.assert_close(getattr(clone, name), getattr(model, name))
    o, a = th.as_tensor(obs[:10]), th.as_tensor(act[:10])
    th.testing.assert_close(clone.predict(o, a)[0], model.predict(o, a)[0])


def test_seeded_fits_are_identical():
    obs, act, nxt, rew = _linear_data(300)
    results = []
    for _ in range(2):
        th.manual_seed(123)
        model = _small_model()
        metrics = EnsembleTrainer(model, max_epochs=3).fit(obs, act, nxt, rew)
        metrics.pop("fit_seconds")  # wall time differs between runs
        results.append((metrics, [p.detach().clone() for p in model.parameters()]))
    assert results[0][0] == results[1][0]
    for a, b in zip(results[0][1], results[1][1]):
        assert th.equal(a, b)


def test_default_optimiser_is_fused_adam_and_fits_as_the_loop_does():
    obs, act, nxt, rew = _linear_data(300)
    weights = []
    for fused in (None, False):
        th.manual_seed(123)
        model = _small_model()
        optimizer = None if fused is None else th.optim.Adam(model.parameters(), lr=1e-3, fused=False)
        trainer = EnsembleTrainer(model, max_epochs=3, optimizer=optimizer)
        assert bool(trainer.optimizer.defaults.get("fused")) == (fused is None)
        trainer.fit(obs, act, nxt, rew)
        weights.append([p.detach().clone() for p in model.parameters()])
    for fused, looped in zip(*weights):
        th.testing.assert_close(fused, looped, rtol=1e-4, atol=1e-5)


def test_members_see_different_data():
    """Bootstrap: identical initial members diverge because their batches differ."""
    obs, act, nxt, rew = _linear_data(300)
    model = _small_model(ensemble_size=2)
    with th.no_grad():
        for p in model.parameters():
            p[1] = p[0]
    EnsembleTrainer(model, max_epochs=20).fit(obs, act, nxt, rew)
    assert not th.equal(model.hidden_layers[0].weight[0], model.hidden_layers[0].weight[1])


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(obs=d["obs"][:0], act=d["act"][:0], nxt=d["nxt"][:0], rew=d["rew"][:0]), "empty"),
        (lambda d: d["nxt"].__setitem__((slice(3, 6), 0), np.nan), "3 of 300 training rows contain NaN or inf"),
        (lambda d: d["rew"].__setitem__(7, np.inf), "1 of 300 training rows"),
        (lambda d: d.update(act=d["act"][:, :1]), "actions must have 2 columns"),
        (lambda d: d.update(rew=d["rew"][:-1]), "rewards has 299 rows but obs has 300"),
        (lambda d: d.update(obs=d["obs"][:2], act=d["act"][:2], nxt=d["nxt"][:2], rew=d["rew"][:2]), "too few"),
    ],
)
def test_fit_rejects_bad_data(mutate, message):
    obs, act, nxt, rew = _linear_data(300)
    data = dict(obs=obs, act=act, nxt=nxt, rew=rew)
    mutate(data)
    with pytest.raises(ValueError, match=message):
        EnsembleTrainer(_small_model()).fit(data["obs"], data["act"], data["nxt"], data["rew"])


def test_reward_head_is_optional():
    obs, act, nxt, _ = _linear_data(300)
    model = _small_model(learn_reward=False)
    assert model.output_dim == 3
    EnsembleTrainer(model, max_epochs=2).fit(obs, act, nxt)
    with pytest.raises(ValueError, match="reward_fn"):
        ModelEnv(model)
    env = ModelEnv(model, reward_fn=lambda o, a, n: -o.pow(2).sum(1))
    _, reward, _ = env.step(th.zeros(4, 3), th.zeros(4, 2))
    assert th.equal(reward, th.zeros(4))


def _constant_member_model(n_members=4, obs_dim=2):
    """Member e predicts delta = e (all dims) and reward = e, with tiny variance."""
    model = ProbabilisticEnsemble(obs_dim, 1, ensemble_size=n_members, hidden_sizes=(8,), init_min_logvar=-20)
    with th.no_grad():
        model.output_layer.weight.zero_()
        model.output_layer.bias.zero_()
        model.output_layer.bias[:, 0, : obs_dim + 1] = th.arange(n_members, dtype=th.float32)[:, None]
        model.output_layer.bias[:, 0, obs_dim + 1 :] = -20.0
    return model


def test_fixed_model_keeps_a_member_per_row():
    th.manual_seed(0)
    model = _constant_member_model()
    env = ModelEnv(model, propagation="fixed_model", deterministic=True)
    env.reset(30)
    members = env.member_indices(30)
    assert set(members.tolist()) == {0, 1, 2, 3}
    obs = th.zeros(30, 2)
    for _ in range(3):
        next_obs, reward, _ = env.step(obs, th.zeros(30, 1))
        th.testing.assert_close(reward, members.float())
        th.testing.assert_close(next_obs - obs, members.float()[:, None].expand(30, 2))
        obs = next_obs
    with pytest.raises(RuntimeError, match="reset"):
        env.step(th.zeros(7, 2), th.zeros(7, 1))


def test_random_model_redraws_members_and_expectation_averages():
    th.manual_seed(0)
    model = _constant_member_model()
    env = ModelEnv(model, propagation="random_model", deterministic=True)
    r1 = env.step(th.zeros(400, 2), th.zeros(400, 1))[1]
    r2 = env.step(th.zeros(400, 2), th.zeros(400, 1))[1]
    assert set(r1.tolist()) == {0.0, 1.0, 2.0, 3.0}
    assert (r1 != r2).float().mean() > 0.5  # rows change members between steps
    assert th.bincount(r1.long()).tolist() == [100, 100, 100, 100]  # balanced groups
    env = ModelEnv(model, propagation="expectation", deterministic=True)
    th.testing.assert_close(env.step(th.zeros(5, 2), th.zeros(5, 1))[1], th.full((5,), 1.5))


def test_model_env_elites_only():
    model = _constant_member_model()
    model.elite_indices = th.tensor([1, 3])
    model.num_elites = 2
    env = ModelEnv(model, propagation="random_model", deterministic=True)
    reward = env.step(th.zeros(101, 2), th.zeros(101, 1))[1]  # odd batch exercises padding
    assert set(reward.tolist()) == {1.0, 3.0}


def test_sampling_uses_predicted_variance():
    model = _constant_member_model(n_members=1, obs_dim=1)
    with th.no_grad():
        model.output_layer.bias[:, 0, 2:] = math.log(4.0)  # variance 4 -> std 2
        model.max_logvar.fill_(5.0)
    env = ModelEnv(model, deterministic=False)
    delta = env.step(th.zeros(20000, 1), th.zeros(20000, 1))[0]
    assert delta.std().item() == pytest.approx(2.0, rel=0.05)


def test_evaluate_action_sequences_sums_rewards_until_termination():
    model = _constant_member_model(n_members=1)
    # reward = 1 per step from a known function; terminate once obs[0] >= 2 (delta is 0 here).
    env = ModelEnv(
        model,
        reward_fn=lambda o, a, n: a[:, 0],
        termination_fn=lambda o, a, n: a[:, 0] > 0.5,
        deterministic=True,
    )
    seqs = th.tensor([[[0.1], [0.2], [0.3]], [[0.9], [0.2], [0.3]], [[0.1], [0.2], [0.6]]])  # (P=3, H=3, 1)
    returns = env.evaluate_action_sequences(seqs, th.zeros(2), num_particles=4)
    # The terminating step's reward counts, later ones do not.
    th.testing.assert_close(returns, th.tensor([0.6, 0.9, 0.9]))
    batched = env.evaluate_action_sequences(seqs.expand(2, 3, 3, 1), th.zeros(2, 2), num_particles=2)
    assert batched.shape == (2, 3)


def test_non_finite_returns_rank_last():
    model = _constant_member_model(n_members=1)
    env = ModelEnv(model, reward_fn=lambda o, a, n: a[:, 0].log())
    seqs = th.tensor([[[1.0]], [[-1.0]], [[0.0]]])  # log: 0, nan, -inf
    returns = env.evaluate_action_sequences(seqs, th.zeros(2))
    assert returns[0] == 0.0 and returns[1] == -float("inf") and returns[2] == -float("inf")
    env = ModelEnv(model, reward_fn=lambda o, a, n: a[:, 0] / 0.0)
    assert env.evaluate_action_sequences(th.tensor([[[1.0]]]), th.zeros(2))[0] == -float("inf")


def test_step_checks_shapes():
    env = ModelEnv(_constant_member_model())
    with pytest.raises(ValueError, match="obs must have shape"):
        env.step(th.zeros(3, 5), th.zeros(3, 1))
    with pytest.raises(ValueError, match="actions must have shape"):
        env.step(th.zeros(3, 2), th.zeros(4, 1))
    with pytest.raises(ValueError, match="propagation"):
        ModelEnv(_constant_member_model(), propagation="ts2")


@pytest.mark.skipif(not th.cuda.is_available(), reason="needs CUDA")
def test_cuda_fit_and_step():
    obs, act, nxt, rew = _linear_data(300)
    model = _small_model().to("cuda")
    EnsembleTrainer(model, max_epochs=2).fit(obs, act, nxt, rew)
    env = ModelEnv(model, propagation="fixed_model")
    returns = env.evaluate_action_sequences(th.zeros(8, 5, 2, device="cuda"), th.zeros(3, device="cuda"), 4)
    assert returns.device.type == "cuda" and returns.shape == (8,)


def test_forward_under_autocast_returns_float32_mean_and_bounded_logvar():
    # The products run in bf16 under autocast; the log-variance bounds and the loss must see float32.
    model = _small_model()
    x = th.randn(3, 16, 5)
    with th.autocast("cpu", dtype=th.bfloat16):
        mean, logvar = model(x)
        loss = model.nll_loss(x, th.randn(3, 16, 4))
    assert mean.dtype == logvar.dtype == loss.dtype == th.float32
    ref_mean, _ = model(x)
    th.testing.assert_close(mean, ref_mean, rtol=0.05, atol=0.05)  # the same function, within bf16 rounding
    assert not th.equal(mean, ref_mean)  # but computed in bf16


def test_bf16_fit_trains_in_bf16_and_learns_as_well_as_float32():
    obs, act, nxt, rew = _linear_data(1000)
    results = {}
    for dtype in (None, th.bfloat16):
        th.manual_seed(0)
        model = _small_model(hidden_sizes=(64, 64))
        trainer = EnsembleTrainer(model, batch_size=64, max_epochs=100, compute_dtype=dtype)
        assert trainer.compute_dtype == (dtype or th.float32)
        metrics = trainer.fit(obs, act, nxt, rew, generator=th.Generator().manual_seed(0))
        assert all(p.dtype == th.float32 for p in model.parameters())  # master weights stay float32
        assert metrics["holdout_mse_mean"] <= metrics["start_holdout_mse_mean"]
        results[dtype] = (metrics["holdout_mse_mean"], [p.detach().clone() for p in model.parameters()])
    (fp32_mse, fp32_weights), (bf16_mse, bf16_weights) = results[None], results[th.bfloat16]
    assert not all(th.equal(a, b) for a, b in zip(fp32_weights, bf16_weights))  # the bf16 fit took other steps
    # normalised targets (1.0 is "predict the mean"): 0.0014 in both dtypes here
    assert bf16_mse < 0.005 and bf16_mse < 1.5 * fp32_mse


def test_trainer_compute_dtype_auto_and_bad_values():
    model = _small_model()
    expected = th.bfloat16 if inference.has_fast_bfloat16(th.device("cpu")) else th.float32
    assert EnsembleTrainer(model, compute_dtype="auto").compute_dtype == expected
    with pytest.raises(ValueError, match="compute_dtype"):
        EnsembleTrainer(model, compute_dtype="bf16")
    with pytest.raises(ValueError, match="float32 or bfloat16"):
        EnsembleTrainer(model, compute_dtype=th.float16)


@pytest.mark.parametrize("native_bf16", [False, True])
def test_bf16_fit_warns_once_where_bf16_is_emulated(monkeypatch, native_bf16):
    monkeypatch.setattr(inference, "_cpu_has_bf16_units", lambda: native_bf16)
    obs, act, nxt, rew = _linear_data(100)
    auto = EnsembleTrainer(_small_model(), max_epochs=1, compute_dtype="auto")
    assert auto.compute_dtype == (th.bfloat16 if native_bf16 else th.float32)
    trainer = EnsembleTrainer(_small_model(), max_epochs=1, compute_dtype=th.bfloat16)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            trainer.fit(obs, act, nxt, rew)
    slow = [w for w in caught if "no native bf16" in str(w.message)]
    assert len(slow) == (0 if native_bf16 else 1)
