"""Evaluation: fastMRI reconstruction metrics and weight-free sample-set metrics.

- :mod:`ambientmri.evaluation.metrics`: fastMRI's NMSE/PSNR/SSIM per volume and over folders of
  HDF5 files (``ambientmri evaluate``), Aali-style per-slice metrics, JSON/CSV writers.
- :mod:`ambientmri.evaluation.sampleset`: distances between a set of generated images and a set
  of held-out clean images (patch sliced Wasserstein distance, radial power spectra) and
  statistics that expose a model that learned the corruption itself.

See ``docs/evaluation.md``.
"""

from ambientmri.evaluation.metrics import (
    evaluate_folders,
    evaluate_volumes,
    nmse,
    psnr,
    slice_metrics,
    ssim,
    write_metrics_csv,
    write_metrics_json,
)
from ambientmri.evaluation.sampleset import (
    radial_power_spectrum,
    radial_spectrum_distance,
    sampleset_report,
    sliced_wasserstein_distance,
    unmeasured_energy_fraction,
    zero_pixel_fraction,
)

__all__ = [
    "evaluate_folders",
    "evaluate_volumes",
    "nmse",
    "psnr",
    "radial_power_spectrum",
    "radial_spectrum_distance",
    "sampleset_report",
    "slice_metrics",
    "sliced_wasserstein_distance",
    "ssim",
    "unmeasured_energy_fraction",
    "write_metrics_csv",
    "write_metrics_json",
    "zero_pixel_fraction",
]
