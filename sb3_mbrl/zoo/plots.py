"""
Learning curves from rl-zoo log folders (``sb3-mbrl plot``); metrics of SB3's ``progress.csv``:
:mod:`sb3_mbrl.zoo.metric_plots`.

rl-zoo's own plot scripts need seaborn (not a dependency here), so this is a compact
matplotlib version of ``rl_zoo3.plots.all_plots``: runs are found as
``<folder>/<algo>/<env>_<run id>/``, each run gives one curve (evaluation returns from
``evaluations.npz``, or training-episode returns from the ``*.monitor.csv`` files), and the
runs of one algorithm (seeds) are drawn as their mean with a shaded spread.
"""
import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PathLike = Union[str, Path]
SOURCES = ("eval", "train")
SPREADS = ("std", "minmax", "none")


@dataclass
class Curve:
    """One run: returns ``y`` against env steps ``x`` (both ``(n,)``)."""

    run_dir: Path
    x: np.ndarray
    y: np.ndarray


def env_folder_name(env_id: str) -> str:
    """The name rl-zoo gives an env in paths (``seals/CartPole-v0`` -> ``seals-CartPole-v0``)."""
    from huggingface_sb3 import EnvironmentName

    return str(EnvironmentName(env_id))


def find_run_dirs(folder: PathLike, algo: str, env_id: str) -> List[Path]:
    """
    rl-zoo run folders ``<folder>/<algo>/<env>_<run id>[_<uuid>]``, by run id.

    :param folder: A log folder (rl-zoo's ``-f``).
    :param algo: Algorithm name as given to ``--algo``.
    :param env_id: Gymnasium id.
    :return: The run folders (possibly none).
    """
    algo_dir = Path(folder) / algo
    if not algo_dir.is_dir():
        return []
    pattern = re.compile(rf"^{re.escape(env_folder_name(env_id))}_(\d+)(_.*)?$")
    runs = []
    for path in algo_dir.iterdir():
        match = pattern.match(path.name)
        if match and path.is_dir():
            runs.append((int(match.group(1)), path))
    return [path for _, path in sorted(runs)]


def load_curve(run_dir: Path, source: str = "eval") -> Optional[Curve]:
    """
    The curve of one run, or ``None`` when the run has no data of that kind yet.

    :param run_dir: An rl-zoo run folder.
    :param source: ``eval``: mean return of each evaluation in ``evaluations.npz`` against its
        env step; ``train``: return of each training episode (``*.monitor.csv``) against the
        env steps at its end (episode lengths summed over the run's envs).
    """
    if source == "eval":
        path = run_dir / "evaluations.npz"
        if not path.is_file():
            return None
        with np.load(path) as data:
            steps, results = data["timesteps"], data["results"]  # (n,), (n, episodes)
        if steps.shape[0] == 0:
            return None
        return Curve(run_dir, steps.astype(float), results.reshape(steps.shape[0], -1).mean(axis=1))
    if source == "train":
        if not any(run_dir.glob("*monitor.csv")):
            return None
        from stable_baselines3.common.monitor import load_results

        episodes = load_results(str(run_dir))  # sorted by wall time over the monitor files
        if len(episodes) == 0:
            return None
        return Curve(run_dir, episodes["l"].cumsum().to_numpy(dtype=float), episodes["r"].to_numpy(dtype=float))
    raise ValueError(f"source must be one of {SOURCES}, got {source!r}")


