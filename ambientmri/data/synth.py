"""Synthetic MRI scans written in exact fastMRI format.

Each volume is one synthetic subject: a brain-like (axial T2) or knee-like (coronal PD) phantom
whose geometry, contrast, lesions and background phase are drawn from the subject's own seeded
generator, so subjects differ while every slice of one subject comes from the same anatomy (slices
vary smoothly with their position). Multicoil k-space is ``fft2c(S_c x) + noise`` with smooth
birdcage-like coil maps; singlecoil is ``fft2c(x) + noise``.

Geometry: ``matrix = (H, W)`` is the k-space size, ``H`` the readout including fastMRI's 2x readout
oversampling (fastMRI's 640) and ``W`` the phase encode. The object lives inside the central recon
FOV ``recon_size = (h, w)``, by default ``(H // 2, min(W, H // 2))`` (fastMRI's 320x320 for
640x368); the targets are that center crop, exactly as in fastMRI.

Nothing here touches numpy's global RNG: every draw comes from a ``numpy.random.Generator``
seeded from the cohort seed, the split and the volume index.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ambientmri.data.fastmri import (
    build_ismrmrd_header,
    default_recon_size,
    target_from_kspace,
    write_fastmri,
)
from ambientmri.errors import OutputError
from ambientmri.operators.corruptions import acs_columns
from ambientmri.operators.fft import fft2c_np
from ambientmri.utils import numpy_rng

ANATOMIES = ("brain", "knee")
CHALLENGES = ("singlecoil", "multicoil")
ACQUISITION = {"brain": "AXT2", "knee": "CORPD_FBK"}
# Subject numbers: seed * 10000 + split offset + volume index (so ids never repeat across splits).
SPLIT_OFFSETS = {"train": 0, "val": 1000, "test": 2000, "challenge": 3000}
_MAX_VOLUMES = 1000

__all__ = [
    "ACQUISITION",
    "ANATOMIES",
    "SPLIT_OFFSETS",
    "Subject",
    "SynthVolume",
    "coil_maps",
    "draw_subject",
    "phantom",
    "render",
    "subject_number",
    "synth_challenge_file",
    "synth_cohort",
    "synth_file_name",
    "synth_volume",
]


# --------------------------------------------------------------------------------------------
# Subjects and phantoms
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Subject:
    """The random make-up of one synthetic subject (drawn once, rendered for every slice).

    Attributes:
        anatomy: ``"brain"`` or ``"knee"``.
        params: named scalars and small arrays (geometry, contrasts, lesions, phase, texture);
            coordinates are in units of half the recon FOV, the object centred at the origin.
    """

    anatomy: str
    params: dict

    def slice_positions(self, slices: int) -> np.ndarray:
        """Positions of ``slices`` evenly spaced slices through this subject, in ``[-1, 1]``."""
        p = self.params
        if slices == 1:
            return np.array([p["z_center"]])
        return p["z_center"] + p["z_span"] * np.linspace(-0.6, 0.6, slices)


def draw_subject(anatomy: str, rng: np.random.Generator) -> Subject:
    """Draw one subject's anatomy, contrast, lesions, texture and phase from ``rng``."""
    _check_choice("anatomy", anatomy, ANATOMIES)
    p: dict = {
        "z_center": rng.uniform(-0.1, 0.1),
        "z_span": rng.uniform(0.9, 1.1),
        "center": rng.normal(0.0, 0.02, size=2),
        "angle": rng.normal(0.0, 0.05),
        "contrast": rng.normal(1.0, 0.06, size=8).clip(0.8, 1.2),
        # smooth multiplicative texture: a few random plane waves
        "tex_freq": rng.uniform(2.0, 7.0, size=(6, 2)) * rng.choice([-1.0, 1.0], size=(6, 2)),
        "tex_phase": rng.uniform(0, 2 * np.pi, size=6),
        "tex_amp": rng.uniform(0.015, 0.035),
        "bias": rng.normal(0.0, 0.08, size=2),
        # background phase: constant + linear + quadratic terms, drifting with z
        "phase": np.concatenate([[rng.uniform(-np.pi, np.pi)], rng.normal(0.0, 0.4, size=4)]),
        "phase_drift": rng.normal(0.0, 0.3),
    }
    num_lesions = int(rng.integers(1, 5))
    if anatomy == "brain":
        p |= {
            "head": np.array([rng.uniform(0.80, 0.90), rng.uniform(0.64, 0.74)]),
            "scalp": rng.uniform(0.04, 0.06),
            "skull": rng.uniform(0.04, 0.06),
            "csf_rim": rng.uniform(0.015, 0.03),
            "wm_radius": rng.uniform(0.66, 0.74),
            "wm_k": rng.integers(4, 10, size=4),
            "wm_amp": rng.uniform(0.02, 0.05, size=4),
            "wm_phase": rng.uniform(0, 2 * np.pi, size=4),
            "wm_twist": rng.normal(0.0, 1.0, size=4),
            "sulci_n": int(rng.integers(18, 30)),
            "sulci_phase": rng.uniform(0, 2 * np.pi),
            "ventricle": np.array([rng.uniform(0.18, 0.26), rng.uniform(0.045, 0.07)]),
            "ventricle_gap": rng.uniform(0.07, 0.11),
            "ventricle_angle": rng.uniform(0.1, 0.25),
            # lesions: (u, v, z0, radius) within the white matter
            "lesions": np.column_stack(
                [
                    _disk_points(rng, num_lesions, 0.45),
                    rng.uniform(-0.8, 0.8, num_lesions),
                    rng.uniform(0.03, 0.07, num_lesions),
                ]
            ),
        }
    else:
        p |= {
            "limb_width": rng.uniform(0.62, 0.78),
            "fat": rng.uniform(0.05, 0.08),
            "femur": np.array([rng.uniform(0.15, 0.19), rng.uniform(0.16, 0.2)]),
            "notch": rng.uniform(0.17, 0.22),
            "tibia": np.array([rng.uniform(0.38, 0.46), rng.uniform(0.38, 0.45)]),
            "joint": rng.uniform(0.0, 0.08),
            "cartilage": rng.uniform(0.025, 0.04),
            "cortex": rng.uniform(0.02, 0.03),
            "lesions": np.column_stack(
                [
                    rng.uniform(-0.35, 0.45, num_lesions),
                    rng.uniform(-0.3, 0.3, num_lesions),
                    rng.uniform(-0.8, 0.8, num_lesions),
                    rng.uniform(0.03, 0.06, num_lesions),
                ]
            ),
            "lesion_sign": rng.choice([-1.0, 1.0], size=num_lesions),
        }
    return Subject(anatomy=anatomy, params=p)


