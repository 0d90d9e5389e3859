"""Sample-set metrics that need no pretrained weights: generated scans against held-out clean scans.

All functions take two sets of images ``(N, H, W)`` (complex or real; reduced to magnitudes) with
the same ``(H, W)``, and normalise every image the same way before comparing: by default each
magnitude image is divided by its own 99th percentile (``normalize="p99"``; the per-slice
normalisation of Aali et al.), so a global intensity scale, which differs between scans and is
not what a generative model is judged on, does not enter the distances. ``"max"`` divides by the
maximum, ``"none"`` keeps the values. An all-zero image is left as it is.

- :func:`sliced_wasserstein_distance`: multi-scale patch sliced Wasserstein distance over a
  Laplacian pyramid, as in Karras et al. 2018 (Progressive GAN, ``metrics/sliced_wasserstein.py``):
  7×7 patches at each level down to 16 pixels, descriptors standardised, SWD over random unit
  directions, per level. Sensitive to texture, sharpness and noise at each scale.
- :func:`radial_spectrum_distance`: distance between the mean log10 radial power spectra
  (centered orthonormal FFT) of the two sets. Blurred samples sit below the reference at high
  frequencies.
- :func:`unmeasured_energy_fraction`: the fraction of k-space energy in the region that the
  training masks rarely sampled. A naive model trained on zero-filled images reproduces the holes:
  too little energy there compared with the reference set.
- :func:`zero_pixel_fraction`: the fraction of pixels stuck at (near) zero; a naive model trained on
  pixel-masked (inpainting) images reproduces the holes as zeros.

:func:`sampleset_report` runs them all. Every random choice comes from generators seeded by
``seed``; the global RNGs are never touched. Read the numbers against a floor: the same report on
two halves of the held-out set (``sampleset_report(ref[::2], ref[1::2])``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import ndimage

__all__ = [
    "NORMALIZATIONS",
    "explain_sampleset",
    "laplacian_pyramid",
    "normalize_images",
    "radial_power_spectrum",
    "radial_spectrum_distance",
    "sampleset_report",
    "sliced_wasserstein_distance",
    "unmeasured_energy_fraction",
    "zero_pixel_fraction",
]

NORMALIZATIONS = ("p99", "max", "none")
_BINOMIAL = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0  # Karras' 5x5 Gaussian = outer(_BINOMIAL, _BINOMIAL)
_CHUNK_IMAGES = 64
_PROJECTION_ELEMENTS = 4_000_000  # projections held at once per set (32 MB)


# --------------------------------------------------------------------------------------------
# Input checks and normalisation
# --------------------------------------------------------------------------------------------


def _check_images(images: Any, name: str) -> np.ndarray:
    """``(N, H, W)`` magnitudes as float64, or a ValueError naming ``name``."""
    arr = np.asarray(images)
    if arr.dtype.kind not in "fiuc":
        raise ValueError(f"{name}: expected numeric images, got dtype {arr.dtype}")
    if arr.ndim != 3:
        raise ValueError(f"{name}: expected a stack of images (N, H, W), got shape {arr.shape}")
    if min(arr.shape) == 0:
        raise ValueError(f"{name}: empty image set, shape {arr.shape}")
    finite = np.isfinite(arr).reshape(arr.shape[0], -1).all(axis=1)
    if not finite.all():
        raise ValueError(f"{name}: image {int(np.flatnonzero(~finite)[0])} contains NaN or Inf")
    return np.abs(arr).astype(np.float64)


def _check_pair(generated: Any, reference: Any) -> tuple[np.ndarray, np.ndarray]:
    gen = _check_images(generated, "generated")
    ref = _check_images(reference, "reference")
    if gen.shape[1:] != ref.shape[1:]:
        raise ValueError(f"generated images are {gen.shape[1:]}, reference images {ref.shape[1:]}; they must match")
    return gen, ref


def normalize_images(images: Any, method: str = "p99", *, name: str = "images") -> np.ndarray:
    """Magnitude images ``(N, H, W)`` float64, each divided by its own scale.

    Args:
        images: ``(N, H, W)`` real or complex.
        method: ``"p99"`` (99th percentile of the magnitude; the maximum if that is 0), ``"max"``,
            or ``"none"``. An all-zero image is returned unchanged.
        name: what to call the set in an error.

    Raises:
        ValueError: not ``(N, H, W)``, empty, non-numeric, NaN/Inf, or an unknown method.
    """
    if method not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {list(NORMALIZATIONS)}, got {method!r}")
    mag = _check_images(images, name)
    return _normalize(mag, method)


def _normalize(mag: np.ndarray, method: str) -> np.ndarray:
    if method not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {list(NORMALIZATIONS)}, got {method!r}")
    if method == "none":
        return mag
    flat = mag.reshape(mag.shape[0], -1)
    peak = flat.max(axis=1)
    scale = np.percentile(flat, 99.0, axis=1) if method == "p99" else peak.copy()
    scale = np.where(scale > 0, scale, peak)
    scale = np.where(scale > 0, scale, 1.0)
    return mag / scale[:, None, None]


# --------------------------------------------------------------------------------------------
# (a) Multi-scale patch sliced Wasserstein distance
# --------------------------------------------------------------------------------------------


def _pyr_down(x: np.ndarray) -> np.ndarray:
    """Blur with the 5x5 binomial kernel (mirror boundary) and keep every second pixel (cv2.pyrDown)."""
    y = ndimage.convolve1d(x, _BINOMIAL, axis=-2, mode="mirror")
    y = ndimage.convolve1d(y, _BINOMIAL, axis=-1, mode="mirror")
    return y[..., ::2, ::2]


def _pyr_up(x: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Zero-insert upsampling, blur with 4x the binomial kernel, crop to ``shape`` (cv2.pyrUp)."""
    up = np.zeros((*x.shape[:-2], 2 * x.shape[-2], 2 * x.shape[-1]), dtype=x.dtype)
    up[..., ::2, ::2] = x
    up = ndimage.convolve1d(up, 2.0 * _BINOMIAL, axis=-2, mode="mirror")
    up = ndimage.convolve1d(up, 2.0 * _BINOMIAL, axis=-1, mode="mirror")
    return up[..., : shape[0], : shape[1]]


