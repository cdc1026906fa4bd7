"""PETS benchmark, side by side with SB3's SAC (rl-zoo hyperparameters), same env steps and seeds.

- Pendulum-v1 (learned reward): return of each training episode; goal (issue 13): on every
  seed the mean of episodes 3-10 >= -200 and no episode after the first one above -200 falls
  below -600 (the earlier goal, mean of episodes 6-10 >= -200, is reported too).
- InvertedPendulum-v4 (known termination): env steps until a 1,000-step episode; goal <= 1,500.
- Speed: planning ms per env step (median, p95), the model's share of it, wall s per 1k steps.
- Model fits (PETS): per run, the number of fits, the share that ended with a higher holdout
  MSE than they started with, and the median gradient steps per fit.

Prints one JSON line per result and writes benchmarks/results/pets.png. Usage:
    python -m benchmarks.pets [--seeds 0 1 2 3 4] [--tasks pendulum invpend] [--episodes 10] [--algos PETS SAC]
        [--zoo-file benchmarks/configs/pets_pendulum_fast.yml]
"""
import argparse
import statistics
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch as th  # noqa: E402
from stable_baselines3 import SAC  # noqa: E402

from benchmarks.common import RESULTS, EpisodeRecorder, band_plot, emit, rl_zoo_kwargs, timed, zoo_kwargs  # noqa: E402
from sb3_mbrl import PETS  # noqa: E402


# --zoo-file: PETS hyperparameters from another file in rl-zoo's format (default: zoo_configs/pets.yml).
PETS_ZOO_FILE: Optional[Path] = None


def run_pets(env_id: str, seed: int, steps: int, stop_at_length: int = 0) -> Dict[str, Any]:
    model = PETS("MlpPolicy", env_id, seed=seed, **zoo_kwargs("pets", env_id, PETS_ZOO_FILE))
    # Time inside the ensemble forward, and each planning call (the policy's own record is
    # cleared at every log dump).
    counter = {"model_s": 0.0, "plan_s": 0.0}
    env = model.policy.model_env
    env.predict_delta = timed(counter, "model_s", env.predict_delta)
    env.predict_delta_grouped = timed(counter, "model_s", env.predict_delta_grouped)  # fixed_model rollouts
    planning_ms: List[float] = []
    plan = timed(counter, "plan_s", model.policy._predict)

    def recorded_plan(observation, deterministic=False):
        before = counter["plan_s"]
        out = plan(observation, deterministic)
        planning_ms.append(1000 * (counter["plan_s"] - before))
        return out

    model.policy._predict = recorded_plan
    fits: List[Dict[str, Any]] = []
    fit = model.model_trainer.fit

    def recorded_fit(*args, **kwargs):
        metrics = fit(*args, **kwargs)
        fits.append(metrics)
        return metrics

    model.model_trainer.fit = recorded_fit
    recorder = EpisodeRecorder(stop_at_length)
    start = time.perf_counter()
    model.learn(steps, callback=recorder)
    wall = time.perf_counter() - start
    planning = np.array(planning_ms)
    return dict(
        episodes=recorder.episodes,
        steps=model.num_timesteps,
        wall_s_per_1k=1000 * wall / model.num_timesteps,
        planning_ms_median=float(np.median(planning)) if planning.size else None,
        planning_ms_p95=float(np.percentile(planning, 95)) if planning.size else None,
        model_share_of_planning=counter["model_s"] * 1000 / planning.sum() if planning.size else None,
        fits=fit_summary(fits),
    )


def fit_summary(fits: List[Dict[str, Any]]) -> Dict[str, Any]:
    """The model fits of one run: how many, how many ended worse than they started, their size."""
    return dict(
        n_fits=len(fits),
        n_ended_worse=sum(f["holdout_mse_mean"] > f["start_holdout_mse_mean"] for f in fits),
        n_kept_start=sum(f["members_improved"] == 0 for f in fits),
        median_gradient_steps=statistics.median(f["gradient_steps"] for f in fits) if fits else None,
        fit_s_total=round(sum(f["fit_seconds"] for f in fits), 1),
    )