def smooth(y: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average over ``window`` points (shorter at the start)."""
    if window <= 1:
        return y
    cumulative = np.concatenate([[0.0], np.cumsum(y)])
    ends = np.arange(1, len(y) + 1)
    begins = np.maximum(ends - window, 0)
    return (cumulative[ends] - cumulative[begins]) / (ends - begins)


def aggregate(curves: Sequence[Curve], spread: str = "std") -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """
    Mean and spread of several runs on a common x grid.

    The grid is every x of every run inside the range all runs cover; runs are linearly
    interpolated onto it (exact when the runs share their evaluation steps, as seeds of one
    configuration do), so no run is extrapolated.

    :param curves: The runs.
    :param spread: ``std`` (mean +- one standard deviation over runs), ``minmax`` or ``none``.
    :return: ``x``, ``mean``, ``low``, ``high``, each ``(n,)``.
    """
    if spread not in SPREADS:
        raise ValueError(f"spread must be one of {SPREADS}, got {spread!r}")
    if not curves:
        raise ValueError("aggregate needs at least one curve")
    start, end = max(c.x[0] for c in curves), min(c.x[-1] for c in curves)
    if start > end:
        raise ValueError(f"the runs cover no common range of env steps: {[str(c.run_dir) for c in curves]}")
    grid = np.unique(np.concatenate([c.x[(c.x >= start) & (c.x <= end)] for c in curves]))
    values = np.stack([np.interp(grid, c.x, c.y) for c in curves])  # (runs, n)
    mean = values.mean(axis=0)
    if spread == "std":
        std = values.std(axis=0)
        return grid, mean, mean - std, mean + std
    if spread == "minmax":
        return grid, mean, values.min(axis=0), values.max(axis=0)
    return grid, mean, mean, mean


def collect_curves(
    folders: Sequence[PathLike],
    algos: Sequence[str],
    env_id: str,
    source: str = "eval",
    labels: Optional[Sequence[str]] = None,
) -> Dict[str, List[Curve]]:
    """
    The runs of every (folder, algorithm) pair for one env, keyed by legend label.

    :param folders: Log folders.
    :param algos: Algorithm names.
    :param env_id: Gymnasium id.
    :param source: ``eval`` or ``train`` (see :func:`load_curve`).
    :param labels: One label per folder, used in the legend when there are several folders.
    :raises FileNotFoundError: When a folder does not exist or an algorithm has no run with
        data in any folder (the message names what was searched).
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    folders = [Path(f) for f in folders]
    if labels is not None and len(labels) != len(folders):
        raise ValueError(f"give one label per folder: {len(labels)} labels for {len(folders)} folders")
    for folder in folders:
        if not folder.is_dir():
            raise FileNotFoundError(f"log folder {str(folder)!r} does not exist")
    wanted = "evaluations.npz" if source == "eval" else "*.monitor.csv"
    series: Dict[str, List[Curve]] = {}
    for algo in algos:
        searched, without_data = [], []
        for index, folder in enumerate(folders):
            searched.append(str(folder / algo / f"{env_folder_name(env_id)}_<N>" / wanted))
            runs = find_run_dirs(folder, algo, env_id)
            curves = [curve for curve in (load_curve(run, source) for run in runs) if curve is not None]
            without_data += [str(run) for run in runs if all(c.run_dir != run for c in curves)]
            if curves:
                name = labels[index] if labels is not None else str(folder)
                series[algo if len(folders) == 1 else f"{algo} ({name})"] = curves
        if not any(key == algo or key.startswith(f"{algo} (") for key in series):
            hint = ""
            if without_data:
                hint = f"; these runs have no {wanted} data: {', '.join(without_data)}"
                if source == "eval":
                    hint += " (trained with --eval-freq -1 or stopped before the first evaluation? try --source train)"
            raise FileNotFoundError(f"no run of algo {algo!r} on env {env_id!r}: searched {', '.join(searched)}{hint}")
    return series


def plot_learning_curves(
    folders: Sequence[PathLike],
    algos: Sequence[str],
    envs: Sequence[str],
    output: PathLike,
    source: str = "eval",
    spread: str = "std",
    labels: Optional[Sequence[str]] = None,
    smooth_window: int = 1,
    title: Optional[str] = None,
) -> Path:
    """
    Draw the mean learning curve of each algorithm (over its runs) with a shaded spread, one
    panel per env, into a PNG (or any format matplotlib writes, by the file suffix).

    :param folders: Log folders (``logs/``, ``baselines/`` ...).
    :param algos: Algorithms to draw.
    :param envs: Env ids, one panel each.
    :param output: Image path.
    :param source: ``eval`` (evaluation returns) or ``train`` (training-episode returns).
    :param spread: ``std``, ``minmax`` or ``none``.
    :param labels: One legend label per folder.
    :param smooth_window: Moving average over this many points of each run before averaging.
    :param title: Figure title.
    :return: The image path.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if smooth_window < 1:
        raise ValueError(f"smooth_window must be at least 1, got {smooth_window}")
    panels = [(env_id, collect_curves(folders, algos, env_id, source, labels)) for env_id in envs]
    figure = Figure(figsize=(6.0 * len(envs), 4.2))
    FigureCanvasAgg(figure)  # the non-interactive canvas: no display or pyplot state needed
    axes = figure.subplots(1, len(envs), squeeze=False)[0]
    for ax, (env_id, series) in zip(axes, panels):
        for name, curves in series.items():
            smoothed = [Curve(c.run_dir, c.x, smooth(c.y, smooth_window)) for c in curves]
            x, mean, low, high = aggregate(smoothed, spread)
            line = ax.plot(x, mean, label=f"{name}: {len(curves)} run{'s' * (len(curves) > 1)}")[0]
            if spread != "none" and len(curves) > 1:
                ax.fill_between(x, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
            if len(x) == 1:  # a single evaluation: show it as a point
                ax.plot(x, mean, "o", color=line.get_color())
        ax.set_title(env_id)
        ax.set_xlabel("env steps")
        ax.set_ylabel("evaluation return" if source == "eval" else "training episode return")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return save_figure(figure, output, title)


def save_figure(figure: "Figure", output: PathLike, title: Optional[str]) -> Path:
    """Title, tight layout and a 100-dpi PNG at ``output`` (its folder created); returns the path."""
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=100)
    return output


def main(argv: Optional[List[str]] = None) -> None:
    """``sb3-mbrl plot``: learning curves of rl-zoo runs."""
    parser = argparse.ArgumentParser(
        prog="sb3-mbrl plot",
        description="Learning curves from rl-zoo log folders (<folder>/<algo>/<env>_<N>/): for each algorithm the "
        "mean over its runs (seeds) with a shaded spread, against env steps.",
    )
    parser.add_argument("-f", "--folders", nargs="+", default=["logs"], help="log folders (default: logs)")
    parser.add_argument("-a", "--algos", nargs="+", required=True, help="algorithms, e.g. pets sac")
    parser.add_argument("-e", "--env", nargs="+", required=True, help="env id(s), one panel each")
    parser.add_argument("-o", "--output", default="curves.png", help="image file (default: curves.png)")
    parser.add_argument("--source", choices=SOURCES, default="eval",
                        help="eval: evaluations.npz returns (default); train: training episodes from *.monitor.csv")
    parser.add_argument("--spread", choices=SPREADS, default="std", help="shaded band: std (default), minmax or none")
    parser.add_argument("-l", "--labels", nargs="+", help="one legend label per folder")
    parser.add_argument("--smooth", type=int, default=1, help="moving average over this many points per run")
    parser.add_argument("--title", help="figure title")
    args = parser.parse_args(argv)
    try:
        path = plot_learning_curves(
            args.folders, args.algos, args.env, args.output, args.source, args.spread, args.labels, args.smooth, args.title
        )
    except (FileNotFoundError, ValueError) as error:
        print(f"sb3-mbrl plot: error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    print(f"Saved {path}")


if __name__ == "__main__":
    main()