def laplacian_pyramid(images: np.ndarray, levels: int) -> list[np.ndarray]:
    """Laplacian pyramid of ``(N, H, W)`` images, finest level first (Karras et al. 2018).

    Level ``i < levels − 1`` is ``G_i − up(G_{i+1})`` with ``G_{i+1} = down(G_i)``; the last level
    is the coarsest Gaussian level itself. ``down``/``up`` match OpenCV's ``pyrDown``/``pyrUp``.
    """
    if levels < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    pyramid = [np.asarray(images, dtype=np.float64)]
    for _ in range(1, levels):
        pyramid.append(_pyr_down(pyramid[-1]))
        pyramid[-2] = pyramid[-2] - _pyr_up(pyramid[-1], pyramid[-2].shape[-2:])
    return pyramid


def _swd_levels(shape: tuple[int, int], min_resolution: int, patch_size: int) -> list[tuple[int, int]]:
    """Level shapes from full size down while the shorter side stays >= ``min_resolution``."""
    h, w = shape
    if min(h, w) < max(min_resolution, patch_size):
        raise ValueError(
            f"images of {h}x{w} are too small for the sliced Wasserstein distance: "
            f"the shorter side must be at least {max(min_resolution, patch_size)}"
        )
    out = []
    while min(h, w) >= max(min_resolution, patch_size):
        out.append((h, w))
        h, w = (h + 1) // 2, (w + 1) // 2
    return out


def _patch_descriptors(
    images: np.ndarray,
    image_index: np.ndarray,
    positions: list[tuple[np.ndarray, np.ndarray]],
    patch_size: int,
) -> list[np.ndarray]:
    """``(count, patch_size²)`` patches per pyramid level, computed in chunks of images."""
    levels = len(positions)
    count = image_index.shape[0]
    out = [np.empty((count, patch_size * patch_size), dtype=np.float64) for _ in range(levels)]
    for start in range(0, images.shape[0], _CHUNK_IMAGES):
        stop = min(start + _CHUNK_IMAGES, images.shape[0])
        which = np.flatnonzero((image_index >= start) & (image_index < stop))
        if which.size == 0:
            continue
        pyramid = laplacian_pyramid(images[start:stop], levels)
        for level, (ys, xs) in enumerate(positions):
            windows = sliding_window_view(pyramid[level], (patch_size, patch_size), axis=(1, 2))
            patches = windows[image_index[which] - start, ys[which], xs[which]]
            out[level][which] = patches.reshape(which.size, -1)
    return out


