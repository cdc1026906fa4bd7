"""What a planner with the true Pendulum-v1 model scores from a PETS run's own starting states.

Issue 13's Pendulum goal asks for a mean of episodes 3-10 >= -200 on every seed, but what an episode
can score depends on where it starts (hanging down at rest, or past the point where the torque can
hold the pole). This replays the ten starting states a seed's training run meets (the env seeded as
SB3 seeds PETS's single env: ``reset(seed=seed)``, then plain resets) with CEM over the exact
dynamics and reward (no model error), and prints one JSON line per episode beside the PETS row of
``benchmarks/results/pets.jsonl`` for that seed, then a summary line, and writes a PNG.

Usage:
    python -m benchmarks.pendulum_oracle [--seed 4] [--horizon 30] [--population 2000] [--iterations 10]
"""
import argparse
import json
from pathlib import Path
from typing import List, Optional

import gymnasium as gym
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch as th  # noqa: E402

from benchmarks.common import RESULTS, emit  # noqa: E402
from sb3_mbrl.envs.rewards import pendulum_reward  # noqa: E402

# Pendulum-v1's constants (gymnasium/envs/classic_control/pendulum.py): g, m = l = 1, dt, speed and torque limits.
G, DT, MAX_SPEED, MAX_TORQUE = 10.0, 0.05, 8.0, 2.0


def pendulum_step(theta: th.Tensor, theta_dot: th.Tensor, torque: th.Tensor):
    """One exact Pendulum-v1 step for a batch: (next theta, next theta_dot, reward), all (P,); the reward is sb3_mbrl's."""
    obs = th.stack([th.cos(theta), th.sin(theta), theta_dot], dim=1)  # (P, 3), Pendulum-v1's observation
    reward = pendulum_reward(obs, torque.unsqueeze(1), obs)  # the project's known reward: the state before the step
    torque = torque.clamp(-MAX_TORQUE, MAX_TORQUE)
    theta_dot = (theta_dot + (3 * G / 2 * th.sin(theta) + 3.0 * torque) * DT).clamp(-MAX_SPEED, MAX_SPEED)
    return theta + theta_dot * DT, theta_dot, reward


def plan(state: np.ndarray, mean: th.Tensor, population: int, iterations: int, elites: int) -> th.Tensor:
    """CEM over the exact dynamics from ``state``; returns the elites' mean sequence, (H,)."""
    horizon = mean.shape[0]
    std = th.full((horizon,), MAX_TORQUE * 0.75)
    for _ in range(iterations):
        actions = (mean + std * th.randn(population, horizon)).clamp(-MAX_TORQUE, MAX_TORQUE)  # (P, H)
        theta, theta_dot = th.full((population,), float(state[0])), th.full((population,), float(state[1]))
        returns = th.zeros(population)
        for h in range(horizon):
            theta, theta_dot, reward = pendulum_step(theta, theta_dot, actions[:, h])
            returns += reward
        best = actions[returns.topk(elites).indices]  # (elites, H)
        mean, std = best.mean(0), best.std(0) + 0.05
    return mean


def pets_returns(seed: int) -> Optional[List[float]]:
    """The PETS Pendulum-v1 row of the README's table for ``seed`` (benchmarks/results/pets.jsonl)."""
    path = RESULTS / "pets.jsonl"
    if not path.exists():
        return None
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if row.get("task") == "Pendulum-v1" and row.get("algo") == "PETS" and row.get("seed") == seed:
            return row["episode_returns"]
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--horizon", type=int, default=30)
    parser.add_argument("--population", type=int, default=2000)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--elites", type=int, default=100)
    parser.add_argument("--plot", default=None, help="PNG path (default benchmarks/results/pendulum_oracle_seed<N>.png)")
    args = parser.parse_args()
    th.set_num_threads(1)
    th.manual_seed(0)
    env = gym.make("Pendulum-v1")
    starts = [env.reset(seed=args.seed)[0]] + [env.reset()[0] for _ in range(args.episodes - 1)]
    pets = pets_returns(args.seed)
    oracle: List[float] = []
    for episode, obs in enumerate(starts, start=1):
        env.reset()
        env.unwrapped.state = np.array([np.arctan2(obs[1], obs[0]), obs[2]])  # replay this start
        mean, total = th.zeros(args.horizon), 0.0
        for _ in range(200):
            mean = plan(env.unwrapped.state, mean, args.population, args.iterations, args.elites)
            _, reward, *_ = env.step(np.array([float(mean[0])], dtype=np.float32))
            total += float(reward)
            mean = th.cat([mean[1:], th.zeros(1)])  # warm start: the rest of this plan
        oracle.append(total)
        emit(dict(
            benchmark="pendulum_oracle", seed=args.seed, episode=episode, start_theta=round(float(np.arctan2(obs[1], obs[0])), 3),
            start_theta_dot=round(float(obs[2]), 3), oracle_return=round(total, 1),
            pets_return=None if pets is None else pets[episode - 1],
        ))
    summary = dict(
        benchmark="pendulum_oracle", seed=args.seed, horizon=args.horizon, population=args.population, iterations=args.iterations,
        oracle_mean_episodes_3_10=round(float(np.mean(oracle[2:10])), 1),
        pets_mean_episodes_3_10=None if pets is None else round(float(np.mean(pets[2:10])), 1),
    )
    emit(summary)
    plot = Path(args.plot) if args.plot else RESULTS / f"pendulum_oracle_seed{args.seed}.png"
    fig, ax = plt.subplots(figsize=(7, 3.5))
    x = np.arange(1, len(oracle) + 1)
    ax.bar(x - 0.2, oracle, 0.4, label=f"CEM on the true model (H {args.horizon}, {args.population} x {args.iterations})")
    if pets is not None:
        ax.bar(x + 0.2, pets[: len(oracle)], 0.4, label="PETS, learned model (benchmarks/results/pets.jsonl)")
    ax.axhline(-200, color="k", lw=0.8, ls="--")
    ax.set(xlabel="episode", ylabel="return", title=f"Pendulum-v1, seed {args.seed}: the same starting states", xticks=x)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(plot, dpi=110)
    print(f"wrote {plot}")


if __name__ == "__main__":
    main()
