"""
PETS on Pendulum-v1 with ModelDiagnosticsCallback: logs to stdout, csv and tensorboard, then
draws the ``model/`` metrics into an image (docs/img/diagnostics.png).

Run from the repository root: ``python docs/examples/diagnostics_pendulum.py`` (about 75 s
on one CPU thread of a 2-core machine). Smaller planning than zoo_configs/pets.yml (horizon 15,
population 50) to keep it short; the model refits every 100 env steps and is measured before
each refit.
"""
import argparse

import torch as th
from stable_baselines3.common.logger import configure

from sb3_mbrl import PETS
from sb3_mbrl.common import ModelDiagnosticsCallback
from sb3_mbrl.zoo.metric_plots import plot_progress

KEYS = [
    ["model/one_step_mse", "train/model_holdout_mse"],
    "model/k_step_mse",
    "model/calibration_95",
    "model/disagreement",
    "model/reward_mse",
    "rollout/ep_rew_mean",
]

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=1600)
    parser.add_argument("--log-dir", default="runs/diagnostics")
    parser.add_argument("--output", default="docs/img/diagnostics.png")
    args = parser.parse_args()
    th.set_num_threads(1)
    model = PETS(
        "MlpPolicy",
        "Pendulum-v1",
        seed=0,
        learning_starts=200,
        model_train_freq=100,
        reward_fn=None,  # learn the reward, so model/reward_mse is measured too
        horizon=15,
        num_particles=5,
        planner="icem",
        planner_kwargs=dict(population_size=50, num_elites=5, iterations=3, noise_beta=2.0),
        model_net_arch=[200, 200, 200],
        model_weight_decays=None,  # as when docs/img/diagnostics.png was made (PETS's default then)
        policy_kwargs=dict(planning_dtype="auto"),
    )
    model.set_logger(configure(args.log_dir, ["stdout", "csv", "tensorboard"]))
    model.learn(args.steps, callback=ModelDiagnosticsCallback(eval_freq=100, horizon=5, verbose=1))
    plot_progress(f"{args.log_dir}/progress.csv", KEYS, args.output, title="PETS on Pendulum-v1: model diagnostics (seed 0)")
    print(f"Saved {args.output}")
