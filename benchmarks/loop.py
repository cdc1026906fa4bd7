"""LOOP benchmark (issue 17), side by side in one run with our PETS, our MBPO and SB3's SAC.

Every algorithm takes its zoo entry (``zoo_configs/<algo>.yml``; SAC takes MBPO's SAC settings
with rl-zoo's one gradient step per env step, as ``benchmarks/mbpo.py`` does) and is evaluated
every ``--eval-freq`` env steps with ``--eval-episodes`` deterministic episodes, played side by
side in one VecEnv (seeded per run, so every algorithm of a seed meets the same starts). Issue 17's
goals, checked on each seed's summary line:

- Pendulum-v1: LOOP's eval reaches -200 within 1,000 env steps.
- InvertedDoublePendulum-v4: LOOP reaches 9,000 within 15,000 env steps, in at most half of
  MBPO's and a quarter of SAC's env steps.
- Reacher-v4: LOOP's eval return at 5,000 env steps above PETS's, MBPO's and SAC's.

Prints one JSON line per run and per seed, writes ``benchmarks/results/loop.png``. Usage:

    python -m benchmarks.loop [--tasks Pendulum-v1] [--seeds 0 1 2 3 4] [--algos LOOP PETS MBPO SAC] [--value-max-error 0.5]
    python -m benchmarks.loop --tasks Reacher-v4 --learned-reward   # the models learn the reward the env ids give
    python -m benchmarks.loop --tasks Reacher-v4 --algos PETS --pets-zoo-file benchmarks/configs/pets_reacher_cpu.yml
    python -m benchmarks.loop --replot part1.jsonl part2.jsonl   # plot and summaries of runs of several processes
"""
import argparse
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch as th  # noqa: E402
from stable_baselines3 import SAC  # noqa: E402
from stable_baselines3.common.callbacks import BaseCallback  # noqa: E402
from stable_baselines3.common.env_util import make_vec_env  # noqa: E402
from stable_baselines3.common.evaluation import evaluate_policy  # noqa: E402

from benchmarks.common import RESULTS, emit, zoo_kwargs  # noqa: E402
from sb3_mbrl import LOOP, MBPO, PETS  # noqa: E402
from sb3_mbrl.common.zoo_config import ZooConfigError  # noqa: E402
from sb3_mbrl.loop.critic_value import critic_value_fn  # noqa: E402

# Per task: the eval return to reach, the env-step budget, the evaluation spacing.
TASKS: Dict[str, Dict[str, Any]] = {
    "Pendulum-v1": dict(goal=-200.0, steps=1000, eval_freq=200),
    "InvertedDoublePendulum-v4": dict(goal=9000.0, steps=15000, eval_freq=1000),
    "Reacher-v4": dict(goal=None, steps=5000, eval_freq=1000),  # compared at the last evaluation
}
# The algorithms each task's goal compares LOOP with: a seed missing one is judged only where it already misses.
COMPARED = {"Pendulum-v1": (), "InvertedDoublePendulum-v4": ("MBPO", "SAC"), "Reacher-v4": ("PETS", "MBPO", "SAC")}
ALGOS = ("LOOP", "PETS", "MBPO", "SAC")
COLORS = {"LOOP": "C3", "PETS": "C0", "MBPO": "C2", "SAC": "C1"}
SAC_ARGS = set(SAC.__init__.__code__.co_varnames)


