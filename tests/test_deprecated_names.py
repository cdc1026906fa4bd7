"""The PETS names before issue 12 (optimizer, learning_rate, policy_kwargs["net_arch"] ...): accepted for one
release with a FutureWarning that names the new name, the same model as the new names, old files load."""
import inspect
import warnings

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.save_util import load_from_zip_file, save_to_zip_file
from torch import nn

from sb3_mbrl import PETS
from sb3_mbrl.common.deprecation import rename_kwargs, renamed_arguments
from sb3_mbrl.zoo.search_spaces import RENAMED_PARAMS, hyperparams_from_params

BASE = dict(learning_starts=50, model_train_freq=50, ensemble_size=3, horizon=5, num_particles=2, model_epochs=3)
PLANNER_KWARGS = dict(population_size=16, num_elites=4, iterations=2)
OLD = dict(
    optimizer="icem",
    optimizer_kwargs=PLANNER_KWARGS,
    learning_rate=5e-4,
    batch_size=64,
    holdout_ratio=0.25,
    policy_kwargs=dict(net_arch=[32, 32], activation_fn=nn.ReLU, weight_decays=[1e-5, 2e-5, 3e-5], planning_dtype="bfloat16"),
)
NEW = dict(
    planner="icem",
    planner_kwargs=PLANNER_KWARGS,
    model_learning_rate=5e-4,
    model_batch_size=64,
    model_holdout_ratio=0.25,
    model_net_arch=[32, 32],
    model_activation_fn=nn.ReLU,
    model_weight_decays=[1e-5, 2e-5, 3e-5],
    policy_kwargs=dict(planning_dtype="bfloat16"),
)
RENAMED = {
    "optimizer": "planner",
    "optimizer_kwargs": "planner_kwargs",
    "learning_rate": "model_learning_rate",
    "batch_size": "model_batch_size",
    "holdout_ratio": "model_holdout_ratio",
    "policy_kwargs['net_arch']": "model_net_arch",
    "policy_kwargs['activation_fn']": "model_activation_fn",
    "policy_kwargs['weight_decays']": "model_weight_decays",
}


def pets(**kwargs) -> PETS:
    return PETS("MlpPolicy", "Pendulum-v1", seed=0, **BASE, **kwargs)


# ---------------------------------------------------------------------------- the helper
def test_rename_kwargs_moves_old_names_with_a_future_warning():
    given = {"old": 1, "kept": 2, "outer": {"inner": 3, "stays": 4}}
    with pytest.warns(FutureWarning) as record:
        renamed = rename_kwargs("Algo", given, {"old": "new"}, {"outer": {"inner": "top"}})
    assert renamed == {"new": 1, "kept": 2, "outer": {"stays": 4}, "top": 3}
    assert given == {"old": 1, "kept": 2, "outer": {"inner": 3, "stays": 4}}  # the caller's dicts are not changed
    messages = [str(warning.message) for warning in record]
    assert messages == [
        "Algo: old is deprecated and will be removed in the next release; use new",
        "Algo: outer['inner'] is deprecated and will be removed in the next release; use top",
    ]
    assert all(warning.filename == __file__ for warning in record)  # points at the caller
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new_names_only = {"new": 1, "outer": None}
        assert rename_kwargs("Algo", new_names_only, {"old": "new"}, {"outer": {"inner": "top"}}) == new_names_only


@pytest.mark.parametrize(
    "given, positional, match",
    [
        ({"old": 1, "new": 2}, (), r"both old \(deprecated\) and new; pass new only"),
        ({"old": 1}, ("new",), "both old"),
        ({"outer": {"inner": 1}, "top": 2}, (), r"both outer\['inner'\] \(deprecated\) and top"),
    ],
)
def test_rename_kwargs_refuses_old_and_new_together(given, positional, match):
    with pytest.raises(ValueError, match=match):
        rename_kwargs("Algo", given, {"old": "new"}, {"outer": {"inner": "top"}}, positional)


def test_renamed_arguments_keeps_the_signature_and_sees_positional_arguments():
    @renamed_arguments("f", {"old": "new"})
    def f(a, new=0):
        return a, new

    assert list(inspect.signature(f).parameters) == ["a", "new"]
    with pytest.warns(FutureWarning, match="use new"):
        assert f(1, old=5) == (1, 5)
    with pytest.raises(ValueError, match="both old"):
        f(1, 2, old=5)


# ---------------------------------------------------------------------------- PETS
@pytest.mark.parametrize("old, new", list(RENAMED.items()))
def test_each_old_pets_name_warns_with_its_new_name(old, new):
    with pytest.warns(FutureWarning) as record:
        pets(**OLD)
    messages = [str(warning.message) for warning in record if issubclass(warning.category, FutureWarning)]
    assert f"PETS: {old} is deprecated and will be removed in the next release; use {new}" in messages
    assert len(messages) == len(RENAMED)


