"""MBPO wall time at mbrl-lib's MBPO Pendulum configuration, side by side with mbrl-lib (issue 14).

The configuration is mbrl-lib 0.2's own (``algorithm/mbpo.yaml``, ``overrides/mbpo_inv_pendulum.yaml``
with the anchor's Pendulum changes): 1,000 initial steps, then per env step G = 10 SAC updates
(256x256, batch 256, lr 3e-4, target update every step), a model fit every 200 env steps
(7 x 4x200 SiLU members, 5 elites, learned reward, batch 256, 20% holdout, patience 5) followed by
400 x 200 = 80,000 one-step rollouts; SAC samples model data only (``real_ratio`` 0).

Per round, one torch thread each, the systems one after the other (so a change of machine load
hits both):

- ``ours``: :class:`sb3_mbrl.MBPO` with these settings for ``--steps`` env steps (no evaluation);
  wall seconds per 1,000 env steps of the main loop (from the first fit's segment end at
  ``1,000 + 200`` to the last step), split into model fits, rollouts and SAC updates. Our model
  fits keep their own stopping rules (``model_min_updates``, ``model_lr_warmup_updates``: README,
  "Model fits"), so they do more gradient steps than mbrl-lib's on small data; their gradient steps
  are reported.
  ``--looped-adam`` gives SAC SB3's own Adam (a loop over the parameters) instead of MBPO's fused one;
  ``--sac-update-rounds N`` also times SAC's update alone with each, interleaved (``sac_update`` lines).
- ``mbrllib``: ``../shared/anchors/anchor_mbrllib_mbpo.py`` run from its folder in mbrl-lib's
  virtual environment (``--anchor-venv`` or ``$ANCHOR_VENV``; skipped when absent), the same steps;
  its ``s_per_1k_steps_main_loop`` (the same window: first evaluation at 1,200 to the last).

Prints one JSON line per result, writes ``benchmarks/results/mbpo_speed.jsonl`` and a PNG beside it.
Usage:

    python -m benchmarks.mbpo_speed [--rounds 2] [--steps 2400] [--anchor-venv ~/.cache/anchor-venv] [--sac-update-rounds 3]
    python -m benchmarks.mbpo_speed --replot   # the plot of benchmarks/results/mbpo_speed.jsonl
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch as th  # noqa: E402
from stable_baselines3 import SAC  # noqa: E402
from stable_baselines3.common.callbacks import BaseCallback  # noqa: E402

from benchmarks.common import RESULTS, ROOT, emit  # noqa: E402
from sb3_mbrl import MBPO  # noqa: E402

ANCHOR = ROOT.parent / "shared" / "anchors" / "anchor_mbrllib_mbpo.py"
ENV_ID = "Pendulum-v1"
INIT_STEPS, MODEL_TRAIN_FREQ, ROLLOUTS_PER_STEP = 1000, 200, 400
# mbrl-lib's MBPO settings in MBPO's names (the rest are MBPO's defaults, which match: 7 x 4x200 SiLU,
# 5 elites, model batch 256, holdout 0.2, patience 5, model lr 1e-3, SAC tau 0.005, gamma 0.99).
MBRLLIB_CONFIG: Dict[str, Any] = dict(
    learning_starts=INIT_STEPS, gradient_steps=10, batch_size=256, learning_rate=3e-4, target_entropy=-1.0,
    model_train_freq=MODEL_TRAIN_FREQ, epoch_length=MODEL_TRAIN_FREQ, rollout_batch_size=ROLLOUTS_PER_STEP * MODEL_TRAIN_FREQ,
    rollout_length=1, real_ratio=0.0, model_retain_epochs=1, reward_fn=None,
)


class WindowStart(BaseCallback):
    """The wall clock and ``snapshot()`` when ``num_timesteps`` first reaches ``step``."""

    def __init__(self, step: int, snapshot: Callable[[], Dict[str, float]]) -> None:
        super().__init__()
        self.step, self.snapshot = step, snapshot
        self.wall: Optional[float] = None
        self.totals: Dict[str, float] = {}

    def _on_step(self) -> bool:
        if self.wall is None and self.num_timesteps >= self.step:
            self.wall, self.totals = time.perf_counter(), self.snapshot()
        return True


def time_ours(steps: int, seed: int, looped_adam: bool = False) -> Dict[str, Any]:
    """Our MBPO at mbrl-lib's configuration: wall seconds per 1,000 main-loop env steps, by phase."""
    policy_kwargs = dict(optimizer_kwargs=dict(fused=False)) if looped_adam else None  # SAC's optimisers only
    model = MBPO("MlpPolicy", ENV_ID, seed=seed, policy_kwargs=policy_kwargs, **MBRLLIB_CONFIG)
    phase = {"rollouts": 0.0, "train": 0.0}
    fit_steps: List[int] = []
    train, train_model_and_rollout = model.train, model.train_model_and_rollout

    def timed_train(*args: Any, **kwargs: Any) -> None:
        start = time.perf_counter()
        train(*args, **kwargs)
        phase["train"] += time.perf_counter() - start

    def timed_fit_and_rollout() -> Dict[str, float]:
        result = train_model_and_rollout()
        phase["rollouts"] += result["rollout_seconds"]
        fit_steps.append(int(model.logger.name_to_value["train/model_gradient_steps"]))
        return result

    model.train, model.train_model_and_rollout = timed_train, timed_fit_and_rollout  # type: ignore[method-assign]
    window_start = INIT_STEPS + MODEL_TRAIN_FREQ
    mark = WindowStart(window_start, lambda: dict(fit=model.model_fit_seconds, **phase))
    model.learn(steps, callback=mark)
    end = time.perf_counter()
    window = steps - window_start
    per_1k = lambda seconds: round(1000 * seconds / window, 2)  # noqa: E731
    fit = model.model_fit_seconds - mark.totals["fit"]
    rollouts = phase["rollouts"] - mark.totals["rollouts"]
    sac = (phase["train"] - mark.totals["train"]) - fit - rollouts
    return dict(
        s_per_1k_steps_main_loop=per_1k(end - mark.wall), model_fit_s_per_1k=per_1k(fit), rollout_s_per_1k=per_1k(rollouts),
        sac_updates_s_per_1k=per_1k(sac), ms_per_sac_update=round(1000 * sac / (window * MBRLLIB_CONFIG["gradient_steps"]), 2),
        model_fits=len(fit_steps), model_fit_gradient_steps=fit_steps,
    )


