"""Read-side queries for datasets; every permission decision about a dataset starts here."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Q, QuerySet
from django.utils import timezone

from webapp.datasets.models import Dataset, ShareLink, Visibility


def datasets_visible_to(user: AbstractBaseUser | AnonymousUser) -> QuerySet[Dataset]:
    """Datasets ``user`` may see: public ones, their own, and their teams' team datasets."""
    qs = Dataset.objects.all()
    if not user.is_authenticated:
        return qs.filter(visibility=Visibility.PUBLIC)
    if user.is_superuser:
        return qs
    return qs.filter(
        Q(visibility=Visibility.PUBLIC)
        | Q(owner=user)
        | Q(visibility=Visibility.TEAM, team__members=user)
    ).distinct()


def dataset_for_user(slug: str, user: AbstractBaseUser | AnonymousUser) -> Dataset | None:
    """The dataset called ``slug`` if ``user`` may see it, else None (callers answer 404)."""
    return datasets_visible_to(user).filter(slug=slug).first()


def datasets_editable_by(user: AbstractBaseUser | AnonymousUser) -> QuerySet[Dataset]:
    """Datasets ``user`` may change (owner or superuser)."""
    if not user.is_authenticated:
        return Dataset.objects.none()
    if user.is_superuser:
        return Dataset.objects.all()
    return Dataset.objects.filter(owner=user)


def share_link_active(token: str) -> ShareLink | None:
    """The active (not revoked, not expired) share link with ``token``, else None."""
    link = ShareLink.objects.select_related("dataset").filter(token=token).first()
    if link is None or not link.is_active(timezone.now()):
        return None
    return link
