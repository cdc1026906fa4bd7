"""
Imitation-learning benchmark: expert, random, BC from 1 and 10 expert episodes and GAIL from 10,
on seals/CartPole-v0 and Pendulum-v1, seeds 0-2, in one run.

Each (task, seed) trains its own expert (PPO / SAC with zoo_configs hyperparameters), collects
10 deterministic expert episodes, trains BC on the first 1 and on all 10, trains GAIL on the 10,
and evaluates every policy over 20 episodes with SB3's evaluate_policy (deterministic actions,
evaluation seeds disjoint from training). Prints one JSON line per result, appends them to
benchmarks/results/imitation.jsonl and draws benchmarks/results/imitation.png.

    python benchmarks/imitation.py --gail-config benchmarks/configs/imitation_gail.json
    python benchmarks/imitation.py --tasks seals/CartPole-v0 --seeds 0 --gail-steps 20000   # smoke run
    python benchmarks/imitation.py --experts-only --seeds 0 1 2 3 4 --output benchmarks/results/imitation_experts.jsonl

Experts are retrained (up to 3 rounds) until their task's expert level; one that still misses is
used and recorded (``expert_level_met: false``).
"""
import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import torch

# Run as a script, this file's folder is first on sys.path and this file would shadow the
# `imitation` package itself: drop the folder before importing anything that uses `imitation`.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.modules.pop("imitation", None) if getattr(sys.modules.get("imitation"), "__file__", "") == __file__ else None

from sb3_mbrl.imitation_learning import (  # noqa: E402
    bc_settings,
    collect_demos,
    evaluate,
    expert_level,
    gail_bc_pretrain_default,
    gail_config_for,
    normalised_score,
    random_return,
    train_bc,
    train_expert,
    train_gail,
)

RESULTS = Path(__file__).resolve().parent / "results"

# Per task: expert steps (zoo config's n_timesteps unless overridden) and GAIL generator steps.
TASKS: Dict[str, Dict[str, Any]] = {
    "seals/CartPole-v0": {"expert_steps": None, "gail_steps": 300_000},
    "Pendulum-v1": {"expert_steps": 10_000, "gail_steps": 368_640},  # 90 rounds of 4 x 1,024
}


def run_task(env_id: str, seed: int, args: argparse.Namespace) -> List[Dict[str, Any]]:
    settings = TASKS.get(env_id, {"expert_steps": None, "gail_steps": 200_000})
    expert_steps = args.expert_steps if args.expert_steps is not None else settings["expert_steps"]
    gail_steps = args.gail_steps if args.gail_steps is not None else settings["gail_steps"]
    rows: List[Dict[str, Any]] = []
    returns: Dict[str, Any] = {}

    def record(method: str, mean: float, std: float, wall: float, **extra: Any) -> None:
        returns[method] = mean
        rows.append(dict(task=env_id, seed=seed, method=method, mean_return=mean, std_return=std,
                         eval_episodes=args.eval_episodes, wall_s=round(wall, 1), **extra))

    start = time.time()
    # Retrained (up to 3 rounds) until the task's expert level; one that still misses is used but recorded.
    expert = train_expert(env_id, timesteps=expert_steps, seed=seed, on_miss="warn")
    mean, std = evaluate(expert, env_id, n_episodes=args.eval_episodes, seed=seed)
    level = expert_level(env_id)
    record("expert", mean, std, time.time() - start, algo=type(expert).__name__, timesteps=expert.num_timesteps,
           expert_level=level, expert_level_met=None if level is None else bool(mean >= level))

    start = time.time()
    mean, std = random_return(env_id, n_episodes=args.eval_episodes, seed=seed)
    record("random", mean, std, time.time() - start)

    if args.experts_only:
        for row in rows:
            row["normalised_score"] = normalised_score(row["mean_return"], returns["random"], returns["expert"])
        return rows

    start = time.time()
    demos = collect_demos(expert, env_id, n_episodes=args.demo_episodes, seed=seed)
    demo_wall = time.time() - start
    demo_return = float(np.mean([traj.rews.sum() for traj in demos]))

    bc_config = bc_settings(expert.action_space, args.bc_batches, args.bc_net_arch)
    for n in sorted({1, args.demo_episodes}):
        start = time.time()
        bc = train_bc(demos[:n], env_id, seed=seed, **bc_config)
        mean, std = evaluate(bc, env_id, n_episodes=args.eval_episodes, seed=seed)
        record(f"bc_{n}", mean, std, time.time() - start, demo_episodes=n, n_batches=bc_config["n_batches"],
               net_arch=list(bc_config["net_arch"]))

    start = time.time()
    config = gail_config_for(args.gail_config, env_id)
    bc_pretrain = args.bc_pretrain_batches
    if bc_pretrain is None:
        bc_pretrain = gail_bc_pretrain_default(expert.action_space)
    gail = train_gail(demos, env_id, timesteps=gail_steps, seed=seed, gen_kwargs=config["gen"], disc_kwargs=config["disc"],
                      bc_pretrain_batches=bc_pretrain)
    mean, std = evaluate(gail, env_id, n_episodes=args.eval_episodes, seed=seed)
    record(f"gail_{args.demo_episodes}", mean, std, time.time() - start, demo_episodes=args.demo_episodes,
           generator_steps=int(gail.num_timesteps), gail_overrides=config, bc_pretrain_batches=bc_pretrain)

    for row in rows:
        row["normalised_score"] = normalised_score(row["mean_return"], returns["random"], returns["expert"])
        row["demo_return"] = demo_return
        row["demo_wall_s"] = round(demo_wall, 1)
    return rows


