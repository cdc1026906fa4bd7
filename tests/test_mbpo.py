"""MBPO: SAC plus branched model rollouts."""
import pickle

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3 import SAC
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import KVWriter, Logger

from sb3_mbrl import MBPO
from sb3_mbrl.mbpo.buffers import MixedReplayBuffer, ModelTransitionBuffer, rollout_capacity
from sb3_mbrl.mbpo.schedules import rollout_length_at

TINY = dict(
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


def tiny_mbpo(env="Pendulum-v1", **kwargs):
    return MBPO("MlpPolicy", env, seed=0, **{**TINY, **kwargs})


class CaptureKeys(KVWriter):
    def __init__(self):
        self.keys = set()

    def write(self, key_values, key_excluded, step=0):
        self.keys |= set(key_values)

    def close(self):
        pass


def _filled_mixed_buffer(real_ratio):
    obs_space, act_space = spaces.Box(-1, 1, (2,)), spaces.Box(-1, 1, (1,))
    buffer = MixedReplayBuffer(100, obs_space, act_space, device="cpu", real_ratio=real_ratio)
    for _ in range(50):
        buffer.add(np.zeros((1, 2)), np.zeros((1, 2)), np.zeros((1, 1)), np.ones(1), np.zeros(1), [{}])
    return buffer


@pytest.mark.parametrize("real_ratio, n_real", [(0.25, 50), (0.05, 10), (1.0, 200), (0.0, 0)])
def test_mixed_sampling_ratio(real_ratio, n_real):
    buffer = _filled_mixed_buffer(real_ratio)
    assert (buffer.sample(200).rewards == 1).all()  # no model data yet: all real
    buffer.model_buffer = ModelTransitionBuffer(30, 2, 1)
    buffer.model_buffer.add(th.zeros(30, 2), th.zeros(30, 1), th.zeros(30, 2), -th.ones(30), th.zeros(30))
    batch = buffer.sample(200)
    assert batch.rewards.shape == (200, 1) and batch.observations.shape == (200, 2)
    assert int((batch.rewards == 1).sum()) == n_real
    assert int((batch.rewards == -1).sum()) == 200 - n_real


def test_rollout_schedule():
    schedule = (20, 100, 1, 15)
    assert [rollout_length_at(schedule, e) for e in (0, 20, 60, 100, 500)] == [1, 1, 8, 15, 15]
    assert rollout_length_at(3, 1000) == 3
    for bad in [(10, 5, 1, 4), (0, 10, 5, 2), (0, 10, 0, 2), (1, 2, 3)]:
        with pytest.raises(ValueError, match="rollout_length"):
            tiny_mbpo(rollout_length=bad)
    with pytest.raises(ValueError, match="rollout_length"):
        tiny_mbpo(rollout_length=0)


def test_every_sac_argument_reaches_sac():
    """MBPO passes its SAC arguments on by name (mbpo.SAC_ARGUMENTS): the signature holds all of SAC's."""
    import inspect

    from sb3_mbrl.mbpo.mbpo import SAC_ARGUMENTS

    sac = list(inspect.signature(SAC).parameters)
    mbpo = list(inspect.signature(MBPO).parameters)
    assert set(SAC_ARGUMENTS) == set(sac) - {"_init_setup_model"} and mbpo[: len(sac) - 1] == sac[:-1]
    model = tiny_mbpo(learning_rate=7e-4, tau=0.02, gamma=0.9, ent_coef=0.3, target_update_interval=2, stats_window_size=7)
    assert (model.learning_rate, model.tau, model.gamma, model.target_update_interval) == (7e-4, 0.02, 0.9, 2)
    assert model.ent_coef == 0.3 and model._stats_window_size == 7 and model.batch_size == 32 and model.gradient_steps == 1
    assert model.policy.actor.latent_pi[0].out_features == 32  # policy_kwargs


def test_model_buffer_capacity_ring_and_resize():
    # MBPO Hopper: 100k rollouts per 250 steps, epoch 1000, k=15, keep 1 epoch.
    assert rollout_capacity(100_000, 15, 1000, 250, 1) == 6_000_000
    assert rollout_capacity(400, 1, 250, 250, 5) == 2000
    buffer = ModelTransitionBuffer(5, 1, 1)
    buffer.add(*(th.arange(7.0)[:, None],) * 3, th.arange(7.0), th.zeros(7))
    assert buffer.size == 5 and sorted(buffer.rewards[:, 0].tolist()) == [2, 3, 4, 5, 6]
    buffer.add(th.tensor([[7.0]]), th.zeros(1, 1), th.zeros(1, 1), th.tensor([7.0]), th.zeros(1))
    assert sorted(buffer.rewards[:, 0].tolist()) == [3, 4, 5, 6, 7]
    buffer.resize(3)
    assert buffer.capacity == 3 and sorted(buffer.rewards[:, 0].tolist()) == [5, 6, 7]
    buffer.resize(6)
    assert buffer.size == 3 and sorted(buffer.rewards[:3, 0].tolist()) == [5, 6, 7]


def test_model_buffer_sized_for_retained_epochs():
    model = tiny_mbpo(rollout_batch_size=50, model_train_freq=50, epoch_length=100, model_retain_epochs=3, rollout_length=2)
    assert model.model_buffer.capacity == 50 * 2 * 2 * 3


def test_rollouts_mask_terminated_rows():
    model = tiny_mbpo(rollout_length=3, rollout_batch_size=200, termination_fn=lambda o, a, n: n[:, 2] > 0)
    model.learn(110)  # first fit and rollouts at step 101
    buffer = model.model_buffer
    first = 200
    assert buffer.size > first
    dones = buffer.dones[: buffer.size, 0].bool()
    next_obs = buffer.next_obs[: buffer.size]
    assert th.equal(dones, next_obs[:, 2] > 0)  # stored done flags are the termination function's
    # Step 2 starts exactly from the step-1 rows that did not terminate, in order.
    alive_after_first = next_obs[:first][~dones[:first]]
    n_second = alive_after_first.shape[0]
    assert th.equal(buffer.obs[first : first + n_second], alive_after_first)
    assert buffer.size <= first + n_second + int((~dones[first : first + n_second]).sum())


def test_always_terminating_rollouts_stop_after_one_step():
    model = tiny_mbpo(rollout_length=5, rollout_batch_size=64, termination_fn=lambda o, a, n: th.ones(len(o), dtype=th.bool))
    model.learn(110)
    assert model.model_buffer.size == 64 and bool((model.model_buffer.dones[:64] == 1).all())


def test_learn_logs_model_and_sac_keys():
    model = tiny_mbpo()
    capture = CaptureKeys()
    model.set_logger(Logger(None, [capture]))
    model.learn(300, log_interval=1)
    for key in ("train/model_loss", "train/model_holdout_mse", "rollout/model_rollout_length",
                "rollout/model_buffer_size", "train/actor_loss", "train/critic_loss", "rollout/ep_rew_mean"):
        assert key in capture.keys, key
    # Fits at steps 101 and 201 each add 64 rollouts; one epoch (= one fit) is kept.
    assert model.model_buffer.capacity == 64 and model.model_buffer.size == 64
    # model transitions are stored like SAC's real ones: scaled actions in [-1, 1]
    actions = model.model_buffer.actions[: model.model_buffer.size]
    assert actions.abs().max() <= 1.0 and actions.abs().max() > 0.3


def test_save_load_round_trip(tmp_path):
    model = tiny_mbpo()
    model.learn(250)
    model.save(tmp_path / "mbpo")
    loaded = MBPO.load(tmp_path / "mbpo")
    for key, value in model.dynamics.state_dict().items():
        th.testing.assert_close(loaded.dynamics.state_dict()[key], value, msg=key)
    obs = np.array([0.1, 0.9, -0.3], np.float32)
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
    assert loaded.model_buffer.size == 0  # rebuilt, not saved
    assert loaded.real_ratio == model.real_ratio and loaded.rollout_length == model.rollout_length
    model.save_replay_buffer(tmp_path / "buffer")
    assert pickle.loads(pickle.dumps(model.replay_buffer)).model_buffer is None
    loaded.load_replay_buffer(tmp_path / "buffer")
    assert loaded.replay_buffer.size() == 250 and loaded.model_buffer.size == 0
    loaded.set_env(make_vec_env("Pendulum-v1", n_envs=1))
    loaded.learn(20, reset_num_timesteps=False)
    assert loaded.num_timesteps == 270 and loaded.model_buffer.size > 0  # refitted after load


def test_model_fit_dtype_fits_in_bf16_and_is_kept_by_save_load(tmp_path, autocast_dtypes_of_fits):
    model = tiny_mbpo(model_fit_dtype="bfloat16")
    seen = autocast_dtypes_of_fits(model.dynamics)
    model.learn(250)
    assert seen and set(seen) == {th.bfloat16}
    model.save(tmp_path / "mbpo")
    loaded = MBPO.load(tmp_path / "mbpo")
    assert loaded.model_fit_dtype == "bfloat16" and loaded.model_trainer.compute_dtype == th.bfloat16
    assert tiny_mbpo().model_trainer.compute_dtype == th.float32  # the default
    with pytest.raises(ValueError, match="model_fit_dtype must be one of"):
        tiny_mbpo(model_fit_dtype="half")


def test_continue_learning_seeding_and_callbacks():
    runs = []
    for _ in range(2):
        model = tiny_mbpo()
        model.learn(150)
        runs.append(model.replay_buffer.actions[:150].copy())
    np.testing.assert_array_equal(runs[0], runs[1])
    model.learn(50, reset_num_timesteps=False)
    assert model.num_timesteps == 200

    class StopAt(BaseCallback):
        def _on_step(self):
            return self.num_timesteps < 120

    model = tiny_mbpo()
    model.learn(1000, callback=StopAt())
    assert model.num_timesteps == 120


def test_vec_env_with_two_envs():
    model = tiny_mbpo(make_vec_env("Pendulum-v1", n_envs=2, seed=0))
    model.learn(240)
    assert model.replay_buffer.size() == 120 and model.model_buffer.size > 0


def test_is_a_sac_that_accepts_sac_arguments():
    model = tiny_mbpo(ent_coef=0.1, tau=0.01, gamma=0.9, target_update_interval=2)
    assert isinstance(model, SAC) and model.tau == 0.01 and model.gamma == 0.9
    assert MBPO.__mro__[1] is SAC


def test_sac_update_runs_gradient_steps_per_env_step():
    """SAC's own update trains the critic and actor G times per env step after learning_starts."""
    model = tiny_mbpo(gradient_steps=3)
    steps = {"critic": 0, "actor": 0}
    for name, optimizer in (("critic", model.critic.optimizer), ("actor", model.actor.optimizer)):
        original = optimizer.step

        def counted(*args, _name=name, _original=original, **kwargs):
            steps[_name] += 1
            return _original(*args, **kwargs)

        optimizer.step = counted
    critic_before = [p.detach().clone() for p in model.critic.parameters()]
    target_before = [p.detach().clone() for p in model.critic_target.parameters()]
    model.learn(130)  # updates after env steps 101..130
    assert steps == {"critic": 90, "actor": 90}
    assert model._n_updates == 90
    assert all(not th.equal(a, b) for a, b in zip(critic_before, model.critic.parameters()))
    assert any(not th.equal(a, b) for a, b in zip(target_before, model.critic_target.parameters()))  # Polyak


def test_bad_input():
    with pytest.raises(ValueError, match="MBPO.*Box.*Discrete"):
        MBPO("MlpPolicy", "CartPole-v1")
    for ratio in (-0.1, 1.5):
        with pytest.raises(ValueError, match="real_ratio"):
            tiny_mbpo(real_ratio=ratio)
    with pytest.warns(UserWarning, match="termination"):
        tiny_mbpo("InvertedPendulum-v4", termination_fn=None)


def test_nan_from_model_is_a_clear_error_and_keeps_real_data():
    model = tiny_mbpo(reward_fn=lambda o, a, n: th.full((len(o),), float("nan")))
    with pytest.raises(RuntimeError, match="NaN or inf"):
        model.learn(200)
    assert model.replay_buffer.size() == 101


@pytest.mark.skipif(not th.cuda.is_available(), reason="needs CUDA")
def test_cuda():
    model = tiny_mbpo(device="cuda")
    model.learn(150)
    assert model.model_buffer.obs.device.type == "cuda"


def _fused(optimizer):
    return bool(optimizer.defaults.get("fused"))


def test_sac_optimizers_are_fused_adam_unless_the_caller_chooses(tmp_path):
    model = tiny_mbpo()
    assert _fused(model.actor.optimizer) and _fused(model.critic.optimizer)
    assert "optimizer_kwargs" not in TINY["policy_kwargs"]  # the caller's dict does not get it
    model.learn(120)  # fused steps update the weights as the loop does
    model.save(tmp_path / "mbpo")
    loaded = MBPO.load(tmp_path / "mbpo")
    assert _fused(loaded.actor.optimizer) and _fused(loaded.critic.optimizer)
    for choice in (dict(fused=False), dict(foreach=True)):
        chosen = tiny_mbpo(policy_kwargs=dict(net_arch=[32, 32], optimizer_kwargs=choice))
        assert not _fused(chosen.actor.optimizer) and not _fused(chosen.critic.optimizer)
    sgd = tiny_mbpo(policy_kwargs=dict(net_arch=[32, 32], optimizer_class=th.optim.SGD))
    assert isinstance(sgd.actor.optimizer, th.optim.SGD) and "fused" not in (sgd.policy_kwargs.get("optimizer_kwargs") or {})


def test_fused_and_looped_adam_train_sac_alike():
    """The fused kernel is the same update: SAC steps from equal weights on equal rows end at close weights."""
    models = [tiny_mbpo(learning_starts=1000, policy_kwargs=dict(net_arch=[32, 32], optimizer_kwargs=kwargs))
              for kwargs in (dict(fused=True), dict(fused=False))]
    for model in models:
        model.learn(60)  # random actions, no update: the same 60 real rows
    models[1].policy.load_state_dict(models[0].policy.state_dict())
    before = {key: value.clone() for key, value in models[0].policy.state_dict().items()}
    for model in models:
        th.manual_seed(0)
        np.random.seed(0)
        SAC.train(model, gradient_steps=3, batch_size=32)  # SAC's update alone, on real data
    after = [model.policy.state_dict() for model in models]
    assert not th.equal(after[0]["actor.latent_pi.0.weight"], before["actor.latent_pi.0.weight"])
    for key, fused in after[0].items():
        th.testing.assert_close(fused, after[1][key], rtol=1e-4, atol=1e-5, msg=key)
