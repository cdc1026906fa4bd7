"""Metric curves from SB3's ``progress.csv`` (e.g. the ``model/`` keys of ``ModelDiagnosticsCallback``)."""
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from sb3_mbrl.zoo.plots import PathLike, save_figure


def plot_progress(
    progress_csv: PathLike,
    keys: Sequence[Union[str, Sequence[str]]],
    output: PathLike,
    x_key: str = "time/total_timesteps",
    title: Optional[str] = None,
) -> Path:
    """
    Draw logged metrics (e.g. the ``model/`` keys of :class:`ModelDiagnosticsCallback`) from an
    SB3 ``progress.csv`` against env steps, one panel per entry of ``keys``.

    A panel whose values are all positive and span more than a factor 50 gets a log y axis.

    :param progress_csv: The csv written by SB3's logger (``configure(folder, ["csv"])``).
    :param keys: Columns to draw; an entry that is a list of columns draws them on one panel
        (e.g. ``["model/one_step_mse", "train/model_holdout_mse"]``).
    :param output: Image path.
    :param x_key: Column of the x axis.
    :param title: Figure title.
    :return: The image path.
    """
    import pandas as pd
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    table = pd.read_csv(progress_csv)
    panels = [[entry] if isinstance(entry, str) else list(entry) for entry in keys]
    if not panels or not all(panels):
        raise ValueError("keys must name at least one column per panel")
    missing = [key for key in (x_key, *(key for panel in panels for key in panel)) if key not in table.columns]
    if missing:
        raise KeyError(f"{progress_csv} has no column(s) {missing}; it has {sorted(table.columns)}")
    n_cols = min(3, len(panels))
    n_rows = -(-len(panels) // n_cols)
    figure = Figure(figsize=(4.2 * n_cols, 3.2 * n_rows))
    FigureCanvasAgg(figure)
    axes = figure.subplots(n_rows, n_cols, squeeze=False).ravel()
    for ax, panel in zip(axes, panels):
        values = []
        for key in panel:
            rows = table[[x_key, key]].dropna()  # each logger dump writes only some columns
            ax.plot(rows[x_key], rows[key], "o-", markersize=3, label=key)
            values.append(rows[key].to_numpy(dtype=float))
        values_all = np.concatenate(values)
        if values_all.size and values_all.min() > 0 and values_all.max() > 50 * values_all.min():
            ax.set_yscale("log")
        ax.set_title(" vs ".join(panel), fontsize=9)
        if len(panel) > 1:
            ax.legend(fontsize=7)
        ax.set_xlabel("env steps")
        ax.grid(alpha=0.3)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    return save_figure(figure, output, title)


__all__ = ["plot_progress"]
