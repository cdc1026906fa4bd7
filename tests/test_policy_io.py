"""Policy-only save/load (``sb3_mbrl.common.save_policy`` / ``load_policy``) under torch's safe loading."""
import pickle
from typing import Dict

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.utils import constant_fn
from stable_baselines3.sac.policies import SACPolicy

from sb3_mbrl import MBPO, PETS, REINFORCE
from sb3_mbrl.common import load_policy, save_policy
from sb3_mbrl.common.encoding import decode, encode
from sb3_mbrl.envs import rewards, terminations
from sb3_mbrl.pets.policies import MPCPolicy


@pytest.fixture(scope="module")
def pets_model() -> PETS:
    model = PETS(
        "MlpPolicy",
        "Pendulum-v1",
        learning_starts=50,
        horizon=3,
        num_particles=1,
        planner_kwargs=dict(population_size=20, num_elites=4, iterations=2),
        model_net_arch=[16, 16],
        seed=0,
    )
    return model.learn(60)


@pytest.fixture(scope="module")
def mbpo_model() -> MBPO:
    model = MBPO(
        "MlpPolicy",
        "Pendulum-v1",
        learning_starts=20,
        gradient_steps=1,
        rollout_batch_size=50,
        model_train_freq=20,
        model_net_arch=[16, 16],
        policy_kwargs=dict(net_arch=[16]),
        seed=0,
    )
    return model.learn(30)


def _assert_same_state_dict(a: Dict[str, th.Tensor], b: Dict[str, th.Tensor]) -> None:
    assert list(a) == list(b)
    for key in a:
        assert th.equal(a[key].cpu(), b[key].cpu()), key


def _observations(space: spaces.Space, n: int = 8) -> np.ndarray:
    space.seed(1)
    return np.stack([space.sample() for _ in range(n)])


def _tiny_mpc_policy(**kwargs) -> MPCPolicy:
    return MPCPolicy(
        spaces.Box(-1.0, 1.0, (3,), np.float32),
        spaces.Box(-2.0, 2.0, (1,), np.float32),
        constant_fn(1e-3),
        net_arch=[8],
        ensemble_size=2,
        horizon=2,
        num_particles=1,
        planner_kwargs=dict(population_size=8, num_elites=2, iterations=1),
        **kwargs,
    )


def test_sb3_policy_load_fails_under_weights_only(tmp_path) -> None:
    """Why the helper exists: SB3 2.2.1's BasePolicy.load does a plain th.load, which torch >= 2.6
    runs with weights_only=True, and the file holds pickled spaces and classes."""
    policy = SACPolicy(
        spaces.Box(-1.0, 1.0, (3,), np.float32), spaces.Box(-2.0, 2.0, (1,), np.float32), constant_fn(1e-3), net_arch=[8]
    )
    path = tmp_path / "sb3_policy.pth"
    policy.save(str(path))
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        SACPolicy.load(str(path))


def test_mpc_policy_roundtrip(pets_model: PETS, tmp_path) -> None:
    policy = pets_model.policy
    assert bool(policy.fitted)
    path = tmp_path / "mpc_policy.pth"
    policy.save(str(path))  # MPCPolicy.save -> save_policy
    th.load(str(path), weights_only=True)  # plain types and tensors only

    loaded = load_policy(str(path), device="cpu")
    assert type(loaded) is MPCPolicy
    _assert_same_state_dict(policy.state_dict(), loaded.state_dict())
    assert loaded._get_constructor_parameters() == policy._get_constructor_parameters()
    assert loaded.optimizer_class is policy.optimizer_class
    assert loaded.optimizer.param_groups[0]["lr"] == policy.optimizer.param_groups[0]["lr"]

    # Planning draws random numbers: same torch seed right before each predict, fresh warm starts.
    obs = _observations(policy.observation_space)
    policy.reset_plans()
    th.manual_seed(0)
    expected, _ = policy.predict(obs, deterministic=True)
    policy.reset_plans()
    th.manual_seed(0)
    actions, _ = loaded.predict(obs, deterministic=True)
    np.testing.assert_allclose(actions, expected, rtol=1e-5, atol=1e-6)

    # The classmethod goes through load_policy too.
    again = MPCPolicy.load(str(path), device="cpu")
    _assert_same_state_dict(policy.state_dict(), again.state_dict())


