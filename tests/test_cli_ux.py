"""
The first hour of a new user with ``sb3-mbrl`` (issue 18): feedback during evaluations and enjoy,
the model saved on SIGTERM, a plain error for an unknown env id.
"""
import os
import queue
import re
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import List, Optional

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import SAC
from stable_baselines3.common.env_util import make_vec_env


# eval 2/5 at step 600: episode 3/5 return -153.2 (200 steps, 41.3 s)
EVAL_LINE = re.compile(
    r"^eval (\d+)/(\d+) at step (\d+): episode (\d+)/(\d+) return (-?\d+\.\d) \((\d+) steps, \d+\.\d s\)$", re.M
)
# What rl-zoo's enjoy prints per episode with one env, and ours with several.
ENJOY_LINE = re.compile(r"^Episode Reward: -?\d+\.\d+$", re.M)
ENJOY_ENV_LINE = re.compile(r"^env (\d+): episode (\d+) return (-?\d+\.\d+) \((\d+) steps, \d+\.\d s\)$", re.M)


def _command(*args: str) -> List[str]:
    return [sys.executable, "-m", "sb3_mbrl", *args]


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    # A user's shell has no PYTHONUNBUFFERED: without it a pipe is block-buffered, as in a job log.
    env.pop("PYTHONUNBUFFERED", None)
    return env


def _run(args: List[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(_command(*args), cwd=cwd, capture_output=True, text=True, timeout=timeout, env=_env())


def _ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


class _LineReader:
    """The lines of a process's stdout as they arrive (a thread reads the pipe, so waiting can time out)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self.seen: List[str] = []

        def read() -> None:
            for line in proc.stdout:
                self.lines.put(line)
            self.lines.put(None)

        threading.Thread(target=read, daemon=True).start()

    def wait_for(self, pattern: "re.Pattern[str]", timeout: float) -> Optional[str]:
        """The first line matching ``pattern``, or None at end of output or after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return None
            if line is None:
                return None
            self.seen.append(line)
            if pattern.search(line.rstrip("\n")):
                return line
        return None


@pytest.fixture(scope="module")
def trained_sac(tmp_path_factory):
    """One short SAC run on Pendulum (two evaluations of two episodes), shared by the train and enjoy tests."""
    folder = tmp_path_factory.mktemp("sac_run")
    args = ["train", "--algo", "sac", "--env", "Pendulum-v1", "-n", "300", "--eval-freq", "150"]
    args += ["--eval-episodes", "2", "--num-threads", "1", "-f", "logs", "--seed", "0"]
    result = _run(args, folder)
    return folder, result


def test_train_prints_one_line_per_eval_episode(trained_sac):
    folder, result = trained_sac
    out = _ok(result)
    lines = EVAL_LINE.findall(out)
    assert len(lines) == 2 * 2, out  # evaluations x episodes
    assert [(int(e), int(n), int(step), int(ep), int(m)) for e, n, step, ep, m, _, _ in lines] == [
        (1, 2, 150, 1, 2),
        (1, 2, 150, 2, 2),
        (2, 2, 300, 1, 2),
        (2, 2, 300, 2, 2),
    ]
    # The returns and lengths printed are the ones EvalCallback records.
    evaluations = np.load(folder / "logs" / "sac" / "Pendulum-v1_1" / "evaluations.npz")
    np.testing.assert_allclose([float(line[5]) for line in lines], evaluations["results"].ravel(), atol=0.051)
    assert [int(line[6]) for line in lines] == list(evaluations["ep_lengths"].ravel())


def test_enjoy_prints_one_line_per_finished_episode(trained_sac):
    folder, _ = trained_sac
    args = ["enjoy", "--algo", "sac", "--env", "Pendulum-v1", "-f", "logs", "-n", "400", "--no-render"]
    out = _ok(_run(args, folder))
    # rl-zoo prints these itself with one env: exactly once per episode, no line of ours on top.
    assert len(ENJOY_LINE.findall(out)) == 2, out
    assert not ENJOY_ENV_LINE.findall(out), out


def test_enjoy_with_several_envs_prints_one_line_per_finished_episode(trained_sac):
    folder, _ = trained_sac
    args = ["enjoy", "--algo", "sac", "--env", "Pendulum-v1", "-f", "logs", "-n", "400", "--n-envs", "2", "--no-render"]
    out = _ok(_run(args, folder))
    # 400 steps of 2 envs: 2 episodes of 200 steps in each env.
    lines = ENJOY_ENV_LINE.findall(out)
    assert sorted((int(env), int(ep), int(steps)) for env, ep, _, steps in lines) == [
        (0, 1, 200),
        (0, 2, 200),
        (1, 1, 200),
        (1, 2, 200),
    ], out


def test_enjoy_episode_lines_arrive_while_it_runs(trained_sac):
    """
    Written to a pipe (``| tee``, a job log), each episode's line shows when the episode ends, not
    when the 8 KiB output buffer fills (some 200 Pendulum episodes of SAC later).
    """
    folder, _ = trained_sac
    args = ["enjoy", "--algo", "sac", "--env", "Pendulum-v1", "-f", "logs", "-n", "100000", "--no-render"]
    proc = subprocess.Popen(_command(*args), cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=_env())
    received = b""
    try:
        deadline = time.monotonic() + 60
        while b"Episode Reward" not in received and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 1.0)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 1 << 16)
                if not chunk:
                    break
                received += chunk
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait(timeout=30)
    # Line by line, the first episode's line comes alone (a slow reader may see a few at once).
    assert 1 <= received.count(b"Episode Reward") < 20, received.decode()


