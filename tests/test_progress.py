"""Progress and feedback on long work: progress bars, model-fit epochs, env steps/s and fit time."""
import re
from collections import deque

import pytest
import stable_baselines3.common.base_class as sb3_base_class
from stable_baselines3.common.callbacks import ProgressBarCallback
from stable_baselines3.common.logger import KVWriter, Logger

from sb3_mbrl import MBPO, PETS, REINFORCE
from sb3_mbrl.dynamics.trainer import fit_progress_printer

PETS_TINY = dict(
    learning_starts=50,
    ensemble_size=3,
    horizon=3,
    num_particles=1,
    planner_kwargs=dict(population_size=16, num_elites=4, iterations=1),
    model_epochs=12,
    model_patience=100,  # run all 12 epochs so the epoch-10 line shows
    model_net_arch=[16, 16],
)
MBPO_TINY = dict(
    learning_starts=50,
    gradient_steps=1,
    batch_size=16,
    ensemble_size=3,
    num_elites=2,
    model_net_arch=[16, 16],
    model_epochs=12,
    model_patience=100,  # run all 12 epochs so the epoch-10 line shows
    model_train_freq=100,
    rollout_batch_size=32,
    epoch_length=100,
    policy_kwargs=dict(net_arch=[16, 16]),
)


class CaptureKeys(KVWriter):
    def __init__(self) -> None:
        self.records = []

    def write(self, key_values, key_excluded, step=0) -> None:
        self.records.append(dict(key_values))

    def close(self) -> None:
        pass


class CountingProgressBar(ProgressBarCallback):
    """SB3's own progress bar, counting the steps it was told about."""

    instances = []

    def __init__(self) -> None:
        super().__init__()
        self.steps = 0
        CountingProgressBar.instances.append(self)

    def _on_step(self) -> bool:
        self.steps += self.training_env.num_envs
        return super()._on_step()


@pytest.fixture
def counting_progress_bar(monkeypatch):
    CountingProgressBar.instances.clear()
    monkeypatch.setattr(sb3_base_class, "ProgressBarCallback", CountingProgressBar)
    return CountingProgressBar.instances


@pytest.mark.parametrize(
    "make, steps",
    [
        (lambda: PETS("MlpPolicy", "Pendulum-v1", seed=0, **PETS_TINY), 200),
        (lambda: MBPO("MlpPolicy", "Pendulum-v1", seed=0, **MBPO_TINY), 120),
        (lambda: REINFORCE("MlpPolicy", "CartPole-v1", n_episodes=1, seed=0), 300),
    ],
    ids=["pets", "mbpo", "reinforce"],
)
def test_progress_bar_works_for_every_algorithm(make, steps, counting_progress_bar):
    model = make()
    model.learn(steps, progress_bar=True)
    assert len(counting_progress_bar) == 1
    bar = counting_progress_bar[0]
    # The bar saw every env step of the run and was closed (SB3 sets pbar on start).
    assert bar.steps == model.num_timesteps >= steps
    assert bar.pbar is not None


@pytest.mark.parametrize("algo", ["PETS", "MBPO"])
def test_model_fit_shows_epochs_holdout_and_speed_at_verbose_1(algo, capsys):
    if algo == "PETS":
        model = PETS("MlpPolicy", "Pendulum-v1", seed=0, verbose=1, **PETS_TINY)
        steps = 400  # fits at learning_starts and after each episode
    else:
        model = MBPO("MlpPolicy", "Pendulum-v1", seed=0, verbose=1, **MBPO_TINY)
        steps = 210  # fits at steps 51 and 151; logs dumped at the end of episode 1
    capture = CaptureKeys()
    model.set_logger(Logger(folder=None, output_formats=[capture]))
    model.learn(steps, log_interval=1)
    out = capsys.readouterr().out
    summaries = re.findall(r"([\d.]+) s fitting in all, ([\d.]+) env steps/s", out)
    assert len(summaries) >= 2  # one line per fit
    # Epoch lines: epoch 1 and every 10th at verbose=1 (model_epochs=12 -> epochs 1 and 10).
    epochs = re.findall(rf"{algo} model epoch (\d+): train loss (-?[\d.]+), holdout MSE ([\d.]+)", out)
    assert [int(e) for e, _, _ in epochs] == [1, 10] * len(summaries)
    assert "epoch 2:" not in out and "epoch 11:" not in out
    totals = [float(total) for total, _ in summaries]
    assert totals == sorted(totals)  # cumulative fit time
    assert all(float(rate) > 0 for _, rate in summaries)
    keys = set().union(*capture.records)
    assert {"time/fps", "time/model_fit_s", "time/model_fit_total_s", "train/model_holdout_mse"} <= keys
    assert model.model_fit_seconds > 0
    assert model.model_fit_seconds == pytest.approx(totals[-1], abs=0.06)


