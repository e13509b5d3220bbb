"""Annotome's science core: OME-Zarr I/O, pyramids, meshing, morphometrics, segmentation.

Pure Python on numpy/zarr; never imports Django, so it runs from its own CLI
(``python -m pipeline ...``) and scales without the site.

OpenMP threads that wait sleep instead of spinning (``OMP_WAIT_POLICY=PASSIVE`` unless the
environment says otherwise; read once, when torch loads its OpenMP, so it is set here, before any
of the pipeline's modules imports torch). ``bench/threads.py`` on the 2-core machine, a width-4
U-Net training step on two 84^3 patches with two threads: 0.20-0.22 s alone either way; beside
one process busy with convolutions (a Celery worker shares its machine with the web server,
another run, a test suite) 0.56 s spinning against 0.43 s sleeping, and 1.42 s against 0.45 s
beside a training run: spinning threads wait for the one that lost its core.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
