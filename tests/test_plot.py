"""sb3-mbrl plot: learning curves from rl-zoo log folders."""
import subprocess
import sys

import numpy as np
import pytest
from matplotlib.image import imread

from sb3_mbrl.zoo.cli import main
from sb3_mbrl.zoo.metric_plots import plot_progress
from sb3_mbrl.zoo.plots import Curve, aggregate, collect_curves, find_run_dirs, smooth

# Two seeds of a tiny real rl-zoo run in one process (saves a second interpreter start-up).
TRAIN = """
from sb3_mbrl.zoo.cli import main
for seed in ("0", "1"):
    main(["train", "--algo", "sac", "--env", "Pendulum-v1", "-n", "200", "--eval-freq", "100", "--eval-episodes", "1",
          "--num-threads", "1", "-f", "logs", "--seed", seed, "--hyperparams", "learning_starts:50"])
"""


def fake_run(folder, algo, env_folder, run_id, timesteps, returns):
    run_dir = folder / algo / f"{env_folder}_{run_id}"
    run_dir.mkdir(parents=True)
    results = np.asarray(returns, dtype=float).reshape(len(timesteps), -1)
    np.savez(run_dir / "evaluations.npz", timesteps=np.asarray(timesteps), results=results, ep_lengths=np.ones_like(results))
    return run_dir


def colored_pixels(image):
    """Pixels that are neither white nor grey/black: the drawn curves and bands."""
    rgb = image[..., :3]
    return int((rgb.max(axis=-1) - rgb.min(axis=-1) > 0.15).sum())


@pytest.fixture(scope="module")
def zoo_logs(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo")
    result = subprocess.run([sys.executable, "-c", TRAIN], cwd=root, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return root


def test_plot_real_runs_against_a_baseline_folder(zoo_logs, tmp_path, capsys):
    logs = zoo_logs / "logs"
    assert [p.name for p in find_run_dirs(logs, "sac", "Pendulum-v1")] == ["Pendulum-v1_1", "Pendulum-v1_2"]
    baselines = tmp_path / "baselines"
    fake_run(baselines, "pets", "Pendulum-v1", 1, [100, 200], [[-900.0], [-300.0]])
    output = tmp_path / "out" / "curves.png"
    main(["plot", "--folders", str(logs), str(baselines), "--algos", "sac", "pets", "--env", "Pendulum-v1",
          "-o", str(output), "--labels", "ours", "base"])
    assert "Saved" in capsys.readouterr().out
    image = imread(output)
    assert image.shape[:2] == (420, 600)  # 6 x 4.2 inches at 100 dpi, one panel
    assert (image[..., :3] < 0.99).any(axis=-1).mean() > 0.02  # axes, text and curves
    assert colored_pixels(image) > 200  # the curves and the band are drawn
    series = collect_curves([logs, baselines], ["sac", "pets"], "Pendulum-v1", labels=["ours", "base"])
    assert sorted(series) == ["pets (base)", "sac (ours)"] and len(series["sac (ours)"]) == 2
    np.testing.assert_array_equal(series["sac (ours)"][0].x, [100, 200])
    # Training episodes from the monitor files, and two panels.
    two = tmp_path / "two.png"
    fake_run(logs, "sac", "InvertedPendulum-v4", 1, [100], [[5.0, 7.0]])
    main(["plot", "-f", str(logs), "-a", "sac", "-e", "Pendulum-v1", "InvertedPendulum-v4", "-o", str(two),
          "--spread", "minmax"])
    assert imread(two).shape[:2] == (420, 1200)
    train = collect_curves([logs], ["sac"], "Pendulum-v1", source="train")["sac"]
    assert [c.x.tolist() for c in train] == [[200.0], [200.0]]  # one 200-step episode per run


def test_no_run_found_names_what_was_searched(tmp_path, capsys):
    logs = tmp_path / "logs"
    fake_run(logs, "sac", "Pendulum-v1", 1, [100], [[-1.0]])
    with pytest.raises(SystemExit) as exit_info:
        main(["plot", "-f", str(logs), "-a", "pets", "-e", "Pendulum-v1", "-o", str(tmp_path / "x.png")])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "no run of algo 'pets' on env 'Pendulum-v1'" in err and str(logs / "pets" / "Pendulum-v1_<N>") in err
    assert not (tmp_path / "x.png").exists()
    with pytest.raises(FileNotFoundError, match="log folder .*nowhere.* does not exist"):
        collect_curves([tmp_path / "nowhere"], ["sac"], "Pendulum-v1")
    # A run folder without evaluations (trained with --eval-freq -1) is named in the error.
    (logs / "td3" / "Pendulum-v1_1").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"td3.*no evaluations.npz data.*Pendulum-v1_1.*--source train"):
        collect_curves([logs], ["td3"], "Pendulum-v1")
    # Runs of other envs do not match, even when the name contains the env id.
    fake_run(logs, "sac", "InvertedPendulum-v1", 1, [100], [[-1.0]])
    fake_run(logs, "sac", "Pendulum-v1", 2, [100], [[-3.0]])
    assert [p.name for p in find_run_dirs(logs, "sac", "Pendulum-v1")] == ["Pendulum-v1_1", "Pendulum-v1_2"]
    with pytest.raises(ValueError, match="one label per folder"):
        collect_curves([logs], ["sac"], "Pendulum-v1", labels=["a", "b"])


def test_aggregate_by_hand():
    a = Curve(None, np.array([0.0, 10, 20]), np.array([1.0, 2, 3]))
    b = Curve(None, np.array([0.0, 10, 20]), np.array([3.0, 6, 3]))
    x, mean, low, high = aggregate([a, b], "std")
    np.testing.assert_allclose(x, [0, 10, 20])
    np.testing.assert_allclose(mean, [2, 4, 3])
    np.testing.assert_allclose(high - mean, [1, 2, 0])
    x, mean, low, high = aggregate([a, b], "minmax")
    np.testing.assert_allclose(low, [1, 2, 3])
    np.testing.assert_allclose(high, [3, 6, 3])
    # Different evaluation steps: interpolated on the common range only (no extrapolation).
    c = Curve(None, np.array([5.0, 25]), np.array([0.0, 20]))
    x, mean, _, _ = aggregate([a, c], "none")
    np.testing.assert_allclose(x, [5, 10, 20])
    np.testing.assert_allclose(mean, [(1.5 + 0) / 2, (2 + 5) / 2, (3 + 15) / 2])
    with pytest.raises(ValueError, match="spread"):
        aggregate([a], "iqr")
    np.testing.assert_allclose(smooth(np.array([1.0, 3, 5, 7]), 2), [1, 2, 4, 6])


def test_plot_progress(tmp_path):
    csv = tmp_path / "progress.csv"
    csv.write_text("time/total_timesteps,model/one_step_mse,train/x\n100,0.5,\n200,,1\n300,0.25,\n")
    image = imread(plot_progress(csv, ["model/one_step_mse", "train/x"], tmp_path / "p.png"))
    assert image.shape[:2] == (320, 840) and colored_pixels(image) > 50
    one_panel = imread(plot_progress(csv, [["model/one_step_mse", "train/x"]], tmp_path / "o.png"))
    assert one_panel.shape[:2] == (320, 420) and colored_pixels(one_panel) > 50
    with pytest.raises(KeyError, match="model/k_step_mse"):
        plot_progress(csv, ["model/k_step_mse"], tmp_path / "q.png")