def plot(rows: List[Dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(row["task"] for row in rows))
    methods = [m for m in dict.fromkeys(row["method"] for row in rows) if m.startswith(("bc_", "gail_"))]
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for i, method in enumerate(methods):
            scores = [row["normalised_score"] for row in rows if row["task"] == task and row["method"] == method]
            scores = [s for s in scores if s is not None]
            if not scores:
                continue
            ax.bar(i, np.mean(scores), yerr=np.std(scores) if len(scores) > 1 else None, capsize=4, color=f"C{i}")
            ax.scatter([i] * len(scores), scores, color="black", s=12, zorder=3)
        ax.axhline(1.0, color="grey", linestyle="--", linewidth=1, label="expert")
        ax.axhline(0.0, color="grey", linestyle=":", linewidth=1, label="random")
        ax.set_xticks(range(len(methods)), [m.replace("_", " from ") + " ep" for m in methods])
        n_seeds = len({row["seed"] for row in rows if row["task"] == task})
        ax.set_title(f"{task} ({n_seeds} seeds)")
        ax.set_ylabel("normalised score")
        ax.legend(loc="lower right", fontsize=8)
    fig.suptitle("normalised score (R - R_random) / (R_expert - R_random), mean over seeds; dots: seeds", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def table(rows: List[Dict[str, Any]]) -> str:
    lines = ["| task | method | mean return (seeds 0..n) | normalised score | per seed |", "| --- | --- | --- | --- | --- |"]
    for task in dict.fromkeys(row["task"] for row in rows):
        for method in dict.fromkeys(row["method"] for row in rows):
            sel = [row for row in rows if row["task"] == task and row["method"] == method]
            if not sel:
                continue
            ret = np.mean([row["mean_return"] for row in sel])
            scores = [row["normalised_score"] for row in sel if row["normalised_score"] is not None]
            per_seed = ", ".join(f"{row['mean_return']:.1f}" for row in sel)
            score = f"{np.mean(scores):.3f} (min {np.min(scores):.3f})" if scores else "-"
            lines.append(f"| {task} | {method} | {ret:.1f} | {score} | {per_seed} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--gail-steps", type=int, default=None, help="generator steps (default: per task, see TASKS)")
    parser.add_argument("--expert-steps", type=int, default=None, help="expert steps (default: per task, see TASKS)")
    parser.add_argument("--gail-config", type=Path, default=None,
                        help='JSON file {task: {"gen": {...}, "disc": {...}}} overriding train_gail defaults')
    parser.add_argument("--demo-episodes", type=int, default=10)
    parser.add_argument("--bc-batches", type=int, default=None, help="BC gradient steps (default: bc_defaults per action space)")
    parser.add_argument("--bc-net-arch", type=int, nargs="+", default=None, help="BC policy layers (default: bc_defaults)")
    parser.add_argument("--bc-pretrain-batches", type=int, default=None,
                        help="BC steps that start GAIL's generator (default: gail_bc_pretrain_default per action space)")
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--output", type=Path, default=RESULTS / "imitation.jsonl")
    parser.add_argument("--plot", type=Path, default=RESULTS / "imitation.png")
    parser.add_argument("--append", action="store_true", help="append to --output instead of replacing it")
    parser.add_argument("--experts-only", action="store_true",
                        help="only train and evaluate the experts (their level, retraining rounds), no BC / GAIL")
    args = parser.parse_args(argv)
    args.gail_config = json.loads(args.gail_config.read_text()) if args.gail_config else {}
    torch.set_num_threads(1)

    run_start = time.time()
    rows: List[Dict[str, Any]] = []
    command = "python benchmarks/imitation.py " + " ".join(sys.argv[1:] if argv is None else argv)
    for env_id in args.tasks:
        for seed in args.seeds:
            for row in run_task(env_id, seed, args):
                row["command"] = command.strip()
                print(json.dumps(row), flush=True)
                rows.append(row)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with open(args.output, "a" if args.append else "w") as file:
        for row in rows:
            file.write(json.dumps(row) + "\n")
    if not args.experts_only:
        plot(rows, args.plot)
    print(table(rows))
    print(f"total wall time: {time.time() - run_start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