class VecEvalEvery(BaseCallback):
    """
    Deterministic evaluation every ``freq`` env steps, ``episodes`` episodes side by side in one VecEnv.
    With ``compare_acting`` (LOOP only) each evaluation also plays the same starts planning without
    the terminal value and with SAC's actor alone, and records the critic's value of the starts.
    """

    def __init__(self, env_id: str, freq: int, episodes: int, seed: int, compare_acting: bool = False) -> None:
        super().__init__()
        self.env_id, self.seed = env_id, seed
        self.eval_env = make_vec_env(env_id, n_envs=episodes, seed=seed)
        self.freq, self.episodes, self.compare_acting = freq, episodes, compare_acting
        self.history: List[Dict[str, Any]] = []
        self.eval_seconds = 0.0

    def _evaluate(self, env) -> float:
        return round(float(evaluate_policy(self.model, env, n_eval_episodes=self.episodes, deterministic=True)[0]), 1)

    def _compare(self) -> Dict[str, Any]:
        model = self.model
        fresh = lambda: make_vec_env(self.env_id, n_envs=self.episodes, seed=self.seed)  # noqa: E731  the same starts
        starts = th.as_tensor(fresh().reset(), dtype=th.float32, device=model.device)
        out: Dict[str, Any] = dict(critic_value_of_starts=[round(float(v), 1) for v in critic_value_fn(model, "critic")(starts)])
        plan_actions, value_starts = model.plan_actions, model.value_starts
        try:
            model.value_starts = 10**12  # the value never enters
            out["plan_without_value"] = self._evaluate(fresh())
            model.value_starts, model.plan_actions = value_starts, False
            out["actor"] = self._evaluate(fresh())
        finally:
            model.plan_actions, model.value_starts = plan_actions, value_starts
        out["plan"] = self._evaluate(fresh())
        return out

    def _on_step(self) -> bool:
        if self.num_timesteps % self.freq == 0:
            start = time.perf_counter()
            mean, std = evaluate_policy(self.model, self.eval_env, n_eval_episodes=self.episodes, deterministic=True)
            entry = dict(step=self.num_timesteps, mean=round(float(mean), 1), std=round(float(std), 1))
            if isinstance(self.model, LOOP):  # the value's error on the last real episode, and whether it planned with it
                error = self.model.value_error
                entry.update(value_error=None if error is None else round(error, 3), value_in_plans=self.model.value_in_plans())
            if self.compare_acting and isinstance(self.model, LOOP) and self.model._model_fitted:
                entry.update(self._compare())
            self.eval_seconds += time.perf_counter() - start
            self.history.append(entry)
        return True


def make_model(
    algo: str, env_id: str, seed: int, loop_kwargs: Dict[str, Any], model_kwargs: Optional[Dict[str, Any]] = None,
    pets_zoo_file: Optional[Path] = None,
):
    """
    The algorithm on ``env_id`` with its zoo entry (None when it has no entry; PETS's from
    ``pets_zoo_file`` if given), updated by ``model_kwargs`` for the model-based ones and by
    ``loop_kwargs`` for LOOP.
    """
    try:
        if algo == "SAC":
            kwargs = {k: v for k, v in zoo_kwargs("mbpo", env_id).items() if k in SAC_ARGS}
            return SAC("MlpPolicy", env_id, seed=seed, **{**kwargs, "gradient_steps": 1})
        kwargs = zoo_kwargs(algo.lower(), env_id, pets_zoo_file if algo == "PETS" else None)
    except ZooConfigError:
        return None
    kwargs.update(model_kwargs or {})
    if algo == "LOOP":
        kwargs.update(loop_kwargs)
    return {"LOOP": LOOP, "PETS": PETS, "MBPO": MBPO}[algo]("MlpPolicy", env_id, seed=seed, **kwargs)


def run(
    algo: str, env_id: str, seed: int, steps: int, eval_freq: int, eval_episodes: int,
    loop_kwargs: Dict[str, Any], compare_acting: bool = False, model_kwargs: Optional[Dict[str, Any]] = None,
    pets_zoo_file: Optional[Path] = None,
) -> Optional[Dict[str, Any]]:
    model = make_model(algo, env_id, seed, loop_kwargs, model_kwargs, pets_zoo_file)
    if model is None:
        return None
    callback = VecEvalEvery(env_id, eval_freq, eval_episodes, seed=10_000 + seed, compare_acting=compare_acting)
    start = time.perf_counter()
    model.learn(steps, callback=callback)
    wall = time.perf_counter() - start - callback.eval_seconds
    compared = [h for h in callback.history if "plan" in h]
    model_env = getattr(model, "model_env", None) or getattr(getattr(model, "policy", None), "model_env", None)
    return dict(
        # where the model's rewards came from: the env's known function (sb3_mbrl.envs) or the model
        **({"reward": getattr(model_env.reward_fn, "__name__", "custom") if model_env.reward_fn else "learned"}
           if model_env is not None else {}),
        **({"acting_compared": compared} if compared else {}),
        eval_curve=[(h["step"], h["mean"]) for h in callback.history],
        # LOOP: the critic's relative error on the last real episode at each evaluation, and whether it was in the plans
        **({"value_error_curve": [(h["step"], h["value_error"], h["value_in_plans"]) for h in callback.history]}
           if isinstance(model, LOOP) else {}),
        steps=model.num_timesteps,
        train_s_per_1k=round(1000 * wall / model.num_timesteps, 1),
        eval_s=round(callback.eval_seconds, 1),
    )


