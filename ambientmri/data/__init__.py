"""MRI data in and out: fastMRI HDF5, NIfTI, DICOM, synthetic scans, and the corrupted store.

Submodules are imported on use (``ambientmri.data.store``, ``ambientmri.data.fastmri``, ...) so that
``import ambientmri.data`` stays cheap.
"""