def pendulum_goal(returns: List[float]) -> Dict[str, Any]:
    """Issue 13's Pendulum goal: mean of episodes 3-10 >= -200, no fall below -600 once solved."""
    solved = [i for i, r in enumerate(returns) if r > -200]
    after = returns[solved[0] + 1 :] if solved else []
    mean_3_10 = float(np.mean(returns[2:10]))
    worst_after = min(after) if after else None
    return dict(
        mean_episodes_3_10=round(mean_3_10, 1),
        worst_after_first_solved=None if worst_after is None else round(worst_after, 1),
        goal_met=bool(mean_3_10 >= -200 and solved and (worst_after is None or worst_after >= -600)),
    )


def run_sac(env_id: str, seed: int, steps: int, stop_at_length: int = 0) -> Dict[str, Any]:
    model = SAC("MlpPolicy", env_id, seed=seed, **rl_zoo_kwargs("sac", env_id))
    recorder = EpisodeRecorder(stop_at_length)
    start = time.perf_counter()
    model.learn(steps, callback=recorder)
    return dict(episodes=recorder.episodes, steps=model.num_timesteps, wall_s_per_1k=1000 * (time.perf_counter() - start) / model.num_timesteps)


RUNNERS = {"PETS": run_pets, "SAC": run_sac}


def pendulum(seeds: List[int], episodes: int, records: List[Dict], algos: List[str]) -> Dict[str, List[np.ndarray]]:
    curves: Dict[str, List[np.ndarray]] = {name: [] for name in algos}
    for seed in seeds:
        for name in algos:
            runner = RUNNERS[name]
            result = runner("Pendulum-v1", seed, 200 * episodes)
            returns = [e["ret"] for e in result["episodes"]][:episodes]
            curves[name].append(np.array(returns))
            record = dict(
                benchmark="pets", task="Pendulum-v1", algo=name, seed=seed, episode_returns=[round(r, 1) for r in returns],
                mean_episodes_6_10=round(float(np.mean(returns[5:10])), 1), **pendulum_goal(returns),
                env_steps=result["steps"], wall_s_per_1k_steps=round(result["wall_s_per_1k"], 1),
            )
            if name == "PETS":
                record.update(
                    planning_ms_median=round(result["planning_ms_median"], 1), planning_ms_p95=round(result["planning_ms_p95"], 1),
                    model_share_of_planning=round(result["model_share_of_planning"], 3), fits=result["fits"],
                )
            emit(record, records)
    return curves


