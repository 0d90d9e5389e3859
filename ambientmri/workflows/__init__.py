"""The workflow layer: what the CLI, the demo, the study and notebooks share above the science core.

:mod:`~ambientmri.workflows.stages` is the one stage cache (fingerprinted, atomic, resumable
stages) used by the demo and the study.
"""

from ambientmri.workflows.stages import STAGE_FILE, StageCache, fingerprint

__all__ = ["STAGE_FILE", "StageCache", "fingerprint"]
