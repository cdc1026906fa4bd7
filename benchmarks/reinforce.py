"""
REINFORCE against SB3's A2C, side by side, same env steps, same seeds.

Hyperparameters: REINFORCE from ``zoo_configs/reinforce.yml``; A2C from rl-zoo's ``a2c.yml``
(rl-zoo has no A2C entry for InvertedPendulum-v4: its MuJoCo default, the ``HalfCheetah-v3`` entry, is used).
Evaluation: every 10,000 env steps, 10 deterministic episodes on 5 separate eval envs (observation
normalisation synced from the training env when the config normalises). Wall time per 100,000 env
steps counts training only (evaluations excluded).

Prints one JSON line per (algo, env, seed), then one summary line per (algo, env); writes them to
``--out`` and the learning curves to ``--plot``.

    python benchmarks/reinforce.py
    python benchmarks/reinforce.py --tasks CartPole-v1 --seeds 0 --timesteps 20000 --out smoke.jsonl --plot smoke.png
"""
import argparse
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch as th

if TYPE_CHECKING:
    from sb3_mbrl.common.zoo_config import ZooHyperparams

HERE = Path(__file__).resolve().parent

# env id -> (env steps, goal: mean eval return at the end, every seed)
TASKS: Dict[str, Tuple[int, float]] = {"CartPole-v1": (200_000, 475.0), "InvertedPendulum-v4": (300_000, 950.0)}
A2C_ZOO_ENTRY = {"InvertedPendulum-v4": "HalfCheetah-v3"}  # rl-zoo's MuJoCo defaults for A2C
EVAL_FREQ = 10_000
N_EVAL_EPISODES = 10
N_EVAL_ENVS = 5


def zoo_hyperparams(algo: str, env_id: str) -> "ZooHyperparams":
    """The rl-zoo entry for ``env_id``, read and processed by rl-zoo: ours for REINFORCE, rl-zoo's own for A2C."""
    from sb3_mbrl.common.zoo_config import load_zoo_hyperparams, rl_zoo_config_dir, zoo_config_dir

    if algo == "reinforce":
        return load_zoo_hyperparams(algo, env_id, str(zoo_config_dir() / "reinforce.yml"))
    return load_zoo_hyperparams(algo, A2C_ZOO_ENTRY.get(env_id, env_id), str(rl_zoo_config_dir() / f"{algo}.yml"))


def make_model(algo: str, env_id: str, seed: int) -> Tuple[Any, Any, Any]:
    """The model, its training VecEnv and its eval VecEnv, built as rl-zoo builds them."""
    from stable_baselines3 import A2C
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    from sb3_mbrl import REINFORCE

    zoo = zoo_hyperparams(algo, env_id)
    env = make_vec_env(env_id, n_envs=zoo.n_envs, seed=seed)
    eval_env = make_vec_env(env_id, n_envs=N_EVAL_ENVS, seed=seed + 10_000)
    if zoo.normalize:
        env = VecNormalize(env, **zoo.normalize_kwargs)  # with the algorithm's gamma, as rl-zoo does
        eval_env = VecNormalize(eval_env, training=False, norm_reward=False)
    cls = {"reinforce": REINFORCE, "a2c": A2C}[algo]
    model = cls(zoo.policy, env, seed=seed, device="cpu", **zoo.kwargs)
    return model, env, eval_env


