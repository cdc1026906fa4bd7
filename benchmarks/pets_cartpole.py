"""PETS over Discrete actions on CartPole-v1 (and Acrobot-v1), side by side with rl-zoo's tuned DQN and PPO, same seeds.

- PETS (``zoo_configs/pets.yml``, categorical CEM): env steps until a deterministic evaluation
  episode (eval env seeded ``1000 + seed``) returns 500, evaluated every 250 env steps; goal
  <= 2,000 env steps on every seed.
- DQN and PPO (rl-zoo's ``dqn.yml`` / ``ppo.yml`` CartPole-v1 entries): env steps until the mean of 5
  deterministic evaluation episodes reaches 475, evaluated every 2,500 env steps, capped at their
  zoo budgets (50k / 100k).
- Every run is one ``learn(budget)`` call with the evaluations in a callback, so the linear schedules
  of the zoo settings (PPO's learning rate and clip range, DQN's exploration) span the whole budget.
- Speed: PETS planning ms per env step (median, p95) and wall seconds per 1k env steps (evaluation excluded).
- ``--env Acrobot-v1`` (issue 16's stretch, PETS only): env steps until the mean of 3 deterministic
  evaluation episodes reaches -100, evaluated every 2,000 env steps (an evaluation plans up to 1,500
  steps); goal <= 10,000 env steps.

Prints one JSON line per result, appends them to ``benchmarks/results/pets_cartpole.jsonl`` (Acrobot:
``pets_acrobot.jsonl``) and writes the PNG of the same name. Usage:

    python -m benchmarks.pets_cartpole [--seeds 0 1 2 3 4] [--algos PETS DQN PPO] [--env CartPole-v1]
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

# env id: ({algo: (budget, eval every, eval episodes, goal)}, PETS' goal in env steps, results name)
TASKS: Dict[str, Tuple[Dict[str, Tuple[int, int, int, float]], int, str]] = {
    "CartPole-v1": (
        {"PETS": (2000, 250, 1, 500.0), "DQN": (50_000, 2500, 5, 475.0), "PPO": (100_000, 2500, 5, 475.0)},
        2000,
        "pets_cartpole",
    ),
    "Acrobot-v1": ({"PETS": (10_000, 2000, 3, -100.0)}, 10_000, "pets_acrobot"),
}
ENV_ID = "CartPole-v1"
SETTINGS = TASKS[ENV_ID][0]  # CartPole's, as before Acrobot was added


def evaluate(model, seed: int, episodes: int, env_id: str = ENV_ID) -> float:
    env = Monitor(gym.make(env_id))
    env.reset(seed=1000 + seed)
    return float(evaluate_policy(model, env, n_eval_episodes=episodes, deterministic=True)[0])


class EvalAndStop(BaseCallback):
    """Evaluate every ``eval_every`` env steps inside one ``learn()`` (schedules see the whole budget); stop at ``goal``."""

    def __init__(self, seed: int, eval_every: int, episodes: int, goal: float, env_id: str = ENV_ID) -> None:
        super().__init__()
        self.seed, self.eval_every, self.episodes, self.goal, self.env_id = seed, eval_every, episodes, goal, env_id
        self.curve: List[Tuple[int, float]] = []
        self.reached: Optional[int] = None
        self.eval_s = 0.0
        self._next = eval_every

    def _on_step(self) -> bool:
        if self.num_timesteps < self._next:
            return True
        self._next += self.eval_every
        start = time.perf_counter()
        value = evaluate(self.model, self.seed, self.episodes, self.env_id)
        self.eval_s += time.perf_counter() - start
        self.curve.append((self.num_timesteps, round(value, 1)))
        if value >= self.goal:
            self.reached = self.num_timesteps
            return False
        return True


def run(
    algo: str, seed: int, budget: int, eval_every: int, eval_episodes: int, goal: float, env_id: str = ENV_ID
) -> Dict[str, Any]:
    """One ``learn(budget)`` with an evaluation every ``eval_every`` env steps, stopped at ``goal``."""
    if algo == "PETS":
        model = PETS("MlpPolicy", env_id, seed=seed, **zoo_kwargs("pets", env_id))
    else:
        zoo = load_zoo_hyperparams(algo.lower(), env_id, conf_file=None)
        env = make_vec_env(env_id, n_envs=zoo.n_envs, seed=seed)
        model = {"DQN": DQN, "PPO": PPO}[algo](zoo.policy, env, seed=seed, **zoo.kwargs)
    callback = EvalAndStop(seed, eval_every, eval_episodes, goal, env_id)
    start = time.perf_counter()
    model.learn(budget, callback=callback)
    train_s = time.perf_counter() - start - callback.eval_s
    reached = callback.reached
    record: Dict[str, Any] = dict(
        benchmark=TASKS[env_id][2], task=env_id, algo=algo, seed=seed, goal=goal, budget=budget,
        env_steps_to_goal=reached, curve=callback.curve, wall_s_per_1k_steps=round(1000 * train_s / model.num_timesteps, 2),
    )
    if algo == "PETS":
        record["goal_met"] = reached is not None and reached <= TASKS[env_id][1]
        times = np.asarray(model.policy.planning_ms, dtype=float)
        if times.size:
            record.update(planning_ms_median=round(float(np.median(times)), 1), planning_ms_p95=round(float(np.percentile(times, 95)), 1))
    return record


def plot(records: List[Dict[str, Any]], path: str) -> None:
    env_id = records[0]["task"] if records else ENV_ID
    settings = TASKS[env_id][0]
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, algo in enumerate(settings):
        for j, r in enumerate(r for r in records if r["algo"] == algo):
            steps, values = zip(*r["curve"]) if r["curve"] else ((), ())
            ax.plot(steps, values, color=f"C{i}", alpha=0.8, marker=".", label=algo if j == 0 else None)
    for goal in sorted({value[3] for value in settings.values()}):
        ax.axhline(goal, color="gray", ls="--", lw=1)
    ax.set(xscale="log", title=f"{env_id}: deterministic evaluation", xlabel="env steps (log)", ylabel="evaluation return")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--env", default=ENV_ID, choices=list(TASKS))
    parser.add_argument("--algos", nargs="+", default=None, choices=["PETS", "DQN", "PPO"], help="default: every algo of --env")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="default: benchmarks/results/<pets_cartpole|pets_acrobot>.jsonl")
    parser.add_argument("--plot", default=None, help="default: --out with .png")
    parser.add_argument("--replot", action="store_true", help="only redraw the plot from --out")
    args = parser.parse_args()
    settings, _, name = TASKS[args.env]
    algos = args.algos or list(settings)
    unknown = [algo for algo in algos if algo not in settings]
    if unknown:
        parser.error(f"{args.env} runs {sorted(settings)}, not {unknown}")
    args.out = args.out or str(RESULTS / f"{name}.jsonl")
    args.plot = args.plot or args.out.replace(".jsonl", ".png")
    if not args.replot:
        th.set_num_threads(args.threads)
        for seed in args.seeds:
            for algo in algos:
                record = run(algo, seed, *settings[algo], env_id=args.env)
                emit(record)
                with open(args.out, "a") as file:
                    file.write(json.dumps(record) + "\n")
    plot([json.loads(line) for line in open(args.out) if line.strip()], args.plot)


if __name__ == "__main__":
    main()
