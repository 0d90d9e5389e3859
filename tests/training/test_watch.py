"""Training you can watch: RUN/curves.png at every checkpoint, TensorBoard when installed, the clock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from typing import ClassVar

import matplotlib.image
import pytest
import yaml

from ambientmri.plotting import training_curves
from ambientmri.recipes import validate_recipe
from ambientmri.training.progress import TrainClock, format_duration
from ambientmri.training.run import train_run

TINY = {
    "name": "tiny",
    "data": {"kind": "synthetic", "challenge": "singlecoil", "anatomy": "knee", "volumes": 2,
             "heldout_volumes": 1, "slices": 2, "matrix": [32, 16], "crop": [16, 16], "seed": 3},
    "corruption": {"kind": "cartesian", "center_fractions": [0.25], "accelerations": [2]},
    "model": {"kind": "mlp", "hidden": [32], "embedding_dim": 16},
    "training": {"steps": 4, "batch_size": 4, "log_every": 1, "checkpoint_every": 2, "eval_every": 2,
                 "eval_slices": 2, "device": "cpu"},
}


def _recipe(**training):
    tree = json.loads(json.dumps(TINY))
    tree["training"].update(training)
    return validate_recipe(tree, "tiny")


class _FakeWriter:
    instances: ClassVar[list[_FakeWriter]] = []

    def __init__(self, logdir: str) -> None:
        self.logdir, self.scalars, self.closed = logdir, [], False
        _FakeWriter.instances.append(self)

    def add_scalar(self, key: str, value: float, step: int) -> None:
        self.scalars.append((key, value, step))

    def close(self) -> None:
        self.closed = True


def test_curves_at_every_checkpoint_and_tensorboard_when_importable(tmp_path, monkeypatch):
    fake = types.ModuleType("torch.utils.tensorboard")
    fake.SummaryWriter = _FakeWriter
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    seen = []

    def callback(event, data):
        if event == "checkpoint":
            seen.append((data["step"], (tmp_path / "run" / "curves.png").stat().st_mtime_ns))

    train_run(_recipe(), tmp_path / "run", callback=callback)
    assert [s for s, _ in seen] == [2, 4]  # curves.png existed when each checkpoint was announced
    png = matplotlib.image.imread(tmp_path / "run" / "curves.png")
    assert png.shape[:2] == (7 * 80, 12 * 80)
    (writer,) = _FakeWriter.instances
    assert writer.logdir == str(tmp_path / "run" / "tensorboard") and writer.closed
    keys = {k for k, _, _ in writer.scalars}
    assert {"loss", "lr", "images_per_second", "heldout_nmse@0.05"} <= keys
    _FakeWriter.instances.clear()
    train_run(_recipe(tensorboard=False), tmp_path / "off")
    assert not _FakeWriter.instances


def test_tensorboard_required_but_missing_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    train_run(_recipe(steps=1, eval_every=0), tmp_path / "auto")  # the default: simply off
    assert not (tmp_path / "auto" / "tensorboard").exists() and (tmp_path / "auto" / "curves.png").is_file()
    with pytest.raises(ValueError, match=r"needs the tensorboard package \(pip install \"ambientmri\[tensorboard\]"):
        train_run(_recipe(steps=1, eval_every=0, tensorboard=True), tmp_path / "required")


def test_a_figure_with_one_point_is_not_empty(tmp_path):
    record = {"step": 1, "loss": 0.5, "lr": 1e-3, "images_per_second": 10.0,
              "heldout_nmse@0.1": 0.2, "heldout_input_nmse@0.1": 0.4}
    assert training_curves([record], tmp_path / "one.png") == 1
    blank = training_curves([], tmp_path / "none.png")
    assert blank == 0
    one = matplotlib.image.imread(tmp_path / "one.png")[..., :3]
    empty = matplotlib.image.imread(tmp_path / "none.png")[..., :3]
    # the markers of the single point make the figure differ from the figure without any point
    assert (abs(one - empty).sum(axis=-1) > 0.1).sum() > 50


def test_clock_estimates_from_the_first_logged_window():
    clock = TrainClock()
    clock.start(100, 200)  # a resumed run: the 100 inherited steps do not count as fast ones
    assert clock.remaining is None and "remaining -:--" in clock.describe()
    clock.log(110, seconds=5.0)
    assert clock.remaining == pytest.approx(45.0)
    assert format_duration(3725) == "1:02:05" and format_duration(65.4) == "1:05"


def test_train_log_lines_are_not_wrapped_without_a_terminal(tmp_path):
    tree = json.loads(json.dumps(TINY))
    tree["training"].update(steps=2, eval_every=0)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(tree))
    out = tmp_path / ("a_run_folder_with_a_long_name_" * 3)
    proc = subprocess.run([sys.executable, "-m", "ambientmri", "train", str(recipe), "--out", str(out)],
                          capture_output=True, text=True, env={**os.environ, "COLUMNS": "80"})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    step = [line for line in lines if line.startswith("step 1/2:")]
    assert step and "elapsed" in step[0] and "remaining" in step[0]
    (trained,) = [line for line in lines if line.startswith("trained")]
    assert len(trained) > 80 and trained.rstrip().endswith("step-0000002.pt")


def test_the_terminal_progress_bar_shows_elapsed_and_remaining(monkeypatch):
    import io

    from rich.console import Console

    from ambientmri.cli import models as cli

    screen = io.StringIO()
    monkeypatch.setattr(cli, "console", Console(file=screen, force_terminal=True, width=200, color_system=None))
    progress, callback = cli._train_progress(10, True)
    assert not progress.disable
    with progress:
        callback("start", {"step": 0, "steps": 10})
        (task,) = progress.tasks
        assert task.fields["remaining"] == "-:--"  # nothing logged yet: no guess
        callback("log", {"step": 2, "loss": 0.5, "images_per_second": 8.0, "seconds": 4.0})
        assert task.fields["remaining"] == "0:16"  # 8 steps left at 2 s per step
        progress.refresh()
    text = screen.getvalue()
    assert "remaining 0:16" in text and "0:00:0" in text and "loss 0.5" in text
