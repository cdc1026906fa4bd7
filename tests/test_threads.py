"""The thread policy: our algorithms learn with one torch thread by default, the CLI too."""
import pytest
import torch as th

from sb3_mbrl import MBPO, PETS, REINFORCE
from sb3_mbrl.common.threads import torch_threads
from sb3_mbrl.zoo.argv import train_argv


@pytest.fixture
def two_threads():
    previous = th.get_num_threads()
    th.set_num_threads(2)
    yield
    th.set_num_threads(previous)


def test_torch_threads_sets_and_restores(two_threads):
    with torch_threads(1):
        assert th.get_num_threads() == 1
    assert th.get_num_threads() == 2
    with torch_threads(None):
        assert th.get_num_threads() == 2
    with pytest.raises(RuntimeError), torch_threads(1):
        raise RuntimeError("restored even on errors")
    assert th.get_num_threads() == 2


def _threads_seen_in_training(model, steps):
    seen = []
    original = model.train

    def spy(*args, **kwargs):
        seen.append(th.get_num_threads())
        return original(*args, **kwargs)

    model.train = spy
    model.learn(steps)
    return seen


@pytest.mark.parametrize(
    "make, steps",
    [
        (lambda **kw: PETS("MlpPolicy", "Pendulum-v1", learning_starts=20, horizon=2, num_particles=1,
                           planner_kwargs=dict(population_size=8, num_elites=2, iterations=1),
                           model_net_arch=[8], model_epochs=1, model_train_freq=10, **kw), 40),
        (lambda **kw: MBPO("MlpPolicy", "Pendulum-v1", learning_starts=20, gradient_steps=1, model_net_arch=[8],
                           model_epochs=1, model_train_freq=10, rollout_batch_size=8, **kw), 30),
        (lambda **kw: REINFORCE("MlpPolicy", "CartPole-v1", n_steps=16, **kw), 32),
    ],
    ids=["PETS", "MBPO", "REINFORCE"],
)
def test_learn_uses_one_thread_by_default_and_restores_the_callers(two_threads, make, steps):
    model = make()
    seen = _threads_seen_in_training(model, steps)
    assert seen and set(seen) == {1}
    assert th.get_num_threads() == 2  # the caller's setting is back after learn()
    seen = _threads_seen_in_training(make(num_threads=None), steps)
    assert set(seen) == {2}  # None: torch's setting
    with pytest.raises(ValueError, match="num_threads"):
        make(num_threads=0)


def test_cli_defaults_to_one_thread_unless_given():
    argv = train_argv(["--algo", "pets", "--env", "Pendulum-v1"])
    assert argv[argv.index("--num-threads") + 1] == "1"
    argv = train_argv(["--algo", "pets", "--env", "Pendulum-v1", "--num-threads", "2"])
    assert argv.count("--num-threads") == 1 and argv[argv.index("--num-threads") + 1] == "2"
