"""Memorization benchmark: ambient-trained vs clean-trained model vs the positive control.

Usage:
    python benchmarks/audit.py --out bench_audit [--steps 600] [--subjects 64] [--samples 64]
    python benchmarks/audit.py --search [--quick]     (the search at scale, below)
    python benchmarks/audit.py --out bench_audit --compare-search   (verdicts of both searches)

``--search`` measures the nearest-neighbour search instead (docs/audit.md, "Search at scale"): for
image space and measurement space (a 4-coil Cartesian R = 4 store of synthetic phantoms, in
memory) at 64 × 64 and 320 × 320, the seconds of the two-stage candidate search and its recall@1
against the exhaustive search on a subset of queries; queries are half planted near-copies of
training slices (flipped, 2% noise; shifted up to 4 px in image space) and half fresh phantoms of
other subjects. Prints one table (and the torch thread count); writes nothing.

On a small synthetic training set (``--subjects`` × 4 slices of single-coil 64 × 64 brain, pixel
inpainting p = 0.6 for the ambient model), it trains an ambient model on the corrupted store and a
clean model on the clean images with the same network and budget, generates ``--samples`` scans
from each (Heun, 18 steps), draws the same number of positive-control samples from the training
set's empirical optimal denoiser, and audits the three sets with ``ambientmri audit``'s code
against the clean training scans (image space, shifts and flips searched), calibrated on held-out
subjects. It then times the nearest-neighbour search on 100 queries × 1000 training slices and
extrapolates to 1000 × 10000. Prints one table; writes OUT/results.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np

from ambientmri.audit.controls import positive_control_samples
from ambientmri.audit.run import load_scan_set, run_audit
from ambientmri.audit.search import topk_neighbours
from ambientmri.recipes import validate_recipe
from ambientmri.sampling.generate import generate
from ambientmri.sampling.runs import load_run
from ambientmri.training.run import train_run
from ambientmri.utils import resolve_device, save_npy_atomic


def _recipe(objective: str, steps: int, subjects: int, heldout: int, device: str):
    return validate_recipe({
        "name": f"audit-{objective}",
        "data": {"kind": "synthetic", "challenge": "singlecoil", "anatomy": "brain", "volumes": subjects,
                 "heldout_volumes": heldout, "slices": 4, "matrix": [128, 64], "crop": [64, 64], "seed": 1},
        "corruption": {"kind": "inpainting", "p": 0.6, "delta": 0.1},
        "model": {"kind": "unet", "channels": [32, 64, 64], "num_res_blocks": 1,
                  "attention_levels": [False, False, True], "norm_num_groups": 16, "num_head_channels": 32},
        "training": {"objective": objective, "steps": steps, "batch_size": 8, "lr": 5e-4, "warmup_steps": 50,
                     "ema_halflife_images": 500, "log_every": 100, "checkpoint_every": 10**6, "eval_every": 0,
                     "device": device},
    }, "bench")


# ----------------------------------------------------------------------------------------------
# --search: the search at scale
# ----------------------------------------------------------------------------------------------
#: (space, grid, queries, training slices, candidates, exhaustive queries, exhaustive references)
SEARCH_CASES = [
    ("image", 64, 1000, 10000, 64, 100, 10000),
    ("measurement", 64, 1000, 10000, 64, 100, 1000),
    ("image", 320, 100, 1000, 64, 20, 1000),
    ("measurement", 320, 32, 256, 16, 8, 256),
]
QUICK_CASES = [
    ("image", 64, 100, 1000, 64, 40, 1000),
    ("measurement", 64, 100, 1000, 64, 20, 200),
]


def _search_case(space: str, size: int, nq: int, nr: int, cand: int, eq: int, er: int) -> dict:
    import torch

    from ambientmri.audit.synthetic import MemoryStore, near_copies, phantom_slices
    from ambientmri.operators.corruptions import CartesianCorruption

    slices = 8
    train, labels = phantom_slices(-(-nr // slices), slices, (size, size), seed=1)
    train, labels = train[:nr], labels[:nr]
    planted, src = near_copies(train, nq // 2, seed=3, shift=space == "image")
    fresh, _ = phantom_slices(-(-(nq - nq // 2) // slices), slices, (size, size), seed=2)
    queries = np.concatenate([planted, fresh[: nq - nq // 2]])
    if space == "image":
        queries, refs, sub_refs = np.abs(queries), np.abs(train), np.abs(train[:er])
    else:
        corruption = CartesianCorruption(accelerations=(4.0,), center_fractions=(0.08,))
        refs = MemoryStore(train, corruption, labels, coils=4)
        sub_refs = refs if er >= nr else MemoryStore(train[:er], corruption, labels[:er], coils=4)
    t0 = time.perf_counter()
    s_c, i_c = topk_neighbours(queries, refs, k=1, method="candidates", candidates=cand)
    seconds = time.perf_counter() - t0
    found = float((i_c[: nq // 2, 0].numpy() == src).mean())
    # the exhaustive search on a subset: eq queries (half planted, half fresh) x er references
    half = eq // 2
    pick = np.r_[np.flatnonzero(src < er)[:half], np.arange(nq // 2, nq // 2 + eq - half)]
    sub_q = queries[pick]
    t0 = time.perf_counter()
    s_e, i_e = topk_neighbours(sub_q, sub_refs, k=1, chunk=16 if space == "measurement" else 128,
                               query_chunk=4 if space == "measurement" else 32)
    exh_seconds = time.perf_counter() - t0
    s_s, i_s = (s_c[pick], i_c[pick]) if er >= nr else topk_neighbours(
        sub_q, sub_refs, k=1, method="candidates", candidates=cand)
    hit = (i_s[:, 0] == i_e[:, 0]).numpy()
    deficit = float((s_e[:, 0] - s_s[:, 0]).max())
    pairs_exh = len(pick) * er
    return {"space": space, "grid": size, "queries": nq, "train": nr, "candidates": cand, "seconds": seconds,
            "planted_found": found, "recall_queries": len(pick), "recall_refs": er,
            "recall_at_1": float(hit.mean()), "recall_planted": float(hit[:half].mean()),
            "recall_fresh": float(hit[half:].mean()), "max_score_deficit": deficit,
            "exhaustive_seconds_subset": exh_seconds,
            "exhaustive_seconds_full_estimate": exh_seconds * nq * nr / pairs_exh,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "threads": torch.get_num_threads()}


def search_benchmark(quick: bool, cases: list[str] | None = None) -> None:
    """Run the search cases (or the given ``SPACE,GRID,Q,R,CANDIDATES,EQ,ER`` ones) and print the table."""
    import torch

    print(f"torch threads: {torch.get_num_threads()}", flush=True)
    print("| space | grid | queries × training slices | candidates | seconds | planted copies found | "
          "recall@1 vs exhaustive (subset) | planted / fresh | max top-1 deficit | exhaustive, estimated | "
          "peak RSS so far (MiB) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    chosen = [(c.split(",")[0], *map(int, c.split(",")[1:])) for c in cases] if cases else None
    for case in chosen or (QUICK_CASES if quick else SEARCH_CASES):
        r = _search_case(*case)
        print(f"| {r['space']} | {r['grid']} × {r['grid']} | {r['queries']} × {r['train']} | {r['candidates']} | "
              f"{r['seconds']:.1f} | {r['planted_found']:.3f} | {r['recall_at_1']:.3f} "
              f"({r['recall_queries']} × {r['recall_refs']}) | {r['recall_planted']:.2f} / {r['recall_fresh']:.2f} | "
              f"{r['max_score_deficit']:.4f} | {r['exhaustive_seconds_full_estimate']:.0f} s | "
              f"{r['peak_rss_mib']:.0f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--search", action="store_true", help="benchmark the search at scale instead")
    parser.add_argument("--quick", action="store_true", help="with --search: small sizes only")
    parser.add_argument("--case", action="append", metavar="SPACE,GRID,Q,R,CANDIDATES,EQ,ER",
                        help="with --search: run this case instead (repeatable), e.g. measurement,64,1000,10000,64,24,"
                        "10000 (EQ x ER: the exhaustive subset)")
    parser.add_argument("--compare-search", action="store_true",
                        help="also audit each sample set with the exhaustive and the two-stage search")
    parser.add_argument("--out", type=Path, default=Path("bench_audit"))
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--subjects", type=int, default=64)
    parser.add_argument("--heldout", type=int, default=16)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    args = parser.parse_args()
    if args.search:
        search_benchmark(args.quick, args.case)
        return
    device = resolve_device(args.device)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {"steps": args.steps, "train_slices": 4 * args.subjects, "heldout_slices": 4 * args.heldout,
                     "samples": args.samples, "device": device, "sets": {}}
    raw = None
    for objective in ("ambient", "clean"):
        run_dir = out / f"run_{objective}"
        if not (run_dir / "checkpoints" / "last.pt").is_file():
            t0 = time.perf_counter()
            train_run(_recipe(objective, args.steps, args.subjects, args.heldout, device), run_dir)
            print(f"trained {objective} in {time.perf_counter() - t0:.0f} s", flush=True)
        raw = run_dir / "data" / "raw"
        samples = out / f"samples_{objective}.npy"
        if not samples.is_file():
            x = generate(load_run(run_dir, device=device), args.samples, steps=18, seed=0, device=device)
            save_npy_atomic(samples, x.numpy())
    assert raw is not None
    train_images = load_scan_set(raw / "train").images
    control = out / "samples_positive_control.npy"
    if not control.is_file():
        save_npy_atomic(control, positive_control_samples(train_images.astype(np.complex64), args.samples, seed=0))
    for name, samples in (("ambient model", out / "samples_ambient.npy"), ("clean model", out / "samples_clean.npy"),
                          ("positive control", control)):
        if args.compare_search:  # the same audit with the exhaustive and the two-stage search
            same = {}
            for method in ("exhaustive", "candidates"):
                t0 = time.perf_counter()
                sm = run_audit(samples, raw / "train", raw / "heldout", out / f"audit_{samples.stem}_{method}",
                               controls=False, search=method)
                same[method] = (sm["verdict"], sm["memorized_fraction"], sm["threshold"])
                print(f"{name:18s} search {method:10s}: {sm['verdict']}, memorized {sm['memorized_fraction']:.3f}, "
                      f"tau {sm['threshold']:.4f}, median top-1 {sm['spaces']['image']['generated_top1']['median']:.4f}"
                      f" ({time.perf_counter() - t0:.1f} s)", flush=True)
            results.setdefault("compare_search", {})[name] = same
        t0 = time.perf_counter()
        summary = run_audit(samples, raw / "train", raw / "heldout", out / f"audit_{samples.stem}", controls=False)
        row = {k: summary.get(k) for k in ("verdict", "memorized_fraction", "threshold", "n_samples")}
        row["ci"] = summary.get("ci95")
        row["mann_whitney_p"] = summary.get("p_value")
        row["training_coverage"] = summary.get("training_coverage")
        row["seconds"] = round(time.perf_counter() - t0, 2)
        results["sets"][name] = row
        print(f"{name:18s} memorized {row['memorized_fraction']:.3f} CI {row['ci']} tau {row['threshold']:.4f} "
              f"p {row['mann_whitney_p']} ({row['seconds']} s)", flush=True)
    # search cost: 100 queries x 1000 training slices, extrapolated to 1000 x 10000
    rng = np.random.default_rng(0)
    refs = np.abs(rng.standard_normal((1000, 64, 64))).astype(np.float32)
    queries = np.abs(rng.standard_normal((100, 64, 64))).astype(np.float32)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    topk_neighbours(queries, refs, k=3, chunk=128, query_chunk=32)
    seconds = time.perf_counter() - t0
    peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    results["search"] = {"queries": 100, "references": 1000, "image": [64, 64], "seconds": round(seconds, 2),
                         "extra_peak_rss_mib": round(peak, 1),
                         "extrapolated_seconds_1000x10000": round(seconds * 100, 1)}
    print(f"top-k search 100 x 1000 at 64x64 (shifts and flips): {seconds:.1f} s, peak RSS +{peak:.0f} MiB; "
          f"1000 x 10000 extrapolates to {seconds * 100 / 60:.1f} min (linear in pairs, memory bounded by chunks)")
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