def time_sac_updates(rounds: int, updates: int, seed: int) -> List[Dict[str, Any]]:
    """
    ms per SAC update with fused and with looped Adam, interleaved: two MBPOs at this configuration
    after their first fit and rollouts (the same seed, so the same data), SAC's ``train`` alone.
    """
    models = {}
    for adam in ("looped", "fused"):
        models[adam] = MBPO("MlpPolicy", ENV_ID, seed=seed, policy_kwargs=dict(optimizer_kwargs=dict(fused=adam == "fused")), **MBRLLIB_CONFIG)
        models[adam].learn(INIT_STEPS + 1)  # the first fit and its rollouts
    rows = []
    for round_index in range(rounds):
        for adam, model in models.items():
            SAC.train(model, gradient_steps=10, batch_size=model.batch_size)  # warm
            start = time.perf_counter()
            SAC.train(model, gradient_steps=updates, batch_size=model.batch_size)
            rows.append(dict(system="sac_update", adam=adam, round=round_index, ms_per_update=round(1000 * (time.perf_counter() - start) / updates, 2)))
    return rows


def time_mbrllib(anchor_venv: Path, steps: int, seed: int) -> Dict[str, Any]:
    """mbrl-lib's MBPO over the same steps, in its own venv: its main-loop seconds per 1,000 env steps."""
    with tempfile.TemporaryDirectory() as work:
        out = Path(work) / "result.json"
        command = [str(anchor_venv / "bin" / "python"), str(ANCHOR), "--env", ENV_ID, "--total-steps", str(steps),
                   "--init-steps", str(INIT_STEPS), "--seed", str(seed), "--eval-episodes", "1", "--threads", "1",
                   "--work-dir", str(Path(work) / "run"), "--out", str(out)]
        subprocess.run(command, cwd=ANCHOR.parent, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True, check=True)
        result = json.loads(out.read_text())
    return dict(s_per_1k_steps_main_loop=result["s_per_1k_steps_main_loop"], env_steps=result["env_steps"])


