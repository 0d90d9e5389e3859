"""What each training objective means for the network it produces.

A model's objective decides two things everywhere below the front ends: what the training data
is (the corrupted store, or clean references for the oracle) and what the network sees (the
further-corrupted ``Ãᴴ Ã x`` with ``Ã``'s mask channel, or a full noisy image with a mask of
ones). Training (the loss and the held-out evaluation), sampling (which denoiser wraps the
network), reconstruction and the audit's probe read these properties from one
:class:`Objective` instead of comparing strings; the loss of each objective lives in
:mod:`ambientmri.training.losses` (``LOSSES``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["OBJECTIVES", "Objective", "get_objective"]


@dataclass(frozen=True)
class Objective:
    """One training objective.

    Attributes:
        name: ``ambient``, ``clean`` or ``naive`` (the recipe's ``training.objective``).
        sees_further: the network's input is ``Ãᴴ Ã x`` with ``Ã``'s mask channel (an ambient
            model: generation and reconstruction must give it an ``Ã``); otherwise a full image
            with a mask of ones.
        clean_images: training reads clean references (the oracle; never on a corrupted store).
        summary: one line for users.
    """

    name: str
    sees_further: bool
    clean_images: bool
    summary: str


OBJECTIVES: dict[str, Objective] = {
    "ambient": Objective("ambient", True, False,
                         "ambient diffusion: predict the measurements from a further-corrupted noisy input"),
    "clean": Objective("clean", False, True, "the oracle: EDM denoising of clean images (needs clean scans)"),
    "naive": Objective("naive", False, False,
                       "the baseline: EDM denoising of zero-filled images Aᴴy as if they were clean"),
}


def get_objective(name: str | Objective) -> Objective:
    """The :class:`Objective` called ``name`` (an :class:`Objective` is returned as is).

    Raises:
        ValueError: an unknown name (one line listing the known ones).
    """
    if isinstance(name, Objective):
        return name
    try:
        return OBJECTIVES[str(name)]
    except KeyError:
        raise ValueError(f"objective {name!r}: allowed: {', '.join(OBJECTIVES)}") from None