def test_fit_progress_printer_levels(capsys):
    import torch as th

    assert fit_progress_printer("m", verbose=0) is None
    every_third = fit_progress_printer("m", verbose=1, every=3)
    for epoch in range(1, 8):
        every_third(epoch, 0.5, th.tensor([0.25, 0.75]))
    lines = capsys.readouterr().out.splitlines()
    assert [int(re.search(r"epoch (\d+)", line).group(1)) for line in lines] == [1, 3, 6]
    assert "holdout MSE 0.50000 (best member 0.25000)" in lines[0]
    all_epochs = fit_progress_printer("m", verbose=2, every=3)
    for epoch in range(1, 4):
        all_epochs(epoch, 0.5, th.tensor([0.1]))
    assert len(capsys.readouterr().out.splitlines()) == 3


@pytest.mark.parametrize("algo", ["PETS", "MBPO"])
def test_learning_starts_zero_waits_for_enough_data_to_fit(algo):
    # The first fit needs a holdout row and a training row: with learning_starts=0 the
    # algorithms keep acting (randomly / SAC on real data) until 5 transitions exist.
    if algo == "PETS":
        model = PETS("MlpPolicy", "Pendulum-v1", seed=0, **{**PETS_TINY, "learning_starts": 0, "model_train_freq": 1})
    else:
        model = MBPO("MlpPolicy", "Pendulum-v1", seed=0, **{**MBPO_TINY, "learning_starts": 0, "model_train_freq": 1})
    assert model.model_trainer.min_transitions == 5  # model_holdout_ratio 0.2
    model.learn(8)
    assert model.model_fit_seconds > 0
    if algo == "PETS":
        assert bool(model.policy.fitted)
    else:
        assert model._model_fitted and model.model_buffer.size > 0


class RecordingDeque(deque):
    """A deque that also copies every appended value into ``log``."""

    def __init__(self, log):
        super().__init__()
        self.log = log

    def append(self, value):
        self.log.append(value)
        super().append(value)


def test_planning_statistics_come_from_one_window_of_collection_steps():
    """time/planning_ms, _median, _p95, _max and _steps describe the same planned steps: those since the last dump."""
    import gymnasium as gym
    import numpy as np
    from stable_baselines3.common.callbacks import EvalCallback
    from stable_baselines3.common.monitor import Monitor

    model = PETS("MlpPolicy", gym.make("Pendulum-v1", max_episode_steps=60), seed=0, **PETS_TINY)
    capture = CaptureKeys()
    model.set_logger(Logger(None, [capture]))
    since_dump, windows = [], []
    model.policy.planning_ms = RecordingDeque(since_dump)
    dump = model._dump_logs

    def dump_and_remember():
        windows.append(list(since_dump))
        since_dump.clear()
        dump()

    model._dump_logs = dump_and_remember
    eval_env = Monitor(gym.make("Pendulum-v1", max_episode_steps=60))
    model.learn(180, callback=EvalCallback(eval_env, eval_freq=70, n_eval_episodes=1, verbose=0))
    planning_records = [r for r in capture.records if "time/planning_ms" in r]  # EvalCallback dumps too
    assert len(windows) == len(planning_records) == 3  # one episode dump per 60-step episode
    # episode 1 plans after the first fit at step 50; evaluation's 60 planned steps are not counted
    assert [len(w) for w in windows] == [10, 60, 60]
    for window, record in zip(windows, planning_records):
        assert record["time/planning_steps"] == len(window)
        assert record["time/planning_ms"] == pytest.approx(np.mean(window))
        assert record["time/planning_ms_median"] == pytest.approx(np.median(window))
        assert record["time/planning_ms_p95"] == pytest.approx(np.percentile(window, 95))
        assert record["time/planning_ms_max"] == pytest.approx(max(window))