def test_old_names_build_and_train_the_same_model():
    models = []
    for names in (OLD, NEW):  # each built and trained in turn: both start from the seeded global RNG
        with warnings.catch_warnings():
            warnings.simplefilter("ignore" if names is OLD else "error", FutureWarning)
            model = pets(**names)
        assert (model.planner, model.planner_kwargs) == ("icem", PLANNER_KWARGS)
        assert (model.model_batch_size, model.model_holdout_ratio) == (64, 0.25)
        assert model.model_learning_rate == model.learning_rate == 5e-4
        assert model.model_net_arch == model.policy.net_arch == [32, 32] and model.policy.activation_fn is nn.ReLU
        assert model.model_weight_decays == model.policy.weight_decays == [1e-5, 2e-5, 3e-5]
        assert model.policy_kwargs == {"planning_dtype": "bfloat16", "optimizer_kwargs": {"fused": True}}  # fused Adam by default
        assert model.model_trainer.batch_size == 64 and model.model_trainer.holdout_ratio == 0.25
        assert type(model.policy.receding_horizon.planner).__name__ == "ICEMOptimizer"
        models.append(model.learn(120))
    old, new = models
    np.testing.assert_array_equal(old.replay_buffer.actions[:120], new.replay_buffer.actions[:120])
    for key, value in new.policy.state_dict().items():
        th.testing.assert_close(old.policy.state_dict()[key], value, msg=key)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(optimizer="icem", planner="cem"),
        dict(learning_rate=1e-3, model_learning_rate=1e-3),
        dict(policy_kwargs=dict(net_arch=[8]), model_net_arch=[8]),
    ],
)
def test_old_and_new_pets_names_together_are_an_error(kwargs):
    with pytest.raises(ValueError, match="PETS: got both .* \\(deprecated\\) and "):
        pets(**kwargs)


def test_positional_learning_rate_keeps_its_meaning():
    model = PETS("MlpPolicy", "Pendulum-v1", 5e-4, **BASE)
    assert model.model_learning_rate == 5e-4


# ---------------------------------------------------------------------------- files saved before the rename
def _as_saved_before_the_rename(path, policy_kwargs_extra=None):
    """Rewrite a saved model's ``data`` to the attribute names PETS saved before the rename."""
    data, params, variables = load_from_zip_file(path)
    for old, new in (("optimizer", "planner"), ("optimizer_kwargs", "planner_kwargs"), ("holdout_ratio", "model_holdout_ratio")):
        data[old] = data.pop(new)
    net_arch = data.pop("model_net_arch")
    for name in ("model_learning_rate", "model_batch_size", "model_activation_fn", "model_weight_decays"):
        del data[name]
    saved_then = {k: v for k, v in data["policy_kwargs"].items() if k != "optimizer_kwargs"}  # fused Adam came later
    data["policy_kwargs"] = {**saved_then, "net_arch": net_arch, **(policy_kwargs_extra or {})}
    data["_model_train_freq"] = (50, "step")  # saved then, parsed again now
    save_to_zip_file(path, data=data, params=params, pytorch_variables=variables)


def test_a_model_saved_before_the_rename_loads(tmp_path):
    model = pets(planner="icem", planner_kwargs=PLANNER_KWARGS, model_learning_rate=5e-4, model_batch_size=64,
                 model_holdout_ratio=0.25, model_net_arch=[32, 32])
    model.learn(120)
    model.save(tmp_path / "pets")
    _as_saved_before_the_rename(tmp_path / "pets.zip")
    data, _, _ = load_from_zip_file(tmp_path / "pets.zip")
    assert "optimizer_kwargs" in data and "planner_kwargs" not in data and data["policy_kwargs"] == {"net_arch": [32, 32]}

    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # loading an old file is not a use of the old names
        loaded = PETS.load(tmp_path / "pets", env=model.get_env())
    assert (loaded.planner, loaded.planner_kwargs) == ("icem", PLANNER_KWARGS)
    assert (loaded.model_batch_size, loaded.model_holdout_ratio) == (64, 0.25)
    assert loaded.model_learning_rate == 5e-4 and loaded.model_net_arch == loaded.policy.net_arch == [32, 32]
    assert loaded.model_weight_decays == [0.0, 0.0, 0.0]  # saved without weight_decays: PETS had no decay then
    assert loaded.policy_kwargs == {"optimizer_kwargs": {"fused": True}}  # the old names moved out; fused Adam added on load
    assert not {"optimizer", "optimizer_kwargs", "holdout_ratio", "_model_train_freq"} & set(vars(loaded))
    obs = np.array([[0.3, -0.95, 0.5]], dtype=np.float32)
    start = np.array([True])
    actions = [algo.predict(obs, episode_start=start, deterministic=True)[0] for algo in (loaded, model)]
    np.testing.assert_array_equal(*actions)
    loaded.learn(60, reset_num_timesteps=False)  # and it trains on
    assert loaded.num_timesteps == 180 and loaded._n_updates > model._n_updates

    # weight_decays given in the old policy_kwargs are kept
    model.save(tmp_path / "decays")
    _as_saved_before_the_rename(tmp_path / "decays.zip", {"weight_decays": [1e-5, 2e-5, 3e-5]})
    assert PETS.load(tmp_path / "decays").model_weight_decays == [1e-5, 2e-5, 3e-5]


# ---------------------------------------------------------------------------- Optuna studies made before the rename
def test_study_parameters_of_the_old_pets_search_space_still_convert():
    new = dict(horizon=15, planner="cem", population_size=100, elite_fraction=0.2, iterations=4, num_particles=3,
               propagation="random_model", model_net_arch="small", model_learning_rate=5e-4)
    old = {**{k: v for k, v in new.items() if k not in ("planner", "model_net_arch", "model_learning_rate")},
           "optimizer": "cem", "net_arch": "small", "learning_rate": 5e-4}
    with pytest.warns(FutureWarning) as record:
        converted = hyperparams_from_params("pets", old)
    assert sorted(str(warning.message) for warning in record) == [
        f"pets search space: {old_name} is deprecated and will be removed in the next release; use {new_name}"
        for old_name, new_name in sorted(RENAMED_PARAMS["pets"].items())
    ]
    assert converted == hyperparams_from_params("pets", new)
    assert converted["planner"] == "cem" and converted["model_net_arch"] == [64, 64, 64]