def test_mpc_policy_keeps_known_reward_fn(pets_model: PETS, tmp_path) -> None:
    assert pets_model.policy.reward_fn is rewards.pendulum_reward  # found by reward_fn="auto"
    path = tmp_path / "mpc_policy.pth"
    save_policy(pets_model.policy, str(path))
    raw = th.load(str(path), weights_only=True)
    assert "sb3_mbrl.envs.rewards:pendulum_reward" in str(raw["data"])
    loaded = MPCPolicy.load(str(path))
    assert loaded.reward_fn is rewards.pendulum_reward
    assert loaded.termination_fn is terminations.never_terminates
    assert loaded.model_env.reward_fn is rewards.pendulum_reward
    assert not loaded.dynamics.learn_reward


def _user_reward(obs: th.Tensor, action: th.Tensor, next_obs: th.Tensor) -> th.Tensor:
    return -next_obs.pow(2).sum(-1)


@pytest.mark.parametrize("kind", ["lambda", "local"])
def test_unencodable_reward_fn_raises_at_save(kind: str, tmp_path) -> None:
    if kind == "lambda":
        reward_fn = lambda obs, action, next_obs: -next_obs.pow(2).sum(-1)  # noqa: E731
    else:

        def reward_fn(obs: th.Tensor, action: th.Tensor, next_obs: th.Tensor) -> th.Tensor:
            return -next_obs.pow(2).sum(-1)

    policy = _tiny_mpc_policy(reward_fn=reward_fn)
    path = tmp_path / "mpc_policy.pth"
    with pytest.raises(ValueError, match=r"constructor argument reward_fn = .*module-level function.*model\.save\(\)"):
        policy.save(str(path))
    assert not path.exists()


def test_module_level_user_reward_fn_roundtrip(tmp_path) -> None:
    policy = _tiny_mpc_policy(reward_fn=_user_reward)
    path = tmp_path / "mpc_policy.pth"
    policy.save(str(path))
    assert MPCPolicy.load(str(path)).reward_fn is _user_reward


def test_sac_policy_roundtrip(mbpo_model: MBPO, tmp_path) -> None:
    policy = mbpo_model.policy
    assert isinstance(policy, SACPolicy)
    path = tmp_path / "sac_policy.pth"
    save_policy(policy, str(path))
    th.load(str(path), weights_only=True)

    loaded = load_policy(str(path), device="cpu", policy_class=SACPolicy)
    assert type(loaded) is type(policy)
    _assert_same_state_dict(policy.state_dict(), loaded.state_dict())
    obs = _observations(policy.observation_space)
    expected, _ = policy.predict(obs, deterministic=True)
    actions, _ = loaded.predict(obs, deterministic=True)
    np.testing.assert_allclose(actions, expected, rtol=1e-6, atol=1e-6)
    # lr_schedule comes back as a constant at the actor's current learning rate.
    assert loaded.actor.optimizer.param_groups[0]["lr"] == policy.actor.optimizer.param_groups[0]["lr"]


def test_actor_critic_policy_roundtrip(tmp_path) -> None:
    model = REINFORCE("MlpPolicy", "CartPole-v1", seed=0)
    policy = model.policy
    path = tmp_path / "ac_policy.pth"
    save_policy(policy, str(path))
    th.load(str(path), weights_only=True)

    loaded = load_policy(str(path), device="cpu")
    assert type(loaded) is ActorCriticPolicy
    _assert_same_state_dict(policy.state_dict(), loaded.state_dict())
    assert loaded.observation_space == policy.observation_space
    assert loaded.action_space == policy.action_space
    assert loaded.features_extractor_class is policy.features_extractor_class
    assert loaded.activation_fn is policy.activation_fn
    obs = _observations(policy.observation_space, n=32)
    expected, _ = policy.predict(obs, deterministic=True)
    actions, _ = loaded.predict(obs, deterministic=True)
    np.testing.assert_array_equal(actions, expected)
    assert loaded.optimizer.param_groups[0]["lr"] == model.learning_rate