def phantom(
    anatomy: str,
    shape: tuple[int, int],
    rng: np.random.Generator,
    slice_position: float = 0.0,
    *,
    fov: tuple[int, int] | None = None,
) -> np.ndarray:
    """One complex image slice of a random subject drawn from ``rng``.

    Pass identically seeded generators to get several slices of the same subject (or use
    :func:`draw_subject` once and :func:`render` per slice).

    Args:
        anatomy: ``"brain"`` (axial T2-like) or ``"knee"`` (coronal PD-like).
        shape: image ``(H, W)``.
        rng: the subject's generator.
        slice_position: in ``[-1, 1]``; the anatomy changes smoothly with it.
        fov: ``(h, w)`` central region holding the object; default
            :func:`~ambientmri.data.fastmri.default_recon_size`.

    Returns:
        ``(H, W)`` complex64, magnitude up to about 1, with a smooth background phase; exactly
        zero outside the ``fov`` center crop.
    """
    return render(draw_subject(anatomy, rng), shape, slice_position, fov=fov)[0]


def render(
    subject: Subject,
    shape: tuple[int, int],
    slice_position: float = 0.0,
    *,
    fov: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Render one slice of ``subject``.

    Returns:
        ``(image, support)``: ``(H, W)`` complex64 image and ``(H, W)`` bool object support.
    """
    u, v, px = _grid(shape, fov)
    p = subject.params
    z = float(slice_position)
    # rigid pose of the subject (small shift and rotation)
    c, s = math.cos(p["angle"]), math.sin(p["angle"])
    du, dv = u - p["center"][0], v - p["center"][1]
    u, v = c * du + s * dv, -s * du + c * dv
    if subject.anatomy == "brain":
        magnitude, support = _brain(u, v, z, p, px)
    else:
        magnitude, support = _knee(u, v, z, p, px)
    texture = 1.0 + p["tex_amp"] * np.cos(
        p["tex_freq"][:, 0, None, None] * u + p["tex_freq"][:, 1, None, None] * v + p["tex_phase"][:, None, None]
    ).sum(axis=0)
    bias = 1.0 + p["bias"][0] * u + p["bias"][1] * v
    a = p["phase"]
    phase = a[0] + p["phase_drift"] * z + a[1] * u + a[2] * v + a[3] * (u * u + v * v) + a[4] * u * v
    image = magnitude * texture * bias * np.exp(1j * phase) * _fov_box(shape, fov)
    return image.astype(np.complex64), support


def _brain(u: np.ndarray, v: np.ndarray, z: float, p: dict, px: float) -> tuple[np.ndarray, np.ndarray]:
    """Axial T2-like head: scalp, skull, CSF, cortex, white matter, ventricles, lesions."""
    k = p["contrast"]
    csf, gm, wm, fat, bone, lesion = 1.0 * k[0], 0.55 * k[1], 0.38 * k[2], 0.6 * k[3], 0.04, 0.85
    size = math.sqrt(max(1.0 - (0.55 * z) ** 2, 0.05))  # the head narrows away from the middle
    au, av = p["head"] * size
    r_head = _radius(u, v, au, av)
    edge = px / min(au, av)
    img = _inside(r_head, edge) * fat  # scalp
    shrink = 1.0
    for thickness, value in ((p["scalp"], bone), (p["skull"], csf), (p["csf_rim"], gm)):
        shrink -= thickness / min(au, av)
        img = _paint(img, _inside(r_head / shrink, edge / shrink), value)
    # white matter: a wavy boundary (gyri) that twists smoothly with z
    theta = np.arctan2(u / au, v / av)
    r_brain = r_head / shrink
    wavy = p["wm_radius"] * (
        1.0
        + (
            p["wm_amp"][:, None, None]
            * np.cos(p["wm_k"][:, None, None] * theta + p["wm_phase"][:, None, None] + p["wm_twist"][:, None, None] * z)
        ).sum(axis=0)
    )
    img = _paint(img, _inside(r_brain / wavy, edge / shrink), wm)
    # sulci: thin CSF spokes through the outer cortex
    spokes = np.cos(p["sulci_n"] * theta + p["sulci_phase"] + 2.0 * z + 1.5 * np.sin(5 * theta + 3.0 * z))
    depth = 0.84 + 0.06 * np.cos(7 * theta + p["sulci_phase"])  # sulci of varying depth
    sulci = _inside(-spokes, 0.05, threshold=-0.93) * _inside(-r_brain / depth, edge, -1.0)
    img = _paint(img, sulci * _inside(r_brain, edge), csf)
    # lateral ventricles: a mirrored pair, largest in the middle slices
    vsize = 1.0 - (z / 0.7) ** 2
    if vsize > 0.0:
        vu, vv = p["ventricle"] * math.sqrt(vsize) * size
        for side in (-1.0, 1.0):
            r_v = _radius(u + 0.05, v - side * p["ventricle_gap"], vu, vv, -side * p["ventricle_angle"])
            img = _paint(img, _inside(r_v, px / vv), csf)
    img = _lesions(img, u, v, z, p["lesions"], np.full(len(p["lesions"]), lesion), px)
    return img, r_head < 1.0


def _knee(u: np.ndarray, v: np.ndarray, z: float, p: dict, px: float) -> tuple[np.ndarray, np.ndarray]:
    """Coronal PD-like knee: fat, muscle, femur and tibia (cortex + marrow), cartilage, menisci."""
    k = p["contrast"]
    fat, muscle, marrow, cortex = 0.9 * k[0], 0.35 * k[1], 0.72 * k[2], 0.05
    cartilage, fluid, meniscus = 0.55 * k[3], 0.65 * k[4], 0.06
    width = p["limb_width"] * math.sqrt(1.0 - (0.4 * z) ** 2)
    r_limb = _superellipse(u, v, 0.9, width, 6.0)
    edge = px / width
    img = _inside(r_limb, edge) * fat
    img = _paint(img, _inside(r_limb / (1.0 - p["fat"] / width), edge), muscle)

    joint = p["joint"]
    # femur: shaft plus two condyles whose separation changes with z
    cu, cv = p["femur"]
    gap = p["notch"] + 0.04 * z
    femur_parts = [
        _superellipse(u - (joint - 0.6), v, 0.42, 0.2, 4.0),  # shaft
        _radius(u - (joint - 0.22), v, 0.18, gap + 0.5 * cv),  # metaphysis flaring to condyles
    ]
    femur_parts += [_radius(u - (joint - cu - 0.005), v - side * gap, cu, cv) for side in (-1, 1)]
    r_femur = np.minimum.reduce(femur_parts)
    # tibia: plateau and a tapering shaft
    tu, tv = p["tibia"]
    tibia_top = joint + 0.02
    r_tibia = np.minimum(
        _superellipse(u - (tibia_top + tu), v, tu, tv, 3.0),
        _superellipse(u - (tibia_top + 0.8), v, 0.35, 0.24, 4.0),
    )
    near_joint = _inside(np.abs(u - joint) / 0.25, 0.2)
    for r_bone in (r_femur, r_tibia):
        t = p["cartilage"] / 0.2
        img = _paint(img, _inside(r_bone / (1.0 + t), edge) * near_joint, cartilage)
    img = _paint(
        img, _inside(np.abs(u - joint - 0.01) / 0.012, 0.3) * near_joint * _inside(np.abs(v) / 0.4, 0.1), fluid
    )
    for r_bone in (r_femur, r_tibia):
        img = _paint(img, _inside(r_bone, edge), cortex)
        img = _paint(img, _inside(r_bone / (1.0 - p["cortex"] / 0.2), edge), marrow)
    for side in (-1.0, 1.0):  # menisci at the sides of the joint line
        r_m = _radius(u - joint - 0.01, v - side * (tv * 0.85), 0.025, 0.08)
        img = _paint(img, _inside(r_m, px / 0.025), meniscus)
    values = np.where(p["lesion_sign"] > 0, 1.0, 0.15)
    img = _lesions(img, u, v, z, p["lesions"], values, px)
    return img * _inside(r_limb, edge), r_limb < 1.0


def _lesions(
    img: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    z: float,
    lesions: np.ndarray,
    values: np.ndarray,
    px: float,
) -> np.ndarray:
    """Spherical lesions ``(u, v, z0, radius)``: a disc where the slice cuts the sphere."""
    for (lu, lv, z0, radius), value in zip(lesions, values, strict=True):
        dz = (z - z0) * 0.25  # slice positions span about half the object's size
        if abs(dz) >= radius:
            continue
        rr = math.sqrt(radius * radius - dz * dz)
        img = _paint(img, _inside(_radius(u - lu, v - lv, rr, rr), px / max(rr, px)), value)
    return img


# -- small geometric helpers ---------------------------------------------------------------------


def _grid(shape: tuple[int, int], fov: tuple[int, int] | None) -> tuple[np.ndarray, ...]:
    """Normalised coordinates: the recon FOV's shorter half side is 1; origin at the center."""
    height, width = (int(n) for n in shape)
    fh, fw = default_recon_size(height, width) if fov is None else fov
    scale = min(fh, fw) / 2.0
    u = ((np.arange(height) - height // 2) / scale)[:, None]
    v = ((np.arange(width) - width // 2) / scale)[None, :]
    u, v = np.broadcast_arrays(u, v)
    return u, v, 0.7 / scale


def _fov_box(shape: tuple[int, int], fov: tuple[int, int] | None) -> np.ndarray:
    """1 inside the central recon FOV (fastMRI's center-crop window), 0 outside."""
    height, width = (int(n) for n in shape)
    fh, fw = default_recon_size(height, width) if fov is None else fov
    box = np.zeros((height, width))
    top, left = (height - fh) // 2, (width - fw) // 2
    box[top : top + fh, left : left + fw] = 1.0
    return box


def _radius(u: np.ndarray, v: np.ndarray, au: float, av: float, angle: float = 0.0) -> np.ndarray:
    """Normalised elliptical radius (< 1 inside the ellipse with semi-axes ``au``, ``av``)."""
    if angle:
        c, s = math.cos(angle), math.sin(angle)
        u, v = c * u + s * v, -s * u + c * v
    return np.sqrt((u / au) ** 2 + (v / av) ** 2)


def _superellipse(u: np.ndarray, v: np.ndarray, au: float, av: float, power: float) -> np.ndarray:
    """Normalised super-elliptical radius (boxier than an ellipse for ``power > 2``)."""
    return (np.abs(u / au) ** power + np.abs(v / av) ** power) ** (1.0 / power)


def _inside(r: np.ndarray, edge: float, threshold: float = 1.0) -> np.ndarray:
    """Soft indicator of ``r < threshold`` with an edge about ``edge`` wide (band-limits edges)."""
    return 0.5 * (1.0 - np.tanh((r - threshold) / max(edge, 1e-6)))


def _paint(img: np.ndarray, weight: np.ndarray, value: float) -> np.ndarray:
    """Paint ``value`` over ``img`` where ``weight`` (in [0, 1]) is on."""
    return img * (1.0 - weight) + value * weight


def _disk_points(rng: np.random.Generator, n: int, radius: float) -> np.ndarray:
    r = radius * np.sqrt(rng.uniform(0.0, 1.0, n))
    t = rng.uniform(0.0, 2 * np.pi, n)
    return np.column_stack([r * np.cos(t), r * np.sin(t)])


# --------------------------------------------------------------------------------------------
# Coils and acquisition
# --------------------------------------------------------------------------------------------


def coil_maps(
    num_coils: int,
    shape: tuple[int, int],
    *,
    fov: tuple[int, int] | None = None,
    rotation: float = 0.0,
    support: np.ndarray | None = None,
) -> np.ndarray:
    """Smooth birdcage-like coil sensitivities.

    Coil ``c`` sits at angle ``2 pi c / C + rotation`` on a circle of radius 1.5 (object units)
    around the center; its map is ``exp(i phi) / distance`` as in sigpy's ``birdcage_maps``.
    The maps are scaled so that their RSS averages 1 over ``support`` (default: the recon FOV),
    keeping the smooth coil shading that real RSS images show.

    Returns:
        ``(C, H, W)`` complex64.
    """
    if num_coils < 1:
        raise ValueError(f"num_coils must be >= 1, got {num_coils}")
    u, v, _ = _grid(shape, fov)
    angles = 2 * np.pi * np.arange(num_coils) / num_coils + rotation
    cu = 1.5 * np.cos(angles)[:, None, None]
    cv = 1.5 * np.sin(angles)[:, None, None]
    du, dv = u - cu, v - cv
    # (the small constant keeps the maps finite where a coil lies inside the oversampled image)
    distance = np.sqrt(du**2 + dv**2 + 0.01)
    maps = np.exp(1j * (np.arctan2(dv, -du) - angles[:, None, None])) / distance
    if support is None:
        support = (np.abs(u) <= 1.0) & (np.abs(v) <= 1.0)
    scale = np.sqrt((np.abs(maps) ** 2).sum(axis=0))[support].mean()
    return (maps / scale).astype(np.complex64)


@dataclasses.dataclass(frozen=True, eq=False)
class SynthVolume:
    """One synthetic volume in memory.

    Attributes:
        kspace: ``(S, H, W)`` singlecoil or ``(S, C, H, W)`` multicoil complex64, noisy.
        images: ``(S, H, W)`` complex64 clean object (evaluation only; never written to files).
        maps: ``(C, H, W)`` complex64 coil maps (None for singlecoil).
        support: ``(S, H, W)`` bool object support (where the SNR's signal RMS is taken).
        targets: ``(S, h, w)`` float32 target of the noisy k-space (fastMRI convention).
        recon_size: ``(h, w)``.
        attrs: fastMRI attrs (``acquisition``, ``max``, ``norm``, ``patient_id``).
        noise_std: per-sample complex noise standard deviation added to the k-space.
    """

    kspace: np.ndarray
    images: np.ndarray
    maps: np.ndarray | None
    support: np.ndarray
    targets: np.ndarray
    recon_size: tuple[int, int]
    attrs: dict
    noise_std: float


def subject_number(index: int, *, seed: int = 0, split: str = "train") -> int:
    """The subject number of volume ``index`` of a cohort: ``seed * 10000 + split offset + index``.

    Split offsets (:data:`SPLIT_OFFSETS`) keep subjects of different splits and seeds apart.
    """
    _check_choice("split", split, tuple(SPLIT_OFFSETS))
    if not 0 <= index < _MAX_VOLUMES:
        raise ValueError(f"volume index must be in [0, {_MAX_VOLUMES}), got {index}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return int(seed) * 10000 + SPLIT_OFFSETS[split] + int(index)


def synth_file_name(anatomy: str, number: int) -> str:
    """fastMRI-like file name: ``file_brain_AXT2_<nnnn>.h5`` (brain) or ``file<1000000+n>.h5``."""
    _check_choice("anatomy", anatomy, ANATOMIES)
    return f"file_brain_AXT2_{number:04d}.h5" if anatomy == "brain" else f"file{1000000 + number}.h5"


def synth_volume(
    *,
    challenge: str = "multicoil",
    slices: int = 4,
    matrix: tuple[int, int] = (128, 64),
    coils: int = 8,
    anatomy: str = "brain",
    subject: int = 0,
    snr_db: float = 30.0,
    recon_size: tuple[int, int] | None = None,
) -> SynthVolume:
    """Simulate one subject's volume in memory (deterministic in all arguments).

    Args:
        challenge: ``"multicoil"`` or ``"singlecoil"``.
        slices: number of slices ``S``.
        matrix: k-space ``(H, W)``; ``H`` includes the 2x readout oversampling.
        coils: ``C`` (multicoil only).
        anatomy: ``"brain"`` or ``"knee"``.
        subject: subject number (see :func:`subject_number`); it alone fixes the anatomy.
        snr_db: ``20 log10(signal RMS inside the object / noise std)``; ``inf`` for no noise.
        recon_size: ``(h, w)`` center crop holding the object and the targets; default
            ``(H // 2, min(W, H // 2))``.
    """
    _check_choice("challenge", challenge, CHALLENGES)
    _check_choice("anatomy", anatomy, ANATOMIES)
    height, width = (int(n) for n in matrix)
    if slices < 1 or height < 8 or width < 8:
        raise ValueError(f"need slices >= 1 and matrix >= 8x8, got {slices} slices of {matrix}")
    recon = default_recon_size(height, width) if recon_size is None else tuple(recon_size)
    if not (0 < recon[0] <= height and 0 < recon[1] <= width):
        raise ValueError(f"recon_size {recon} does not fit inside the {height}x{width} matrix")

    subj = draw_subject(anatomy, numpy_rng("ambientmri.synth.subject", anatomy, subject))
    acq = numpy_rng("ambientmri.synth.acquisition", anatomy, challenge, subject, height, width, coils)
    rendered = [render(subj, (height, width), z, fov=recon) for z in subj.slice_positions(slices)]
    images = np.stack([img for img, _ in rendered])
    support = np.stack([sup for _, sup in rendered])

    if challenge == "multicoil":
        maps = coil_maps(
            coils, (height, width), fov=recon, rotation=acq.uniform(0, 2 * np.pi), support=support.any(axis=0)
        )
        coil_images = images[:, None] * maps[None]
        signal = np.abs(coil_images) ** 2
        signal_ms = float(signal.transpose(1, 0, 2, 3)[:, support].mean())
    else:
        maps = None
        coil_images = images
        signal_ms = float((np.abs(images[support]) ** 2).mean())
    noise_std = 0.0 if math.isinf(snr_db) else math.sqrt(signal_ms) / 10 ** (snr_db / 20.0)
    kspace = fft2c_np(coil_images)
    if noise_std > 0:
        noise = acq.standard_normal((2, *kspace.shape), dtype=np.float32)
        kspace = kspace + (noise_std / math.sqrt(2.0)) * (noise[0] + 1j * noise[1])
    kspace = kspace.astype(np.complex64)

    per_slice = kspace if challenge == "multicoil" else kspace[:, None]
    targets = np.stack([target_from_kspace(k, recon) for k in per_slice])
    attrs = {
        "acquisition": ACQUISITION[anatomy],
        "max": float(targets.max()),
        "norm": float(np.linalg.norm(targets)),
        "patient_id": f"synth-subject-{subject:04d}",
    }
    return SynthVolume(kspace, images, maps, support, targets, (int(recon[0]), int(recon[1])), attrs, noise_std)


def _header(height: int, width: int, recon: tuple[int, int]) -> bytes:
    return build_ismrmrd_header((height, width, 1), (*recon, 1), width // 2, width - 1)


def _target_dict(challenge: str, targets: np.ndarray) -> dict[str, np.ndarray]:
    if challenge == "multicoil":
        return {"reconstruction_rss": targets}
    return {"reconstruction_esc": targets, "reconstruction_rss": targets}


def synth_cohort(
    out_dir: str | Path,
    *,
    challenge: str = "multicoil",
    volumes: int = 4,
    slices: int = 4,
    matrix: tuple[int, int] = (128, 64),
    coils: int = 8,
    anatomy: str = "brain",
    seed: int = 0,
    snr_db: float = 30.0,
    split: str = "train",
    recon_size: tuple[int, int] | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Write ``volumes`` synthetic subjects as fastMRI train/val files into ``out_dir``.

    Each file holds fully sampled noisy k-space, its targets (``reconstruction_rss``; singlecoil
    also ``reconstruction_esc``, identical), an ``ismrmrd_header`` (encoded ``(H, W, 1)``, recon
    ``(h, w, 1)``, center ``W // 2``, maximum ``W - 1``) and attrs ``acquisition``, ``max``,
    ``norm``, ``patient_id``. Targets equal :func:`~ambientmri.data.fastmri.target_from_kspace`
    of the stored k-space. For test/challenge-style undersampled files see
    :func:`synth_challenge_file`.

    Args:
        out_dir: folder to write into (created).
        challenge, slices, matrix, coils, anatomy, snr_db, recon_size: see :func:`synth_volume`.
        volumes: number of files (subjects), at most 1000.
        seed: cohort seed; with ``split`` it fixes the subjects (:func:`subject_number`).
        split: ``"train"``, ``"val"``, ``"test"`` or ``"challenge"``; different splits hold
            different subjects.
        overwrite: replace existing files of the same names (their knee names are real fastMRI
            names); without it an existing one raises :class:`~ambientmri.errors.OutputError`
            before anything is written.

    Returns:
        The written paths, in volume order.
    """
    _check_choice("challenge", challenge, CHALLENGES)
    _check_choice("anatomy", anatomy, ANATOMIES)
    if not 1 <= volumes <= _MAX_VOLUMES:
        raise ValueError(f"volumes must be in [1, {_MAX_VOLUMES}], got {volumes}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputError(out, "exists and is a file, not a folder; choose another output folder (nothing was changed)")
    numbers = [subject_number(index, seed=seed, split=split) for index in range(volumes)]
    existing = [out / synth_file_name(anatomy, n) for n in numbers if (out / synth_file_name(anatomy, n)).exists()]
    if existing and not overwrite:
        raise OutputError(existing[0], f"exists ({len(existing)} of the {volumes} file name(s) are taken); "
                                       "choose an empty folder or pass --overwrite (nothing was changed)")
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for number in numbers:
        vol = synth_volume(
            challenge=challenge,
            slices=slices,
            matrix=matrix,
            coils=coils,
            anatomy=anatomy,
            subject=number,
            snr_db=snr_db,
            recon_size=recon_size,
        )
        height, width = vol.kspace.shape[-2:]
        paths.append(
            write_fastmri(
                out / synth_file_name(anatomy, number),
                vol.kspace,
                targets=_target_dict(challenge, vol.targets),
                attrs=vol.attrs,
                header=_header(height, width, vol.recon_size),
            )
        )
    return paths


def synth_challenge_file(
    path: str | Path,
    mask: np.ndarray,
    *,
    challenge: str = "multicoil",
    slices: int = 4,
    matrix: tuple[int, int] = (128, 64),
    coils: int = 8,
    anatomy: str = "brain",
    subject: int = 0,
    snr_db: float = 30.0,
    recon_size: tuple[int, int] | None = None,
    acceleration: int | None = None,
    num_low_frequencies: int | None = None,
) -> Path:
    """Write a test/challenge-style undersampled file: masked k-space, ``mask``, no target.

    Args:
        path: destination ``.h5``.
        mask: 1-D ``(W,)`` mask chosen by the caller (float or bool, stored as given); unmeasured
            columns hold exactly ``+0``.
        challenge, slices, matrix, coils, anatomy, subject, snr_db, recon_size: see
            :func:`synth_volume`.
        acceleration: ``acceleration`` attr; default ``round(W / number of sampled columns)``.
        num_low_frequencies: stored as fastMRI's ``num_low_frequency`` attr; default the length
            of the contiguous sampled run around column ``W // 2``.

    Returns:
        The written path. Attrs: ``acquisition``, ``patient_id``, ``acceleration``,
        ``num_low_frequency`` (no ``max``/``norm``: there is no target).
    """
    mask = np.asarray(mask)
    width = int(matrix[1])
    if mask.ndim != 1 or mask.shape[0] != width:
        raise ValueError(f"mask must be 1-D of length W={width}, got shape {mask.shape}")
    sampled = mask != 0
    if not sampled.any():
        raise ValueError("mask samples no column")
    vol = synth_volume(
        challenge=challenge,
        slices=slices,
        matrix=matrix,
        coils=coils,
        anatomy=anatomy,
        subject=subject,
        snr_db=snr_db,
        recon_size=recon_size,
    )
    if acceleration is None:
        acceleration = round(width / int(sampled.sum()))
    if num_low_frequencies is None:
        num_low_frequencies = int(acs_columns(sampled).sum())
    attrs = {
        "acquisition": vol.attrs["acquisition"],
        "patient_id": vol.attrs["patient_id"],
        "acceleration": int(acceleration),
        "num_low_frequency": int(num_low_frequencies),
    }
    height = vol.kspace.shape[-2]
    return write_fastmri(path, vol.kspace, mask=mask, attrs=attrs, header=_header(height, width, vol.recon_size))


def _check_choice(name: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
