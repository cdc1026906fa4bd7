"""Model-fit quality over the life of a run: refits of the ensemble on a growing Pendulum buffer.

The buffer starts with one episode of random actions (200 transitions) and grows by one episode
per fit from an energy-pumping swing-up controller with noise, so every new episode reaches
states the model has not seen (as the data of an MPC run does). After every fit the script
prints one JSON line: rows, epochs, gradient steps, holdout MSE at the start and the end of the
fit (normalised targets, the trainer's own figures), the MSE on a fixed test set of swing-up
transitions (raw units over the test targets' variance, so fits compare across the run) and
the wall seconds. A last line per setting sums up: the share of fits that ended worse than
they started and the median gradient steps per fit.

Usage:
    python -m benchmarks.model_fits [--fits 10] [--seeds 0 1 2] [--settings default paper]

``default`` is :class:`EnsembleTrainer`'s defaults; ``paper`` is patience 5 epochs with no
minimum of updates, no learning-rate warm-up and Adam's moments carried across fits (the PETS/MBPO
papers' rule, as the trainer had it before issue 13, but with its other fixes: fixed holdout rows,
the normaliser refitted without changing predictions, the start a candidate); ``carried_adam`` is
the defaults with Adam's moments carried across fits; ``min50`` the defaults with
``min_updates=50``; ``no_warmup`` the defaults without the 50-step learning-rate warm-up; ``bf16``
the defaults with training's matrix products in bfloat16 (``model_fit_dtype="bfloat16"``).
"""
import argparse
import json
import statistics
from typing import Any, Dict, List

import gymnasium as gym
import numpy as np
import torch as th

from sb3_mbrl.common.threads import torch_threads
from sb3_mbrl.dynamics import EnsembleTrainer, ProbabilisticEnsemble

SETTINGS: Dict[str, Dict[str, Any]] = {
    "default": {},
    "paper": {"min_updates": 0, "reset_optimizer_state": False, "lr_warmup_updates": 0},
    "carried_adam": {"reset_optimizer_state": False},
    "min50": {"min_updates": 50},
    "no_warmup": {"lr_warmup_updates": 0},
    "bf16": {"compute_dtype": th.bfloat16},
}


def episode(env: gym.Env, rng: np.random.Generator, swing_up: bool, seed: int) -> Dict[str, np.ndarray]:
    """One 200-step Pendulum episode: random actions, or energy pumping with noise."""
    obs, _ = env.reset(seed=seed)
    rows = []
    for _ in range(200):
        if swing_up:
            cos, sin, speed = obs
            energy = 0.5 * speed**2 + 10.0 * (cos - 1.0)  # 0 at the top, at rest
            pump = np.sign(speed * cos) if energy < 0 else -np.sign(speed)
            action = np.clip(2.0 * pump + rng.normal(0, 0.5), -2.0, 2.0)
        else:
            action = rng.uniform(-2.0, 2.0)
        action = np.array([action], dtype=np.float32)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        rows.append((obs, action, next_obs, reward))
        obs = next_obs
    keys = ("obs", "actions", "next_obs", "rewards")
    return {k: np.array(v, dtype=np.float32) for k, v in zip(keys, zip(*rows))}


def concat(parts: List[Dict[str, np.ndarray]]) -> Dict[str, np.ndarray]:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def test_mse(model: ProbabilisticEnsemble, test: Dict[str, np.ndarray]) -> float:
    """Elite-mean prediction error on the test set, per target dimension over its variance, averaged."""
    obs, act = th.as_tensor(test["obs"]), th.as_tensor(test["actions"])
    target = th.cat([th.as_tensor(test["next_obs"] - test["obs"]), th.as_tensor(test["rewards"]).unsqueeze(1)], 1)
    with th.no_grad():
        mean, _ = model.predict(obs, act, members=model.elite_indices)  # (elites, N, out)
    err = (mean.mean(0) - target).pow(2).mean(0) / target.var(0)
    return float(err.mean())


def run(setting: str, seed: int, n_fits: int) -> Dict[str, Any]:
    th.manual_seed(seed)
    rng = np.random.default_rng(seed)
    env = gym.make("Pendulum-v1")
    test = concat([episode(env, np.random.default_rng(10_000 + i), True, 10_000 + i) for i in range(5)])
    model = ProbabilisticEnsemble(3, 1, ensemble_size=5, hidden_sizes=(200, 200, 200))
    trainer = EnsembleTrainer(model, **SETTINGS[setting])
    parts = [episode(env, rng, swing_up=False, seed=seed * 100)]
    fits = []
    for fit in range(n_fits):
        data = concat(parts)
        m = trainer.fit(data["obs"], data["actions"], data["next_obs"], data["rewards"])
        record = {
            "benchmark": "model_fits",
            "setting": setting,
            "seed": seed,
            "fit": fit + 1,
            "rows": int(data["obs"].shape[0]),
            "epochs": m["epochs"],
            "gradient_steps": m["gradient_steps"],
            "start_holdout_mse": round(m["start_holdout_mse_mean"], 5),
            "end_holdout_mse": round(m["holdout_mse_mean"], 5),
            "ended_worse": m["holdout_mse_mean"] > m["start_holdout_mse_mean"],
            "test_mse": round(test_mse(model, test), 5),
            "fit_seconds": round(m["fit_seconds"], 2),
        }
        print(json.dumps(record), flush=True)
        fits.append(record)
        parts.append(episode(env, rng, swing_up=True, seed=seed * 100 + fit + 1))
    return fits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fits", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    with torch_threads(args.threads):
        for setting in args.settings:
            fits = [f for seed in args.seeds for f in run(setting, seed, args.fits)]
            later = [f for f in fits if f["fit"] > 1]
            summary = {
                "benchmark": "model_fits",
                "setting": setting,
                "seeds": args.seeds,
                "fits": len(fits),
                "share_ended_worse": round(sum(f["ended_worse"] for f in fits) / len(fits), 3),
                "median_gradient_steps": statistics.median(f["gradient_steps"] for f in fits),
                "median_test_mse_after_fit_1": statistics.median(f["test_mse"] for f in later) if later else None,
                "max_test_mse_after_fit_1": max(f["test_mse"] for f in later) if later else None,
                "total_fit_seconds": round(sum(f["fit_seconds"] for f in fits), 1),
                "ms_per_gradient_step": round(1000 * sum(f["fit_seconds"] for f in fits) / sum(f["gradient_steps"] for f in fits), 2),
            }
            print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