def inverted_pendulum(seeds: List[int], budget: int, records: List[Dict], algos: List[str]) -> Dict[str, List[Dict]]:
    runs: Dict[str, List[Dict]] = {name: [] for name in algos}
    for seed in seeds:
        for name in algos:
            runner = RUNNERS[name]
            result = runner("InvertedPendulum-v4", seed, budget, stop_at_length=1000)
            solved = [e["step"] for e in result["episodes"] if e["length"] >= 1000]
            runs[name].append(result)
            record = dict(
                benchmark="pets", task="InvertedPendulum-v4", algo=name, seed=seed,
                env_steps_to_1000_step_episode=solved[0] if solved else None, budget=budget,
                goal_met=bool(solved and solved[0] <= 1500), wall_s_per_1k_steps=round(result["wall_s_per_1k"], 1),
                episodes=[(e["step"], e["length"]) for e in result["episodes"]],
            )
            if name == "PETS":
                record.update(
                    planning_ms_median=round(result["planning_ms_median"], 1), planning_ms_p95=round(result["planning_ms_p95"], 1),
                    fits=result["fits"],
                )
            emit(record, records)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--tasks", nargs="+", default=["pendulum", "invpend"], choices=["pendulum", "invpend"])
    parser.add_argument("--algos", nargs="+", default=["PETS", "SAC"], choices=list(RUNNERS))
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--invpend-budget", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--zoo-file", type=Path, help="PETS hyperparameters (rl-zoo format) instead of zoo_configs/pets.yml")
    parser.add_argument("--plot", default=str(RESULTS / "pets.png"))
    parser.add_argument("--replot", metavar="JSONL", help="only redraw the plot from a results file")
    args = parser.parse_args()
    if args.replot:
        replot(args.replot, args.plot)
        return
    th.set_num_threads(args.threads)
    global PETS_ZOO_FILE
    PETS_ZOO_FILE = args.zoo_file
    records: List[Dict] = []
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    if "pendulum" in args.tasks:
        curves = pendulum(args.seeds, args.episodes, records, args.algos)
        draw_pendulum(axes[0], curves, args.seeds)
    if "invpend" in args.tasks:
        runs = inverted_pendulum(args.seeds, args.invpend_budget, records, args.algos)
        draw_inverted_pendulum(axes[1], {name: [r["episodes"] for r in results] for name, results in runs.items()})
    fig.tight_layout()
    fig.savefig(args.plot, dpi=100)
    emit(dict(benchmark="pets", plot=args.plot, zoo_file=str(args.zoo_file or "zoo_configs/pets.yml")))


def draw_pendulum(ax, curves: Dict[str, List[np.ndarray]], seeds: List[int]) -> None:
    for name, runs in curves.items():
        length = min(len(r) for r in runs)
        band_plot(ax, [r[:length] for r in runs], np.arange(1, length + 1), name)
    ax.axhline(-200, color="gray", ls="--", lw=1)
    ax.set(title=f"Pendulum-v1 (learned reward), seeds {seeds}", xlabel="episode", ylabel="episode return")
    ax.legend()


def draw_inverted_pendulum(ax, episodes: Dict[str, List[List[Dict]]]) -> None:
    """``episodes[algo]``: per seed, the (step, length) of every training episode."""
    for name, per_seed in episodes.items():
        for i, run in enumerate(per_seed):
            steps = [e["step"] if isinstance(e, dict) else e[0] for e in run]
            lengths = [e["length"] if isinstance(e, dict) else e[1] for e in run]
            ax.plot(steps, lengths, color="C0" if name == "PETS" else "C1", alpha=0.8, label=name if i == 0 else None)
    ax.axvline(1500, color="gray", ls="--", lw=1)  # issue 13: a 1,000-step episode within 1,500 env steps
    ax.set(title="InvertedPendulum-v4", xlabel="env steps", ylabel="episode length")
    ax.legend()


def replot(results: str, plot: str) -> None:
    """Redraw both panels from the JSON lines of earlier runs."""
    import json

    records = [json.loads(line) for line in open(results) if line.strip()]
    pend = [r for r in records if r.get("task") == "Pendulum-v1"]
    curves: Dict[str, List[np.ndarray]] = {}
    for r in pend:
        curves.setdefault(r["algo"], []).append(np.array(r["episode_returns"]))
    episodes: Dict[str, List] = {}
    for r in records:
        if r.get("task") == "InvertedPendulum-v4" and "episodes" in r:
            episodes.setdefault(r["algo"], []).append(r["episodes"])
    n_panels = max(1, bool(curves) + bool(episodes))  # only the tasks the file holds
    fig, axes = plt.subplots(1, n_panels, figsize=(5.5 * n_panels, 4), squeeze=False)
    panels = iter(axes[0])
    if curves:
        draw_pendulum(next(panels), curves, sorted({r["seed"] for r in pend}))
    if episodes:
        draw_inverted_pendulum(next(panels), episodes)
    fig.tight_layout()
    fig.savefig(plot, dpi=100)


if __name__ == "__main__":
    main()