def plot(records: List[Dict[str, Any]], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for i, system in enumerate(["mbrllib", "ours"]):
        rows = [r for r in records if r.get("system") == system]
        if not rows:
            continue
        total = float(np.median([r["s_per_1k_steps_main_loop"] for r in rows]))
        if system == "ours":
            bottom = 0.0
            for key, color in [("sac_updates_s_per_1k", "tab:blue"), ("model_fit_s_per_1k", "tab:orange"), ("rollout_s_per_1k", "tab:green")]:
                value = float(np.median([r[key] for r in rows]))
                ax.bar(i, value, bottom=bottom, color=color, label=key.replace("_s_per_1k", ""))
                bottom += value
        else:
            ax.bar(i, total, color="tab:gray")
        ax.text(i, total, f"{total:.0f}", ha="center", va="bottom")
    ax.set_xticks([0, 1], ["mbrl-lib 0.2", "sb3_mbrl"])
    ax.set_ylabel("wall s per 1,000 env steps")
    ax.set_title("MBPO, Pendulum-v1, mbrl-lib's configuration, 1 thread\n(G 10, 80k rollouts per fit, 7 x 4x200 members)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2400, help="env steps per run, the 1,000 initial ones included")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--anchor-venv", type=Path, default=os.environ.get("ANCHOR_VENV") or Path.home() / ".cache" / "anchor-venv")
    parser.add_argument("--out", type=Path, default=RESULTS / "mbpo_speed.jsonl")
    parser.add_argument("--looped-adam", action="store_true", help="SAC's Adam as a loop over the parameters (SB3's default) instead of fused")
    parser.add_argument("--replot", action="store_true", help="only draw the plot of --out's rows")
    parser.add_argument("--sac-update-rounds", type=int, default=0,
                        help="also time SAC's update alone with fused and looped Adam, interleaved, this many rounds (500 updates each)")
    args = parser.parse_args()
    if args.replot:
        plot([json.loads(line) for line in args.out.read_text().splitlines()], args.out.with_suffix(".png"))
        return
    if args.steps < INIT_STEPS + 2 * MODEL_TRAIN_FREQ:
        parser.error(f"--steps must be at least {INIT_STEPS + 2 * MODEL_TRAIN_FREQ} (a main-loop window after the first fit)")
    th.set_num_threads(1)
    anchor_ok = (args.anchor_venv / "bin" / "python").exists() and ANCHOR.exists()
    if not anchor_ok:
        print(f"mbrl-lib's venv not found at {args.anchor_venv} (../shared/anchors/setup_anchor_venv.sh): timing ours only", file=sys.stderr)
    records: List[Dict[str, Any]] = []
    for round_index in range(args.rounds):
        emit(dict(system="ours", round=round_index, seed=args.seed, steps=args.steps, sac_adam="looped" if args.looped_adam else "fused",
                  **time_ours(args.steps, args.seed, args.looped_adam)), records)
        if anchor_ok:
            emit(dict(system="mbrllib", round=round_index, seed=args.seed, steps=args.steps,
                      **time_mbrllib(args.anchor_venv, args.steps, args.seed)), records)
    if args.sac_update_rounds:
        for row in time_sac_updates(args.sac_update_rounds, 500, args.seed):
            emit(row, records)
    runs = [r for r in records if "s_per_1k_steps_main_loop" in r]
    median = {s: float(np.median([r["s_per_1k_steps_main_loop"] for r in runs if r["system"] == s])) for s in {r["system"] for r in runs}}
    summary: Dict[str, Any] = dict(system="summary", torch=th.__version__, threads=th.get_num_threads(),
                                   median_s_per_1k={k: round(v, 1) for k, v in median.items()})
    if "mbrllib" in median:
        summary["ratio_to_mbrllib"] = round(median["ours"] / median["mbrllib"], 3)
        summary["goal_met"] = summary["ratio_to_mbrllib"] <= 0.7
    emit(summary, records)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")
    if runs:
        plot(records, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()
