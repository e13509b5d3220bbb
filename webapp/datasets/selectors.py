"""Read-side queries for datasets. Who may see or change what is ``Dataset.objects.restrict``'s
rule (``models.DatasetQuerySet``); these name its common uses."""

from __future__ import annotations

from django.db.models import QuerySet

from webapp.core.users import AnyUser
from webapp.datasets.models import Dataset, ShareLink


def datasets_visible_to(user: AnyUser) -> QuerySet[Dataset]:
    """Datasets ``user`` may see: public ones, their own, and their teams' team datasets."""
    return Dataset.objects.restrict(user, "view")


def dataset_for_user(slug: str, user: AnyUser) -> Dataset | None:
    """The dataset called ``slug`` if ``user`` may see it, else None (callers answer 404)."""
    return Dataset.objects.restrict(user, "view").filter(slug=slug).first()


def datasets_editable_by(user: AnyUser) -> QuerySet[Dataset]:
    """Datasets ``user`` may change (owner or superuser)."""
    return Dataset.objects.restrict(user, "change")


def share_link_active(token: str) -> ShareLink | None:
    """The active (not revoked, not expired) share link with ``token``, else None."""
    return ShareLink.objects.active().select_related("dataset").filter(token=token).first()


def dataset_for_share_token(token: str, slug: str) -> Dataset | None:
    """Dataset ``slug`` if the active share link ``token`` is for it (a link opens one dataset)."""
    link = share_link_active(token)
    return link.dataset if link is not None and link.dataset.slug == slug else None
