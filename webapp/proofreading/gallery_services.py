"""Writes for the gallery and for opening one item in the queue (``?item=``).

The gallery hands out its pages through ``services.items_next`` (a page is ``count`` items) and
gives verdicts through ``services.verdicts_create_bulk``; what it adds is handing one named item
to a reviewer, so that a card opened in the queue view is shown there first, with the same
checks and locks as ``items_next`` (see ``services``' docstring on concurrency).
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from webapp.core.errors import DomainError
from webapp.proofreading import services
from webapp.proofreading.models import CampaignItem, Claim, ProofreadingCampaign
from webapp.proofreading.services import Handout


def item_claim(
    campaign: ProofreadingCampaign, user: User, item_id: int, *, round_: int
) -> Handout | None:
    """Hand item ``item_id`` to ``user`` for ``round_`` when they may decide it now: the
    campaign is open, they hold the round's role, the item is in that round with its detection,
    they have no live verdict on it, and it has a place left (or is already theirs). None
    otherwise: the queue page then shows the reviewer's queue as usual."""
    try:
        services._require_open(campaign)
        services._require_round_role(campaign, user, round_)
    except DomainError:
        return None
    with transaction.atomic():
        services._serialise_on_sqlite(campaign)
        item = (
            CampaignItem.objects.select_for_update(of=("self",))
            .filter(campaign=campaign, id=item_id)
            .select_related("detection")
            .first()
        )
        if item is None or item.detection is None:
            return None
        if item.status != services._round_status(round_):
            return None
        if services._has_live_verdict(item, user, round_) is not None:
            return None
        now = timezone.now()  # after the lock (see services)
        expires = now + timedelta(seconds=campaign.claim_seconds)
        mine = Claim.objects.filter(item=item, reviewer=user, round=round_).first()
        if mine is not None and mine.expires_at > now:
            mine.expires_at = expires
            mine.save(update_fields=["expires_at"])
            return Handout(item, mine)
        if services._places_taken(item, round_, user, now) >= services._capacity(campaign, round_):
            return None
        claim, _ = Claim.objects.update_or_create(
            item=item,
            reviewer=user,
            round=round_,
            defaults={"campaign": campaign, "handed_out": now, "expires_at": expires},
        )
        return Handout(item, claim)