def first_step_at(curve: List, goal: float) -> Optional[int]:
    reached = [step for step, mean in curve if mean >= goal]
    return reached[0] if reached else None


def verdict(met: bool, missing: List[str]) -> Optional[bool]:
    """Whether the goal is met, None while a missing run could still change the answer."""
    return None if "LOOP" in missing or (missing and met) else bool(met)


def seed_summary(env_id: str, seed: int, results: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    """
    Issue 17's goal for one seed, from the runs of every algorithm on it. ``goal_met`` is None (not
    judged) without a LOOP run; while an algorithm the goal compares LOOP with has no run (``missing``
    names them), it is False if the runs there already miss the goal, else None.
    """
    task = TASKS[env_id]
    summary: Dict[str, Any] = dict(benchmark="loop", task=env_id, seed=seed)
    missing = [algo for algo in ("LOOP", *COMPARED[env_id]) if algo not in results]
    if missing:
        summary["missing"] = missing
    if task["goal"] is None:  # Reacher: the last evaluation
        last = {algo: r["eval_curve"][-1][1] for algo, r in results.items() if r["eval_curve"]}
        met = "LOOP" in last and all(last["LOOP"] > v for a, v in last.items() if a != "LOOP")
        summary.update(last_eval=last, goal_met=verdict(met, missing))
        return summary
    at_goal = {algo: first_step_at(r["eval_curve"], task["goal"]) for algo, r in results.items()}
    summary["steps_to_goal"] = at_goal
    loop_steps = at_goal.get("LOOP")
    met = loop_steps is not None and loop_steps <= task["steps"]
    if env_id == "InvertedDoublePendulum-v4":
        for algo, share in (("MBPO", 0.5), ("SAC", 0.25)):
            other = at_goal.get(algo)
            bound = other if other is not None else task["steps"]  # never reached: at least the budget
            met = met and loop_steps <= share * bound  # type: ignore[operator]
    summary["goal_met"] = verdict(met, missing)
    return summary


def read_runs(paths: List[str]) -> List[Dict[str, Any]]:
    """The run lines (those with an eval curve) of one or more results files."""
    import json

    return [json.loads(line) for path in paths for line in open(path) if '"eval_curve"' in line]


def summarize(paths: List[str]) -> List[Dict[str, Any]]:
    """
    Each seed's summary over the runs of one or more results files (algorithms run in several
    processes), then one line per task: the seeds judged, those meeting the goal, and each
    algorithm's mean last evaluation over the seeds every algorithm of the task ran on.
    """
    runs = read_runs(paths)
    out: List[Dict[str, Any]] = []
    for env_id in sorted({r["task"] for r in runs}):
        by_seed: Dict[int, Dict[str, Dict[str, Any]]] = {}
        for r in runs:
            if r["task"] == env_id:
                if r["algo"] in by_seed.get(r["seed"], {}):
                    raise ValueError(
                        f"two runs of {r['algo']} on {env_id} seed {r['seed']}: summarize one configuration at a time"
                    )
                by_seed.setdefault(r["seed"], {})[r["algo"]] = r
        seeds = [seed_summary(env_id, seed, by_seed[seed]) for seed in sorted(by_seed)]
        judged = [s["seed"] for s in seeds if s["goal_met"] is not None]
        algos = {algo for seed_runs in by_seed.values() for algo in seed_runs}
        common = [seed for seed in sorted(by_seed) if algos <= set(by_seed[seed])]
        out += seeds
        out.append(dict(
            benchmark="loop", task=env_id, seeds=sorted(by_seed), judged_on=judged,
            goal_met_on=[s["seed"] for s in seeds if s["goal_met"]], common_seeds=common,
            mean_last_eval={
                algo: round(sum(by_seed[seed][algo]["eval_curve"][-1][1] for seed in common) / len(common), 2)
                for algo in ALGOS if algo in algos and common
            },
        ))
    return out


def draw(ax, env_id: str, runs: List[Dict[str, Any]], episodes: int) -> None:
    """Every run's eval curve on ``env_id``, one colour per algorithm, and the task's goal."""
    labelled = set()
    for run_ in runs:
        if not run_["eval_curve"]:
            continue
        xs, ys = zip(*run_["eval_curve"])
        algo = run_["algo"]
        ax.plot(xs, ys, color=COLORS[algo], alpha=0.7, marker="o", ms=3, label=None if algo in labelled else algo)
        labelled.add(algo)
    if TASKS[env_id]["goal"] is not None:
        ax.axhline(TASKS[env_id]["goal"], color="gray", ls="--", lw=1)
    seeds = sorted({run_["seed"] for run_ in runs})
    ax.set(title=f"{env_id}, seeds {seeds}", xlabel="env steps", ylabel=f"eval return ({episodes} episodes)")
    ax.legend()


def replot(paths: List[str], plot: str, episodes: int) -> None:
    """One plot from the run lines of one or more results files (runs made in several processes)."""
    runs = read_runs(paths)
    tasks = sorted({r["task"] for r in runs})
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4), squeeze=False)
    for ax, env_id in zip(axes[0], tasks):
        draw(ax, env_id, [r for r in runs if r["task"] == env_id], episodes)
    fig.tight_layout()
    fig.savefig(plot, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["Pendulum-v1"], choices=list(TASKS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--algos", nargs="+", default=list(ALGOS), choices=ALGOS)
    parser.add_argument("--steps", type=int, help="env steps per run (default: the task's budget)")
    parser.add_argument("--eval-freq", type=int, help="env steps between evaluations (default: the task's)")
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--plot", default=str(RESULTS / "loop.png"))
    parser.add_argument("--plan-collection", action="store_true", help="LOOP plans its data collection too")
    parser.add_argument("--value-max-error", type=float,
                        help="LOOP: the value enters the plans only while its relative error on the last real episode is at most this")
    parser.add_argument("--compare-acting", action="store_true",
                        help="LOOP: at each evaluation also plan without the value and act with the actor alone")
    parser.add_argument("--learned-reward", action="store_true",
                        help="LOOP, PETS and MBPO learn the reward where sb3_mbrl.envs knows it (reward_fn=None)")
    parser.add_argument("--pets-zoo-file", type=Path,
                        help="PETS hyperparameters (rl-zoo format) instead of zoo_configs/pets.yml, "
                        "e.g. benchmarks/configs/pets_reacher_cpu.yml")
    parser.add_argument("--replot", nargs="+", metavar="JSONL",
                        help="only draw the plot and print each seed's and task's summary from results files")
    args = parser.parse_args()
    if args.replot:
        replot(args.replot, args.plot, args.eval_episodes)
        try:
            summaries = summarize(args.replot)
        except ValueError as error:  # runs of several configurations: the plot is drawn, no verdict
            parser.exit(0, f"no summary: {error}\n")
        for summary in summaries:
            emit(summary)
        return
    th.set_num_threads(args.threads)
    fig, axes = plt.subplots(1, len(args.tasks), figsize=(5.5 * len(args.tasks), 4), squeeze=False)
    for ax, env_id in zip(axes[0], args.tasks):
        task = TASKS[env_id]
        steps, eval_freq = args.steps or task["steps"], args.eval_freq or task["eval_freq"]
        runs: List[Dict[str, Any]] = []
        for seed in args.seeds:
            results: Dict[str, Dict[str, Any]] = {}
            for algo in args.algos:
                loop_kwargs = {"plan_collection": True} if args.plan_collection else {}
                if args.value_max_error is not None:
                    loop_kwargs["value_max_error"] = args.value_max_error
                result = run(
                    algo, env_id, seed, steps, eval_freq, args.eval_episodes, loop_kwargs, args.compare_acting,
                    model_kwargs={"reward_fn": None} if args.learned_reward else None, pets_zoo_file=args.pets_zoo_file,
                )
                if result is not None and algo == "PETS":
                    result["zoo_file"] = str(args.pets_zoo_file or "zoo_configs/pets.yml")
                if result is None:
                    emit(dict(benchmark="loop", task=env_id, algo=algo, seed=seed, skipped="no zoo entry for the task"))
                    continue
                results[algo] = result
                emit(dict(benchmark="loop", task=env_id, algo=algo, seed=seed, **result), runs)
            emit(seed_summary(env_id, seed, results))
        draw(ax, env_id, runs, args.eval_episodes)
    fig.tight_layout()
    fig.savefig(args.plot, dpi=100)
    emit(dict(benchmark="loop", plot=args.plot))


if __name__ == "__main__":
    main()
