"""Signals other apps listen to, so that ``datasets`` needs to know none of them."""

from __future__ import annotations

from django.dispatch import Signal

#: Sent (``dataset=...``) after a dataset's image or label layers were created or replaced and
#: the transaction committed, from the process that did the work (a Celery worker or a
#: management command). The viewer re-renders the dataset's thumbnail on it. ``layers=[...]``,
#: when sent, names the layers that changed (the others are as they were); absent, any may have.
layers_changed = Signal()
