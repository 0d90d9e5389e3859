"""``ambientmri demo``: the pipeline on synthetic scans, on a CPU, in minutes.

Today it synthesizes a small multi-coil cohort (training subjects plus clean held-out subjects),
prepares the corrupted store with the demo recipe, checks the full-rank condition, and draws the
masks of A and Ã with the zero-filled images the store implies. Everything is written into a
temporary folder that replaces ``OUT`` only at the end, so a failed demo leaves nothing behind.
"""

from __future__ import annotations

import base64
import html
import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from rich.console import Console

from ambientmri import __version__
from ambientmri.recipes import Recipe, dump_recipe, load_recipe
from ambientmri.utils import atomic_dir, write_json_atomic, write_text_atomic

BUILTIN_RECIPES = Path(__file__).parent / "builtin_recipes"


def builtin_recipe(name: str) -> Path:
    """Path of a recipe shipped with the package (``recipes/`` in a source checkout)."""
    path = BUILTIN_RECIPES / f"{name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no built-in recipe named {name!r}")
    return path


def run_demo(
    out: str | Path,
    *,
    recipe: str | Path | None = None,
    console: Console | None = None,
    progress_factory: Callable[[], Any] | None = None,
) -> dict[str, Any]:
    """Run the demo into ``out`` and return its summary (also written to ``out/summary.json``)."""
    from ambientmri.data.store import CorruptedStore, prepare_store
    from ambientmri.operators.condition import check_full_rank
    from ambientmri.training.run import synthesize_data

    console = console or Console(quiet=True)
    t0 = time.perf_counter()
    rec = load_recipe(recipe or builtin_recipe("demo"))
    if rec.data.kind != "synthetic":
        raise ValueError(f"{recipe}: data.kind: the demo needs synthetic data, got {rec.data.kind!r}")
    d = rec.data
    out = Path(out)
    _refuse_foreign_folder(out)
    with atomic_dir(out) as tmp:
        console.print(f"[bold]1/4[/] synthesizing {d.volumes} training + {d.heldout_volumes} held-out subjects")
        synthesize_data(tmp / "raw", rec)
        write_text_atomic(tmp / "recipe.resolved.yaml", dump_recipe(rec))

        console.print("[bold]2/4[/] preparing the corrupted store")
        if progress_factory is not None:
            with progress_factory() as progress:
                task = progress.add_task("prepare", total=None)
                result = prepare_store(
                    tmp / "raw" / "train", tmp / "store", rec, source_kind="fastmri",
                    progress=lambda a, b: progress.update(task, completed=a, total=b),
                )
        else:
            result = prepare_store(tmp / "raw" / "train", tmp / "store", rec, source_kind="fastmri")
        store = CorruptedStore(tmp / "store")

        console.print("[bold]3/4[/] checking the full-rank condition")
        grid = store.grid
        report = check_full_rank(
            store.corruption, grid, draws=256, seed=0, n=grid[0] * grid[1],
            fixed_mask=rec.corruption.seed_mode == "fixed",
        )
        write_json_atomic(tmp / "condition.json", report.to_dict())

        console.print("[bold]4/4[/] drawing masks and zero-filled images")
        figures = _figures(store, tmp / "figures")
        stats = _store_stats(store)
        store.close()
        summary = {
            "ambientmri_version": __version__,
            "recipe": rec.name,
            "store": {
                "path": "store",
                "volumes": result.volumes,
                "slices": result.slices,
                "subjects": store.manifest["num_subjects"],
                "grid": list(grid),
                "coils": store.coils,
                "corruption": store.corruption.describe(),
                "prepare_seconds": round(result.seconds, 3),
                "prepare_slices_per_second": round(result.slices_per_second, 3),
                **stats,
            },
            "heldout_volumes": d.heldout_volumes,
            "condition": {
                "satisfied": report.satisfied,
                "min_eigenvalue": report.min_eigenvalue,
                "never_observed_fraction": report.never_observed_fraction,
            },
            "figures": sorted(p.name for p in figures.values()),
            "seconds": round(time.perf_counter() - t0, 2),
        }
        write_json_atomic(tmp / "summary.json", summary)
        write_text_atomic(tmp / "index.html", _index_html(summary, rec, figures, report.message))
    return summary