def _sliced_wasserstein(a: np.ndarray, b: np.ndarray, directions: np.ndarray) -> float:
    """Mean over unit ``directions (d, D)`` of the mean absolute difference of sorted projections."""
    total = 0.0
    at, bt = np.ascontiguousarray(a.T), np.ascontiguousarray(b.T)
    chunk = max(1, _PROJECTION_ELEMENTS // max(a.shape[0], b.shape[0]))  # bounds the memory of one chunk
    for start in range(0, directions.shape[1], chunk):
        d = np.ascontiguousarray(directions[:, start : start + chunk].T)
        pa = np.sort(d @ at, axis=1)
        pb = np.sort(d @ bt, axis=1)
        total += float(np.abs(pa - pb).mean(axis=1).sum())
    return total / directions.shape[1]


def sliced_wasserstein_distance(
    generated: Any,
    reference: Any,
    *,
    seed: int = 0,
    patch_size: int = 7,
    patches_per_image: int = 128,
    num_directions: int = 512,
    min_resolution: int = 16,
    normalize: str = "p99",
    descriptor_normalization: str = "per_set",
) -> dict[str, Any]:
    """Multi-scale patch sliced Wasserstein distance (Karras et al. 2018), per Laplacian level.

    Per level (finest first, down to ``min_resolution`` pixels on the shorter side):
    ``count = patches_per_image · min(N_gen, N_ref)`` patches of ``patch_size²`` pixels are taken
    from each set at the same random positions (patch ``k`` comes from image ``k·N // count`` of
    its set, so every image contributes equally). The descriptors are standardised (``"per_set"``:
    each set by its own mean and standard deviation, as Karras does; ``"reference"``: both sets by
    the reference's, which keeps differences in energy per scale), projected on ``num_directions``
    random unit vectors, and the SWD is the mean over directions of the mean absolute difference of
    the sorted projections (the 1-D Wasserstein-1 distance). Karras reports these ×10³.

    Identical sets give exactly 0. Two independent draws from one distribution give a positive
    floor that shrinks as the sets grow.

    Returns:
        ``{"resolutions": [[h, w], ...], "levels": [swd per level], "mean": mean over levels}``.

    Raises:
        ValueError: bad image sets (see :func:`normalize_images`), images smaller than
            ``min_resolution``, or bad parameters.
    """
    if descriptor_normalization not in ("per_set", "reference"):
        raise ValueError(f"descriptor_normalization must be 'per_set' or 'reference', got {descriptor_normalization!r}")
    for pname, value in (
        ("patch_size", patch_size),
        ("patches_per_image", patches_per_image),
        ("num_directions", num_directions),
        ("min_resolution", min_resolution),
    ):
        if int(value) != value or value < 1:
            raise ValueError(f"{pname} must be a positive integer, got {value!r}")
    gen, ref = _check_pair(generated, reference)
    gen, ref = _normalize(gen, normalize), _normalize(ref, normalize)
    shapes = _swd_levels(gen.shape[1:], min_resolution, patch_size)
    count = patches_per_image * min(gen.shape[0], ref.shape[0])

    positions = []
    for level, (h, w) in enumerate(shapes):
        rng = np.random.default_rng([seed, 0, level])
        positions.append((rng.integers(0, h - patch_size + 1, count), rng.integers(0, w - patch_size + 1, count)))
    k = np.arange(count)
    desc_gen = _patch_descriptors(gen, k * gen.shape[0] // count, positions, patch_size)
    desc_ref = _patch_descriptors(ref, k * ref.shape[0] // count, positions, patch_size)

    values = []
    for level in range(len(shapes)):
        a, b = desc_gen[level], desc_ref[level]
        if descriptor_normalization == "per_set":
            a = (a - a.mean()) / _safe_std(a)
            b = (b - b.mean()) / _safe_std(b)
        else:
            mean, std = b.mean(), _safe_std(b)
            a, b = (a - mean) / std, (b - mean) / std
        rng = np.random.default_rng([seed, 1, level])
        directions = rng.standard_normal((a.shape[1], num_directions))
        directions /= np.linalg.norm(directions, axis=0, keepdims=True)
        values.append(_sliced_wasserstein(a, b, directions))
    return {"resolutions": [list(s) for s in shapes], "levels": values, "mean": float(np.mean(values))}


def _safe_std(x: np.ndarray) -> float:
    std = float(x.std())
    return std if std > 0 else 1.0


# --------------------------------------------------------------------------------------------
# (b) Radial power spectrum
# --------------------------------------------------------------------------------------------


def _fft2c(images: np.ndarray) -> np.ndarray:
    """Centered orthonormal 2-D FFT over the last two axes (fastMRI's ``fft2c``)."""
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(images, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))


def _radial_bins(shape: tuple[int, int], num_bins: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    """Bin index per k-space point (−1 beyond Nyquist) and the bin centres in cycles/pixel."""
    h, w = shape
    num_bins = min(h, w) // 2 if num_bins is None else int(num_bins)
    if num_bins < 1:
        raise ValueError(f"num_bins must be >= 1, got {num_bins}")
    fy = (np.arange(h) - h // 2) / h
    fx = (np.arange(w) - w // 2) / w
    radius = np.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
    index = np.floor(radius / 0.5 * num_bins).astype(np.int64)
    index[radius > 0.5] = -1
    index[index >= num_bins] = num_bins - 1  # radius exactly 0.5
    counts = np.bincount(index[index >= 0], minlength=num_bins)
    if (counts == 0).any():
        raise ValueError(f"num_bins={num_bins} leaves empty radial bins for {h}x{w} images; use fewer bins")
    centres = (np.arange(num_bins) + 0.5) * 0.5 / num_bins
    return index, centres, num_bins


def radial_power_spectrum(
    images: Any, *, num_bins: int | None = None, normalize: str = "p99", eps: float = 1e-12
) -> tuple[np.ndarray, np.ndarray]:
    """Per-image log10 radial power spectra.

    The power ``|fft2c(x)|²`` (centered, orthonormal) of each normalised magnitude image is
    averaged over rings of radius ``sqrt(fx² + fy²)`` cycles/pixel in ``num_bins`` equal bins
    from 0 to 0.5 (Nyquist; the corners beyond are left out), default ``min(H, W) // 2`` bins.

    Returns:
        ``(frequency (B,), log10(power + eps) (N, B))``.
    """
    mag = _normalize(_check_images(images, "images"), normalize)
    index, centres, num_bins = _radial_bins(mag.shape[1:], num_bins)
    keep = index >= 0
    idx = index[keep]
    counts = np.bincount(idx, minlength=num_bins)
    power = np.abs(_fft2c(mag)) ** 2
    out = np.empty((mag.shape[0], num_bins))
    for i in range(mag.shape[0]):
        out[i] = np.bincount(idx, weights=power[i][keep], minlength=num_bins) / counts
    return centres, np.log10(out + eps)


def radial_spectrum_distance(
    generated: Any,
    reference: Any,
    *,
    num_bins: int | None = None,
    normalize: str = "p99",
    metric: str = "l2",
) -> dict[str, Any]:
    """Distance between the two sets' mean log10 radial power spectra.

    The per-image spectra of :func:`radial_power_spectrum` are averaged over each set (a mean of
    logs); ``d = ḡ − r̄`` per bin, in decades. ``metric="l2"``: ``sqrt(mean(d²))``; ``"l1"``:
    ``mean(|d|)``.

    Returns:
        ``{"distance", "band_log10_ratio": {"low", "mid", "high"} (mean of d over each third of
        the frequency range; negative = too little power, e.g. blur), "frequency", "generated",
        "reference"}`` (the last three are lists, the curves to plot).
    """
    if metric not in ("l1", "l2"):
        raise ValueError(f"metric must be 'l1' or 'l2', got {metric!r}")
    gen, ref = _check_pair(generated, reference)
    freq, lg = radial_power_spectrum(gen, num_bins=num_bins, normalize=normalize)
    _, lr = radial_power_spectrum(ref, num_bins=num_bins, normalize=normalize)
    cg, cr = lg.mean(axis=0), lr.mean(axis=0)
    d = cg - cr
    distance = float(np.sqrt(np.mean(d**2))) if metric == "l2" else float(np.mean(np.abs(d)))
    thirds = np.array_split(d, 3) if d.size >= 3 else [d, d, d]
    bands = {name: float(part.mean()) for name, part in zip(("low", "mid", "high"), thirds, strict=True)}
    return {
        "distance": distance,
        "band_log10_ratio": bands,
        "frequency": freq.tolist(),
        "generated": cg.tolist(),
        "reference": cr.tolist(),
    }


# --------------------------------------------------------------------------------------------
# (c) Did the model learn the corruption?
# --------------------------------------------------------------------------------------------


def _rarely_measured_region(train_mask_frequency: Any, shape: tuple[int, int], threshold: float) -> np.ndarray:
    """Boolean ``(H, W)``: k-space points sampled with frequency below ``threshold · max``."""
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    freq = np.asarray(train_mask_frequency, dtype=np.float64)
    if freq.ndim == 1:
        freq = freq[None, :]
    h, w = shape
    if freq.ndim != 2 or freq.shape[0] not in (1, h) or freq.shape[1] not in (1, w):
        raise ValueError(
            f"train_mask_frequency has shape {np.shape(train_mask_frequency)}; expected ({h}, {w}), (1, {w}), "
            f"({w},) or ({h}, 1) for {h}x{w} images"
        )
    if not np.isfinite(freq).all() or (freq < 0).any():
        raise ValueError("train_mask_frequency must be finite and non-negative")
    peak = freq.max()
    if peak <= 0:
        raise ValueError("train_mask_frequency is all zero")
    region = np.broadcast_to(freq < threshold * peak, shape)
    if not region.any():
        raise ValueError(
            f"the training masks leave no k-space region sampled below {threshold} of the maximum frequency"
        )
    if region.all():
        raise ValueError("train_mask_frequency puts all of k-space in the rarely measured region")
    return region


def unmeasured_energy_fraction(images: Any, train_mask_frequency: Any, *, threshold: float = 0.5) -> np.ndarray:
    """Per image, the fraction of k-space energy where the training masks rarely sampled.

    Args:
        images: ``(N, H, W)``; magnitudes are taken (the fraction is scale-invariant, so no
            normalisation is needed).
        train_mask_frequency: how often each k-space point was sampled in training, in the centered
            layout of the store's masks (DC at ``(H // 2, W // 2)``): ``(H, W)``, ``(1, W)`` or
            ``(W,)`` for column masks, e.g. the mean of the training store's masks.
        threshold: the region is where the frequency is below ``threshold · max(frequency)``.

    Returns:
        ``(N,)`` float64: ``Σ_region |fft2c(x)|² / Σ |fft2c(x)|²`` (0 for an all-zero image).
    """
    mag = _check_images(images, "images")
    region = _rarely_measured_region(train_mask_frequency, mag.shape[1:], threshold)
    power = np.abs(_fft2c(mag)) ** 2
    total = power.reshape(mag.shape[0], -1).sum(axis=1)
    inside = power[:, region].sum(axis=1)
    return np.divide(inside, total, out=np.zeros_like(total), where=total > 0)


def zero_pixel_fraction(images: Any, *, tolerance: float = 1e-3, normalize: str = "p99") -> np.ndarray:
    """Per image, the fraction of pixels whose normalised magnitude is at most ``tolerance``.

    Returns:
        ``(N,)`` float64 in [0, 1].
    """
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    mag = _normalize(_check_images(images, "images"), normalize)
    return (mag <= tolerance).reshape(mag.shape[0], -1).mean(axis=1)


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def sampleset_report(
    generated: Any,
    reference: Any,
    *,
    train_mask_frequency: Any = None,
    seed: int = 0,
    normalize: str = "p99",
    threshold: float = 0.5,
    energy_flag_ratio: float = 0.7,
    zero_tolerance: float = 1e-3,
    zero_flag_margin: float = 0.02,
) -> dict[str, Any]:
    """All sample-set metrics of ``generated`` against ``reference`` (held-out clean images).

    Args:
        generated, reference: ``(N, H, W)`` and ``(M, H, W)`` images (magnitudes are taken).
        train_mask_frequency: the training masks' sampling frequency (see
            :func:`unmeasured_energy_fraction`); without it ``unmeasured_energy`` is None.
        seed: seeds the SWD's patch positions and directions.
        normalize: per-image normalisation (see :func:`normalize_images`).
        threshold: the rarely measured region is where the frequency < ``threshold · max``.
        energy_flag_ratio: flag when generated / reference energy there is below this.
        zero_tolerance: normalised magnitude counted as zero.
        zero_flag_margin: flag when the generated zero fraction exceeds the reference's by more.

    Returns:
        ``{"num_generated", "num_reference", "image_shape", "normalize", "seed",
        "swd": {"resolutions", "levels", "mean"},
        "radial_spectrum": {"distance", "band_log10_ratio": {"low", "mid", "high"}},
        "zero_pixels": {"tolerance", "generated", "reference", "difference", "flagged"},
        "unmeasured_energy": None or {"threshold", "region_fraction", "generated", "reference",
        "ratio", "flagged"}}``.
    """
    gen, ref = _check_pair(generated, reference)
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {list(NORMALIZATIONS)}, got {normalize!r}")
    swd = sliced_wasserstein_distance(gen, ref, seed=seed, normalize=normalize)
    spectrum = radial_spectrum_distance(gen, ref, normalize=normalize)
    zg = float(zero_pixel_fraction(gen, tolerance=zero_tolerance, normalize=normalize).mean())
    zr = float(zero_pixel_fraction(ref, tolerance=zero_tolerance, normalize=normalize).mean())
    report: dict[str, Any] = {
        "num_generated": int(gen.shape[0]),
        "num_reference": int(ref.shape[0]),
        "image_shape": [int(n) for n in gen.shape[1:]],
        "normalize": normalize,
        "seed": int(seed),
        "swd": swd,
        "radial_spectrum": {"distance": spectrum["distance"], "band_log10_ratio": spectrum["band_log10_ratio"]},
        "zero_pixels": {
            "tolerance": zero_tolerance,
            "generated": zg,
            "reference": zr,
            "difference": zg - zr,
            "flagged": bool(zg - zr > zero_flag_margin),
        },
        "unmeasured_energy": None,
    }
    if train_mask_frequency is not None:
        region = _rarely_measured_region(train_mask_frequency, gen.shape[1:], threshold)
        eg = float(unmeasured_energy_fraction(gen, train_mask_frequency, threshold=threshold).mean())
        er = float(unmeasured_energy_fraction(ref, train_mask_frequency, threshold=threshold).mean())
        ratio = eg / er if er > 0 else math.nan
        report["unmeasured_energy"] = {
            "threshold": threshold,
            "region_fraction": float(region.mean()),
            "generated": eg,
            "reference": er,
            "ratio": ratio if math.isfinite(ratio) else None,
            "flagged": bool(math.isfinite(ratio) and ratio < energy_flag_ratio),
        }
    return report


def explain_sampleset(report: dict[str, Any]) -> list[str]:
    """What each number of :func:`sampleset_report` means, one sentence each, with its value.

    ``compare-samples`` prints these under its table; they read the same for any report.
    """
    swd = report["swd"]["mean"]
    spectrum = report["radial_spectrum"]
    bands = spectrum["band_log10_ratio"]
    z = report["zero_pixels"]
    lines = [
        f"patch SWD {swd:.4g}: how far the distribution of small (7x7) patches of the generated scans is from "
        "the held-out scans', averaged over image scales (texture, sharpness, noise); 0 means the same "
        "distribution. Read it against a floor: the same command on two halves of the held-out scans.",
        f"radial power-spectrum distance {spectrum['distance']:.4g}: the RMS gap, in decades (log10), between "
        "the two sets' mean power at each spatial frequency; per third of the frequency range the generated "
        f"scans have {bands['low']:+.2f} / {bands['mid']:+.2f} / {bands['high']:+.2f} decades (low / mid / "
        "high): negative at high frequencies means blur, positive means noise or artefacts.",
        f"pixels at zero {z['generated']:.2%} generated against {z['reference']:.2%} held-out: a model that "
        "copies the training data's masked-out pixels (a naive model of inpainting data) leaves holes of "
        f"zeros; flagged when the difference exceeds the margin ({'flagged' if z['flagged'] else 'not flagged'}).",
    ]
    u = report.get("unmeasured_energy")
    if u:
        ratio = "n/a" if u["ratio"] is None else f"{u['ratio']:.3f}"
        lines.append(
            f"energy where training rarely sampled, generated / held-out = {ratio}: the share of k-space energy "
            f"in the {u['region_fraction']:.1%} of k-space that the training masks sampled less than "
            f"{u['threshold']:.0%} as often as its most sampled point; well below 1 means the model reproduces "
            "the missing k-space of its training data instead of filling it in "
            f"({'flagged' if u['flagged'] else 'not flagged'})."
        )
    else:
        lines.append("energy where training rarely sampled: not measured (pass --store, a k-space training store, "
                     "on the same image grid).")
    return lines
