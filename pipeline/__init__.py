"""Annotome's science core: OME-Zarr I/O, pyramids, meshing, morphometrics, segmentation.

Pure Python on numpy/zarr; never imports Django, so it runs from its own CLI
(``python -m pipeline ...``) and scales without the site.
"""