def test_refuses_non_policy_class(tmp_path) -> None:
    path = tmp_path / "policy.pth"
    save_policy(_tiny_mpc_policy(), str(path))
    saved = th.load(str(path), weights_only=True)
    saved["policy_class"] = "torch.nn:Linear"
    bad = tmp_path / "bad.pth"
    th.save(saved, str(bad))
    with pytest.raises(ValueError, match="not a subclass of .*BasePolicy"):
        load_policy(str(bad))


def test_refuses_other_policy_class(mbpo_model: MBPO, tmp_path) -> None:
    path = tmp_path / "sac_policy.pth"
    save_policy(mbpo_model.policy, str(path))
    with pytest.raises(ValueError, match="MPCPolicy"):
        MPCPolicy.load(str(path))
    with pytest.raises(TypeError, match="BasePolicy"):
        load_policy(str(path), policy_class=dict)  # type: ignore[arg-type]


def test_refuses_unsafe_import_paths(tmp_path) -> None:
    path = tmp_path / "policy.pth"
    save_policy(_tiny_mpc_policy(), str(path))
    saved = th.load(str(path), weights_only=True)
    saved["data"]["reward_fn"] = {"__sb3_mbrl__": "import", "path": "os:system"}  # a builtin, not a Python function
    bad = tmp_path / "bad.pth"
    th.save(saved, str(bad))
    with pytest.raises(ValueError, match="os:system"):
        load_policy(str(bad))
    saved["data"]["reward_fn"] = None
    saved["data"]["activation_fn"] = {"__sb3_mbrl__": "import", "path": "collections:OrderedDict"}
    th.save(saved, str(bad))
    with pytest.raises(ValueError, match="activation_fn"):
        load_policy(str(bad))


def test_encoding_roundtrip_under_weights_only(tmp_path) -> None:
    space = spaces.Dict(
        {
            "box": spaces.Box(low=np.array([-1.0, -np.inf]), high=np.array([1.0, np.inf]), dtype=np.float64),
            "img": spaces.Box(0, 255, (2, 3, 3), np.uint8),
            "disc": spaces.Discrete(4, start=1),
            "multi": spaces.MultiDiscrete([2, 3]),
            "bin": spaces.MultiBinary([2, 2]),
            "tup": spaces.Tuple((spaces.Discrete(2), spaces.Box(-1.0, 1.0, (1,), np.float32))),
        }
    )
    value = {
        "space": space,
        "cls": th.nn.ReLU,
        "fn": rewards.pendulum_reward,
        "array": np.arange(3),
        "scalar": np.float32(0.5),
        "tuple": (1, 2.0, "a"),
        "nested": [{"__sb3_mbrl__": "not a tag"}, None, True],
        "tensor": th.ones(2),
        "dtype": th.float32,
        "device": th.device("cpu"),
    }
    path = tmp_path / "encoded.pth"
    th.save(encode(value, ""), str(path))
    decoded = decode(th.load(str(path), weights_only=True), "")
    assert decoded["space"] == space
    assert list(decoded["space"].spaces) == list(space.spaces)
    assert decoded["cls"] is th.nn.ReLU
    assert decoded["fn"] is rewards.pendulum_reward
    assert decoded["array"] == [0, 1, 2]
    assert decoded["scalar"] == 0.5 and type(decoded["scalar"]) is float
    assert decoded["tuple"] == (1, 2.0, "a")
    assert decoded["nested"] == [{"__sb3_mbrl__": "not a tag"}, None, True]
    assert th.equal(decoded["tensor"], th.ones(2))
    assert decoded["dtype"] is th.float32
    assert decoded["device"] == th.device("cpu")


def test_unencodable_object_raises() -> None:
    with pytest.raises(ValueError, match=r"constructor argument x\['y'\]\[0\] = <object"):
        encode({"x": {"y": [object()]}}, "")
