"""Who may read a dataset's files: one decision for the embedded data views and nginx's auth check.

The rule is ``Dataset.objects.restrict(user, "view")``'s (``models.DatasetQuerySet.rules``), read
here on cached facts instead of by query; an active share link (``share_link_is_active``) reads
exactly its own dataset. ``tests/webapp/test_access_agreement.py`` checks that this check and
the queries agree for every role and visibility. Anything refused is "not found", never
"forbidden", so private datasets do not leak their existence.

Chunk requests are the hot path, so the facts behind a decision (a slug's id, visibility, owner
and team; a share token's dataset and expiry; a user's team ids; the user behind a session
cookie) are kept in a small per-process cache for ``DATA_ACCESS_CACHE_SECONDS`` (default 2 s).
Saving or deleting a dataset, share link or user, changing team members, or logging out clears
it in the process that made the change; other processes see the change when their entry
expires, so revocation, visibility and membership changes take effect within that time.
Expiry of a share link is checked against the clock on every request, never cached.
The nginx auth endpoint reads without this cache: nginx caches its answers itself.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar, cast

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.contrib.auth.signals import user_logged_out
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.utils import timezone

from webapp.accounts.models import Team
from webapp.core.permissions import ANONYMOUS, Principal, rules_allow
from webapp.core.users import AnyUser
from webapp.datasets.models import Dataset, DatasetQuerySet, ShareLink, share_link_is_active

DEFAULT_CACHE_SECONDS = 2.0
_CACHE_MAX_ENTRIES = 20_000
_MISSING = object()
T = TypeVar("T")


@dataclass(frozen=True)
class DatasetFacts:
    """What an access decision needs to know about a dataset."""

    id: int
    slug: str
    root: Path
    visibility: str
    owner_id: int
    team_id: int | None


@dataclass(frozen=True)
class ShareFacts:
    dataset_id: int
    revoked_at: datetime | None
    expires_at: datetime | None


@dataclass(frozen=True)
class DataAccess:
    """A granted read of one dataset; ``shared_cacheable`` when any cache may keep the bytes."""

    dataset: DatasetFacts
    shared_cacheable: bool


class _TTLCache:
    def __init__(self) -> None:
        self._entries: dict[tuple[str, Any], tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get_or_load(self, key: tuple[str, Any], load: Callable[[], Any], ttl: float) -> Any:
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is not None and entry[0] > now:
            return entry[1]
        value = load()
        with self._lock:
            if len(self._entries) >= _CACHE_MAX_ENTRIES:
                self._entries.clear()
            self._entries[key] = (now + ttl, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_cache = _TTLCache()


def data_access_cache_clear(**_: Any) -> None:
    """Forget every cached fact in this process (also a signal receiver)."""
    _cache.clear()


post_save.connect(data_access_cache_clear, sender=Dataset, dispatch_uid="data_access_ds_save")
post_delete.connect(data_access_cache_clear, sender=Dataset, dispatch_uid="data_access_ds_del")
post_save.connect(data_access_cache_clear, sender=ShareLink, dispatch_uid="data_access_sl_save")
post_delete.connect(data_access_cache_clear, sender=ShareLink, dispatch_uid="data_access_sl_del")
m2m_changed.connect(
    data_access_cache_clear, sender=Team.members.through, dispatch_uid="data_access_team"
)
post_save.connect(data_access_cache_clear, sender=get_user_model(), dispatch_uid="data_access_u")
user_logged_out.connect(data_access_cache_clear, dispatch_uid="data_access_logout")


def _ttl() -> float:
    return float(getattr(settings, "DATA_ACCESS_CACHE_SECONDS", DEFAULT_CACHE_SECONDS))


def _cached(key: tuple[str, Any], load: Callable[[], T], use_cache: bool) -> T:
    ttl = _ttl()
    if not use_cache or ttl <= 0:
        return load()
    # The key's kind ("dataset", "share"...) names one loader, so the cached value is a T.
    return cast(T, _cache.get_or_load(key, load, ttl))


def dataset_facts(slug: str, use_cache: bool = True) -> DatasetFacts | None:
    def load() -> DatasetFacts | None:
        ds = (
            Dataset.objects.filter(slug=slug)
            .only("id", "slug", "root_dir", "visibility", "owner_id", "team_id")
            .first()
        )
        if ds is None:
            return None
        return DatasetFacts(ds.id, ds.slug, ds.root, ds.visibility, ds.owner_id, ds.team_id)

    return _cached(("dataset", slug), load, use_cache)


def _share_facts(token: str, use_cache: bool) -> ShareFacts | None:
    def load() -> ShareFacts | None:
        row = (
            ShareLink.objects.filter(token=token)
            .values_list("dataset_id", "revoked_at", "expires_at")
            .first()
        )
        return None if row is None else ShareFacts(*row)

    return _cached(("share", token), load, use_cache)


def _team_ids(user_id: int, use_cache: bool) -> frozenset[int]:
    def load() -> frozenset[int]:
        through = Team.members.through
        return frozenset(through.objects.filter(user_id=user_id).values_list("team_id", flat=True))

    return _cached(("teams", user_id), load, use_cache)


def _session_user(user: AnyUser | None) -> tuple[int, bool] | None:
    if not isinstance(user, User):  # None or anonymous (a User is always authenticated)
        return None
    return int(user.pk), bool(user.is_superuser)


def _dataset_view_allowed(facts: DatasetFacts, principal: Principal) -> bool:
    return rules_allow(DatasetQuerySet.rules, "view", facts, principal)


def data_access_for_user(
    slug: str, user: AnyUser | None, use_cache: bool = True, session_key: str | None = None
) -> DataAccess | None:
    """Access to dataset ``slug`` for ``user`` (a lazy ``request.user`` is fine), or None.

    The rule is first read for an anonymous visitor: what anyone may read needs no session
    lookup, and any cache may keep its bytes. With ``session_key`` (the session cookie) the user
    behind it is cached too, so a signed-in user's chunks cost no session and user queries
    either; a logout applies within the cache time (login and logout change the session key).
    """
    facts = dataset_facts(slug, use_cache)
    if facts is None:
        return None
    if _dataset_view_allowed(facts, ANONYMOUS):
        return DataAccess(facts, shared_cacheable=True)
    if session_key:
        who = _cached(("session", session_key), lambda: _session_user(user), use_cache)
    else:
        who = _session_user(user)
    if who is None:
        return None
    user_id, is_superuser = who
    principal = Principal(user_id, is_superuser, lambda: _team_ids(user_id, use_cache))
    if _dataset_view_allowed(facts, principal):
        return DataAccess(facts, shared_cacheable=False)
    return None


def data_access_for_share_token(token: str, slug: str, use_cache: bool = True) -> DataAccess | None:
    """Access granted by share link ``token`` to dataset ``slug``: only its own dataset, only
    while it is neither revoked nor expired."""
    if not token:
        return None
    share = _share_facts(token, use_cache)
    now = timezone.now()
    if share is None or not share_link_is_active(share.revoked_at, share.expires_at, now):
        return None
    facts = dataset_facts(slug, use_cache)
    if facts is None or facts.id != share.dataset_id:
        return None
    return DataAccess(facts, shared_cacheable=False)


def data_access(
    slug: str,
    user: AnyUser | None,
    share_token: str | None = None,
    use_cache: bool = True,
    session_key: str | None = None,
) -> DataAccess | None:
    """The one decision: by share token when the URL carries one, else by the user."""
    if share_token:
        return data_access_for_share_token(share_token, slug, use_cache)
    return data_access_for_user(slug, user, use_cache, session_key)


def data_cache_control(access: DataAccess) -> str:
    """Cache-Control for a dataset's files: shared caches only for public data."""
    max_age = int(getattr(settings, "DATA_CACHE_MAX_AGE", 60))
    scope = "public" if access.shared_cacheable else "private"
    return f"{scope}, max-age={max_age}"