def test_train_eval_lines_arrive_while_it_runs_and_sigterm_in_an_evaluation_saves(tmp_path):
    args = ["train", "--algo", "sac", "--env", "Pendulum-v1", "-n", "100000", "--eval-freq", "200"]
    args += ["--eval-episodes", "2", "--num-threads", "1", "-f", "logs", "--seed", "0"]
    proc = subprocess.Popen(
        _command(*args), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()
    )
    try:
        line = _LineReader(proc).wait_for(EVAL_LINE, timeout=60)
        assert line is not None and proc.poll() is None
        assert line.startswith("eval 1/500 at step 200: episode 1/2 return ")
        # Most likely in the evaluation's second episode: the interrupt lands inside evaluate_policy.
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    err = proc.stderr.read()
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert "Traceback" not in err, err
    assert SAC.load(tmp_path / "logs" / "sac" / "Pendulum-v1_1" / "Pendulum-v1.zip", device="cpu").num_timesteps >= 200


def test_sigterm_saves_model_and_replay_buffer(tmp_path):
    args = ["train", "--algo", "sac", "--env", "Pendulum-v1", "-n", "100000", "--eval-freq", "-1"]
    args += ["--num-threads", "1", "-f", "logs", "--seed", "0", "--save-replay-buffer"]
    proc = subprocess.Popen(
        _command(*args), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()
    )
    run_dir = tmp_path / "logs" / "sac" / "Pendulum-v1_1"
    try:
        deadline = time.monotonic() + 60
        while not run_dir.is_dir() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert run_dir.is_dir() and proc.poll() is None
        time.sleep(3)  # into learn(), past learning_starts
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    # 128 + SIGTERM: the model is saved, and scripts and schedulers still see an interrupted run.
    assert proc.returncode == 128 + signal.SIGTERM, out[-3000:] + err[-3000:]
    assert "Traceback" not in err, err
    assert "SIGTERM" in err
    assert (run_dir / "Pendulum-v1.zip").is_file(), out[-3000:] + err[-3000:]
    assert (run_dir / "replay_buffer.pkl").is_file()
    model = SAC.load(run_dir / "Pendulum-v1.zip", device="cpu")
    assert 100 < model.num_timesteps < 100000
    model.load_replay_buffer(run_dir / "replay_buffer.pkl")
    assert model.replay_buffer.size() > 100


@pytest.mark.parametrize("command", ["train", "enjoy"])
@pytest.mark.parametrize("env_id, suggestion", [("NoSuchEnv-v0", None), ("Pendulum-v2", "'Pendulum-v1'")])
def test_unknown_env_id_is_a_usage_error(tmp_path, command, env_id, suggestion):
    args = [command, "--algo", "pets", "--env", env_id, "-f", "logs"]
    if command == "train":
        args += ["--num-threads", "1"]
    result = _run(args, tmp_path)
    assert result.returncode == 2, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"sb3-mbrl {command}: error: unknown environment id '{env_id}'" in result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    if suggestion is None:
        assert "did you mean" not in result.stderr
    else:
        assert f"did you mean {suggestion}" in result.stderr
    assert not (tmp_path / "logs").exists()  # answered before any run folder


def test_unknown_env_id_of_a_namespace_package_names_gym_packages(capsys):
    from sb3_mbrl.zoo.env_ids import check_env_id

    with pytest.raises(SystemExit) as exit_info:
        check_env_id("train", ["--algo", "ppo", "--env", "seals/CartPole-v0"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("sb3-mbrl train: error: unknown environment id 'seals/CartPole-v0'")
    assert "`--gym-packages seals`" in err
    # Imported as rl-zoo would, the package's ids pass (rl-zoo's nargs="+" list, the last flag's form too).
    check_env_id("train", ["--env", "seals/CartPole-v0", "--gym-packages", "seals", "-n", "10"])
    check_env_id("enjoy", ["--env=seals/CartPole-v0", "--gym-packages=seals"])


class _SuccessAtEnd(gym.Wrapper):
    """Pendulum that reports success at the end of each episode, to see EvalCallback's success rate kept."""

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if terminated or truncated:
            info["is_success"] = True
        return obs, reward, terminated, truncated, info


def test_progress_eval_callback_keeps_success_tracking_with_several_eval_envs(tmp_path, capsys):
    from sb3_mbrl.zoo.progress import ProgressEvalCallback

    eval_env = make_vec_env("Pendulum-v1", n_envs=2, seed=1, wrapper_class=_SuccessAtEnd)
    callback = ProgressEvalCallback(eval_env, n_eval_episodes=3, eval_freq=100, log_path=str(tmp_path))
    model = SAC("MlpPolicy", "Pendulum-v1", learning_starts=100, policy_kwargs=dict(net_arch=[16]), seed=0, device="cpu")
    model.learn(200, callback=callback)
    out = capsys.readouterr().out
    lines = EVAL_LINE.findall(out)
    assert [(int(e), int(n), int(ep), int(m)) for e, n, _, ep, m, _, _ in lines] == [
        (1, 2, 1, 3),
        (1, 2, 2, 3),
        (1, 2, 3, 3),
        (2, 2, 1, 3),
        (2, 2, 2, 3),
        (2, 2, 3, 3),
    ], out
    assert callback.evaluations_successes == [[True] * 3, [True] * 3]
    assert "Success rate: 100.00%" in out