def run(algo: str, env_id: str, seed: int, n_timesteps: int, goal: float) -> Dict[str, Any]:
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import sync_envs_normalization

    model, env, eval_env = make_model(algo, env_id, seed)
    curve: List[Tuple[int, float, float]] = []

    class Evaluate(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.next_eval = EVAL_FREQ
            self.eval_seconds = 0.0

        def evaluate(self) -> None:
            start = time.perf_counter()
            sync_envs_normalization(env, eval_env)
            mean, std = evaluate_policy(model, eval_env, n_eval_episodes=N_EVAL_EPISODES, deterministic=True)
            curve.append((self.num_timesteps, float(mean), float(std)))
            self.eval_seconds += time.perf_counter() - start

        def _on_step(self) -> bool:
            if self.num_timesteps >= self.next_eval:
                self.evaluate()
                self.next_eval += EVAL_FREQ
            return True

    callback = Evaluate()
    start = time.perf_counter()
    model.learn(n_timesteps, callback=callback)
    wall = time.perf_counter() - start - callback.eval_seconds
    if not curve or curve[-1][0] < n_timesteps:
        callback.evaluate()
    reached = [step for step, mean, _ in curve if mean >= goal]
    return {
        "algo": algo,
        "env": env_id,
        "seed": seed,
        "n_timesteps": model.num_timesteps,
        "goal": goal,
        "final_eval_mean": round(curve[-1][1], 2),
        "final_eval_std": round(curve[-1][2], 2),
        "reached_goal": curve[-1][1] >= goal,
        "first_step_reaching_goal": reached[0] if reached else None,
        "wall_s_per_100k": round(wall / model.num_timesteps * 100_000, 2),
        "curve": [[step, round(mean, 2)] for step, mean, _ in curve],
    }


def summarize(results: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    summary = []
    for algo in dict.fromkeys(r["algo"] for r in results):
        for env_id in dict.fromkeys(r["env"] for r in results):
            rows = [r for r in results if r["algo"] == algo and r["env"] == env_id]
            if not rows:
                continue
            finals = [r["final_eval_mean"] for r in rows]
            summary.append(
                {
                    "summary": True,
                    "algo": algo,
                    "env": env_id,
                    "seeds": [r["seed"] for r in rows],
                    "n_timesteps": rows[0]["n_timesteps"],
                    "goal": rows[0]["goal"],
                    "final_eval_means": finals,
                    "final_eval_mean_over_seeds": round(float(np.mean(finals)), 2),
                    "goal_reached_every_seed": all(r["reached_goal"] for r in rows),
                    "first_step_reaching_goal": [r["first_step_reaching_goal"] for r in rows],
                    "wall_s_per_100k_mean": round(float(np.mean([r["wall_s_per_100k"] for r in rows])), 2),
                }
            )
    return summary


def markdown_table(summary: List[Dict[str, Any]]) -> str:
    """The README table: one row per (env, algo)."""
    lines = [
        "| env (steps, goal) | algo | final eval return, seeds " + ", ".join(str(s) for s in summary[0]["seeds"])
        + " | goal met every seed | first eval >= goal (env steps) | wall s / 100k steps |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in sorted(summary, key=lambda r: (list(TASKS).index(r["env"]), r["algo"] != "reinforce")):
        finals = " / ".join(f"{v:.1f}" for v in row["final_eval_means"])
        firsts = " / ".join("-" if v is None else f"{v // 1000}k" for v in row["first_step_reaching_goal"])
        lines.append(
            f"| {row['env']} ({row['n_timesteps'] // 1000}k, {row['goal']:g}) | {row['algo'].upper()} | {finals} "
            f"(mean {row['final_eval_mean_over_seeds']:.1f}) | {'yes' if row['goal_reached_every_seed'] else 'no'} "
            f"| {firsts} | {row['wall_s_per_100k_mean']:.1f} |"
        )
    return "\n".join(lines)


def plot(results: List[Dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = list(dict.fromkeys(r["env"] for r in results))
    fig, axes = plt.subplots(1, len(envs), figsize=(6 * len(envs), 4.2), squeeze=False)
    for ax, env_id in zip(axes[0], envs):
        for algo, color in (("reinforce", "tab:blue"), ("a2c", "tab:orange")):
            rows = [r for r in results if r["env"] == env_id and r["algo"] == algo]
            if not rows:
                continue
            length = min(len(r["curve"]) for r in rows)
            steps = np.array([point[0] for point in rows[0]["curve"][:length]])
            values = np.array([[point[1] for point in r["curve"][:length]] for r in rows])  # (seeds, evals)
            ax.plot(steps, values.mean(0), color=color, marker="o", markersize=3, label=f"{algo.upper()} (mean of {len(rows)} seeds)")
            ax.fill_between(steps, values.min(0), values.max(0), color=color, alpha=0.2)
        ax.axhline(TASKS[env_id][1], color="gray", linestyle="--", linewidth=1, label="goal")
        ax.set_title(env_id)
        ax.set_xlabel("env steps")
        ax.set_ylabel(f"eval return ({N_EVAL_EPISODES} deterministic episodes)")
        ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--algos", nargs="+", default=["reinforce", "a2c"], choices=["reinforce", "a2c"])
    parser.add_argument("--timesteps", type=int, default=None, help="env steps per run for every task (default: the task's)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "reinforce.jsonl")
    parser.add_argument("--plot", type=Path, default=HERE / "results" / "reinforce.png")
    parser.add_argument("--replot", action="store_true", help="only summarize and plot the runs already in --out")
    args = parser.parse_args(argv)
    if args.replot:
        with open(args.out) as file:
            results = [r for r in map(json.loads, file) if not r.get("summary")]
        with open(args.out, "w") as file:
            for line in [*results, *summarize(results)]:
                file.write(json.dumps(line) + "\n")
        plot(results, args.plot)
        print(markdown_table(summarize(results)))
        return

    th.set_num_threads(1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.plot.parent.mkdir(parents=True, exist_ok=True)
    results: List[Dict[str, Any]] = []
    emit: Callable[[Dict[str, Any]], None]

    with open(args.out, "w") as out:

        def emit(line: Dict[str, Any]) -> None:
            text = json.dumps(line)
            print(text, flush=True)
            out.write(text + "\n")
            out.flush()

        for env_id in args.tasks:
            n_timesteps, goal = TASKS[env_id]
            n_timesteps = args.timesteps or n_timesteps
            for algo in args.algos:
                for seed in args.seeds:
                    result = run(algo, env_id, seed, n_timesteps, goal)
                    results.append(result)
                    emit(result)
                    plot(results, args.plot)
        for line in summarize(results):
            emit(line)
    plot(results, args.plot)
    print(markdown_table(summarize(results)))


if __name__ == "__main__":
    main()
