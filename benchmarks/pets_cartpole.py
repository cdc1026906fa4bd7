"""PETS over Discrete actions on CartPole-v1, side by side with rl-zoo's tuned DQN and PPO, same seeds.

- PETS (``zoo_configs/pets.yml``, categorical CEM): env steps until a deterministic evaluation
  episode (eval env seeded ``1000 + seed``) returns 500, evaluated every 250 env steps; goal
  <= 2,000 env steps on every seed.
- DQN and PPO (rl-zoo's ``dqn.yml`` / ``ppo.yml`` CartPole-v1 entries): env steps until the mean of 5
  deterministic evaluation episodes reaches 475, evaluated every 2,500 env steps, capped at their
  zoo budgets (50k / 100k).
- Every run is one ``learn(budget)`` call with the evaluations in a callback, so the linear schedules
  of the zoo settings (PPO's learning rate and clip range, DQN's exploration) span the whole budget.
- Speed: PETS planning ms per env step (median, p95) and wall seconds per 1k env steps (evaluation excluded).

Prints one JSON line per result, appends them to ``benchmarks/results/pets_cartpole.jsonl`` and
writes ``benchmarks/results/pets_cartpole.png``. Usage:

    python -m benchmarks.pets_cartpole [--seeds 0 1 2 3 4] [--algos PETS DQN PPO]
"""
import argparse
import json
import time
from typing import Any, Dict, List, Optional, Tuple

import matplotlib

matplotlib.use("Agg")
import gymnasium as gym  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch as th  # noqa: E402
from stable_baselines3 import DQN, PPO  # noqa: E402
from stable_baselines3.common.callbacks import BaseCallback  # noqa: E402
from stable_baselines3.common.env_util import make_vec_env  # noqa: E402
from stable_baselines3.common.evaluation import evaluate_policy  # noqa: E402
from stable_baselines3.common.monitor import Monitor  # noqa: E402

from benchmarks.common import RESULTS, emit, zoo_kwargs  # noqa: E402
from sb3_mbrl import PETS  # noqa: E402
from sb3_mbrl.common.zoo_config import load_zoo_hyperparams  # noqa: E402

ENV_ID = "CartPole-v1"


def evaluate(model, seed: int, episodes: int) -> float:
    env = Monitor(gym.make(ENV_ID))
    env.reset(seed=1000 + seed)
    return float(evaluate_policy(model, env, n_eval_episodes=episodes, deterministic=True)[0])


class EvalAndStop(BaseCallback):
    """Evaluate every ``eval_every`` env steps inside one ``learn()`` (schedules see the whole budget); stop at ``goal``."""

    def __init__(self, seed: int, eval_every: int, episodes: int, goal: float) -> None:
        super().__init__()
        self.seed, self.eval_every, self.episodes, self.goal = seed, eval_every, episodes, goal
        self.curve: List[Tuple[int, float]] = []
        self.reached: Optional[int] = None
        self.eval_s = 0.0
        self._next = eval_every

    def _on_step(self) -> bool:
        if self.num_timesteps < self._next:
            return True
        self._next += self.eval_every
        start = time.perf_counter()
        value = evaluate(self.model, self.seed, self.episodes)
        self.eval_s += time.perf_counter() - start
        self.curve.append((self.num_timesteps, round(value, 1)))
        if value >= self.goal:
            self.reached = self.num_timesteps
            return False
        return True


def run(algo: str, seed: int, budget: int, eval_every: int, eval_episodes: int, goal: float) -> Dict[str, Any]:
    """One ``learn(budget)`` with an evaluation every ``eval_every`` env steps, stopped at ``goal``."""
    if algo == "PETS":
        model = PETS("MlpPolicy", ENV_ID, seed=seed, **zoo_kwargs("pets", ENV_ID))
    else:
        zoo = load_zoo_hyperparams(algo.lower(), ENV_ID, conf_file=None)
        env = make_vec_env(ENV_ID, n_envs=zoo.n_envs, seed=seed)
        model = {"DQN": DQN, "PPO": PPO}[algo](zoo.policy, env, seed=seed, **zoo.kwargs)
    callback = EvalAndStop(seed, eval_every, eval_episodes, goal)
    start = time.perf_counter()
    model.learn(budget, callback=callback)
    train_s = time.perf_counter() - start - callback.eval_s
    reached = callback.reached
    record: Dict[str, Any] = dict(
        benchmark="pets_cartpole", task=ENV_ID, algo=algo, seed=seed, goal=goal, budget=budget,
        env_steps_to_goal=reached, curve=callback.curve, wall_s_per_1k_steps=round(1000 * train_s / model.num_timesteps, 2),
    )
    if algo == "PETS":
        record["goal_met"] = reached is not None and reached <= 2000
        times = np.asarray(model.policy.planning_ms, dtype=float)
        if times.size:
            record.update(planning_ms_median=round(float(np.median(times)), 1), planning_ms_p95=round(float(np.percentile(times, 95)), 1))
    return record


SETTINGS = {  # algo: (budget, eval every, eval episodes, goal)
    "PETS": (2000, 250, 1, 500.0),
    "DQN": (50_000, 2500, 5, 475.0),
    "PPO": (100_000, 2500, 5, 475.0),
}


def plot(records: List[Dict[str, Any]], path: str) -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, algo in enumerate(SETTINGS):
        for j, r in enumerate(r for r in records if r["algo"] == algo):
            steps, values = zip(*r["curve"]) if r["curve"] else ((), ())
            ax.plot(steps, values, color=f"C{i}", alpha=0.8, marker=".", label=algo if j == 0 else None)
    ax.axhline(475, color="gray", ls="--", lw=1)
    ax.set(xscale="log", title="CartPole-v1: deterministic evaluation", xlabel="env steps (log)", ylabel="evaluation return")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--algos", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(RESULTS / "pets_cartpole.jsonl"))
    parser.add_argument("--plot", default=str(RESULTS / "pets_cartpole.png"))
    parser.add_argument("--replot", action="store_true", help="only redraw the plot from --out")
    args = parser.parse_args()
    if not args.replot:
        th.set_num_threads(args.threads)
        for seed in args.seeds:
            for algo in args.algos:
                record = run(algo, seed, *SETTINGS[algo])
                emit(record)
                with open(args.out, "a") as file:
                    file.write(json.dumps(record) + "\n")
    plot([json.loads(line) for line in open(args.out) if line.strip()], args.plot)


if __name__ == "__main__":
    main()
