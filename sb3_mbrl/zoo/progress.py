"""
Feedback in the long silent stretches of ``sb3-mbrl train`` and ``sb3-mbrl enjoy``: a line per
evaluation episode (a PETS evaluation episode can take minutes) and a line per episode of every env
when enjoy runs several envs (rl-zoo prints episodes only with one env).
"""
import math
import time
from typing import Any, Callable, Dict, Optional

import numpy as np
from stable_baselines3.common.callbacks import EvalCallback
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvStepReturn


class ProgressEvalCallback(EvalCallback):
    """
    SB3's ``EvalCallback`` that also prints, flushed, a line when an evaluation starts and one when
    each of its episodes ends, e.g. ``eval 2/5 at step 600: episode 3/5 return -153.2 (200 steps, 41.3 s)``.
    Returns and lengths are the ones ``evaluate_policy`` records (the ``Monitor``'s when the eval
    env has one, so an Atari life lost does not count as an episode). Everything else, the
    success rate included, is ``EvalCallback``'s.

    :param args: Positional arguments of ``EvalCallback``.
    :param print_episodes: Whether to print the evaluation and episode lines
        (``EvalCallback``'s own prints follow its ``verbose``).
    :param kwargs: Keyword arguments of ``EvalCallback``.
    """

    def __init__(self, *args: Any, print_episodes: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.print_episodes = print_episodes
        self._n_evaluations = 0
        self._n_planned: Optional[int] = None
        self._n_episodes = 0
        self._episode_start = np.zeros(self.eval_env.num_envs)

    def _on_training_start(self) -> None:
        super()._on_training_start()
        total_timesteps = self.locals.get("total_timesteps")
        if total_timesteps is not None and self.eval_freq > 0:
            # One call per step of the training VecEnv; evaluations at the multiples of eval_freq
            # (n_calls carries on over several learn() calls, so count from zero).
            calls = math.ceil((total_timesteps - self.model.num_timesteps) / self.training_env.num_envs)
            self._n_planned = (self.n_calls + calls) // self.eval_freq

    def _on_step(self) -> bool:
        if self.eval_freq > 0 and self.n_calls % self.eval_freq == 0:
            self._n_evaluations += 1
            self._n_episodes = 0
            self._episode_start[:] = time.perf_counter()
            if self.print_episodes:
                print(f"{self._prefix()}: running {self.n_eval_episodes} episodes", flush=True)
        return super()._on_step()

    def _prefix(self) -> str:
        planned = "" if self._n_planned is None else f"/{max(self._n_planned, self._n_evaluations)}"
        return f"eval {self._n_evaluations}{planned} at step {self.num_timesteps}"

    def _log_success_callback(self, locals_: Dict[str, Any], globals_: Dict[str, Any]) -> None:
        """
        The per-step callback ``EvalCallback`` passes to ``evaluate_policy``: its success tracking,
        then our line when an episode ends.

        :param locals_: ``evaluate_policy``'s local variables.
        :param globals_: ``evaluate_policy``'s global variables.
        """
        super()._log_success_callback(locals_, globals_)
        if not locals_["done"]:
            return
        i, info = locals_["i"], locals_["info"]
        # evaluate_policy's own rule for what ends an episode, so the lines match evaluations.npz.
        if locals_["is_monitor_wrapped"]:
            if "episode" not in info:
                return
            episode_return, length = info["episode"]["r"], info["episode"]["l"]
        else:
            episode_return, length = locals_["current_rewards"][i], locals_["current_lengths"][i]
        self._n_episodes += 1
        now = time.perf_counter()
        seconds, self._episode_start[i] = now - self._episode_start[i], now
        if self.print_episodes:
            print(
                f"{self._prefix()}: episode {self._n_episodes}/{self.n_eval_episodes} "
                f"return {float(episode_return):.1f} ({int(length)} steps, {seconds:.1f} s)",
                flush=True,
            )


class VecEpisodePrinter(VecEnvWrapper):
    """
    Prints, flushed, a line when an episode of any of the envs ends, e.g.
    ``env 1: episode 3 return -153.21 (200 steps, 41.3 s)``: the ``Monitor``'s return and length
    when the env has one (an Atari life lost is not the end), else the sum of the rewards seen.

    :param venv: The vectorized environment to report on.
    """

    def __init__(self, venv: VecEnv) -> None:
        super().__init__(venv)
        self._monitored = np.array(venv.env_is_wrapped(Monitor), dtype=bool)
        self._returns = np.zeros(self.num_envs)
        self._lengths = np.zeros(self.num_envs, dtype=int)
        self._episodes = np.zeros(self.num_envs, dtype=int)
        self._starts = np.zeros(self.num_envs)

    def reset(self) -> Any:
        obs = self.venv.reset()
        self._returns[:], self._lengths[:] = 0.0, 0
        self._starts[:] = time.perf_counter()
        return obs

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, dones, infos = self.venv.step_wait()
        self._returns += rewards
        self._lengths += 1
        for i in np.flatnonzero(dones):
            if self._monitored[i]:
                if "episode" not in infos[i]:
                    continue
                episode_return, length = infos[i]["episode"]["r"], infos[i]["episode"]["l"]
            else:
                episode_return, length = self._returns[i], self._lengths[i]
            self._episodes[i] += 1
            now = time.perf_counter()
            print(
                f"env {i}: episode {self._episodes[i]} return {float(episode_return):.2f} "
                f"({int(length)} steps, {now - self._starts[i]:.1f} s)",
                flush=True,
            )
            self._returns[i], self._lengths[i], self._starts[i] = 0.0, 0, now
        return obs, rewards, dones, infos


def print_episodes_of_several_envs(create_test_env: Callable[..., VecEnv]) -> Callable[..., VecEnv]:
    """
    rl-zoo's ``create_test_env`` with ``VecEpisodePrinter`` on top when it makes several envs:
    rl-zoo's enjoy prints each episode itself only with one env, so one env is left as it is.

    :param create_test_env: rl-zoo's function.
    :return: The same function, printing episodes of several envs.
    """

    def create(*args: Any, **kwargs: Any) -> VecEnv:
        env = create_test_env(*args, **kwargs)
        return VecEpisodePrinter(env) if env.num_envs > 1 else env

    return create