def _refuse_foreign_folder(out: Path) -> None:
    """The demo replaces ``out`` as a whole: only allow that for an earlier demo's output."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not (out / "summary.json").is_file() or not (out / "store" / "manifest.json").is_file():
            raise FileExistsError(
                f"{out}: exists and is not an earlier demo output; choose another --out (nothing was changed)"
            )


def _store_stats(store: Any) -> dict[str, float]:
    acc, acc_f = [], []
    for i in range(len(store)):
        s = store[i]
        full = float(np.prod(store.grid)) if s.mask.shape[-2] > 1 else float(s.mask.shape[-1])
        acc.append(full / float(s.mask.sum()))
        acc_f.append(full / float(s.further_mask.sum()))
    return {
        "mean_acceleration": round(float(np.mean(acc)), 3),
        "mean_further_acceleration": round(float(np.mean(acc_f)), 3),
    }


def _zero_filled(store: Any, i: int) -> np.ndarray:
    s = store[i]
    batch = s._replace(y=s.y[None], mask=s.mask[None], further_mask=s.further_mask[None],
                       maps=s.maps[None] if s.maps.numel() else s.maps)
    op = store.operator(batch)
    return op.adjoint(batch.y)[0].abs().numpy()


def _figures(store: Any, folder: Path) -> dict[str, Path]:
    from ambientmri.plotting import plot_mask

    folder.mkdir(parents=True, exist_ok=True)
    n = min(4, len(store))
    fig, axes = plt.subplots(3, n, figsize=(2.6 * n, 7.8), squeeze=False)
    for j in range(n):
        s = store[j]
        grid = store.grid
        a = torch.broadcast_to(s.mask, grid).numpy()
        at = torch.broadcast_to(s.further_mask, grid).numpy()
        axes[0, j].imshow(a, cmap="gray", vmin=0, vmax=1)
        axes[0, j].set_title(f"A, slice {j}")
        axes[1, j].imshow(a - at, cmap="magma", vmin=0, vmax=1)
        axes[1, j].set_title("lines Ã removes")
        axes[2, j].imshow(_zero_filled(store, j), cmap="gray")
        axes[2, j].set_title("|Aᴴy| (zero-filled)")
        for ax in axes[:, j]:
            ax.axis("off")
    fig.tight_layout()
    paths = {"masks": folder / "masks.png"}
    fig.savefig(paths["masks"], dpi=90)
    plt.close(fig)
    paths["psf"] = folder / "mask_psf.png"
    plot_mask(store[0].mask.numpy(), paths["psf"], title="A of slice 0 and its point-spread function")
    return paths


def _embed(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _index_html(summary: dict[str, Any], rec: Recipe, figures: dict[str, Path], condition: str) -> str:
    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in summary["store"].items()
    )
    buf = io.StringIO()
    buf.write(
        "<!doctype html><html><head><meta charset='utf-8'><title>ambientmri demo</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;}"
        "th{text-align:left;padding-right:2em}img{max-width:100%}</style></head><body>"
    )
    buf.write(f"<h1>ambientmri demo</h1><p>ambientmri {html.escape(__version__)}, recipe "
              f"<code>{html.escape(rec.name)}</code>, {summary['seconds']} s.</p>")
    buf.write("<h2>Corrupted store</h2><table>" + rows + "</table>")
    buf.write(f"<h2>Full-rank condition</h2><p>{html.escape(condition)}</p>")
    buf.write("<h2>Masks and zero-filled images</h2>" + _embed(figures["masks"]))
    buf.write("<h2>Mask of slice 0 and its point-spread function</h2>" + _embed(figures["psf"]))
    buf.write("</body></html>\n")
    return buf.getvalue()
