"""One permission base for every app: rules per action, querysets restricted by them, API views.

A model that belongs to someone declares, once, who may do what to its rows::

    class DatasetQuerySet(RestrictedQuerySet):
        rules = {
            "view": (FieldIs("visibility", "public"), Owner("owner"), TeamMember("team", ...)),
            "change": (Owner("owner"),),
        }

    Dataset.objects.restrict(user, "view")     # NetBox's style: a queryset of what user may view

A rule is a tuple of grants, any of which allows; superusers may do everything. Each grant reads
as a ``Q`` (for querysets) and as a test on one row's values (for a hot path that caches facts
instead of querying, like the data-serving access check), so the rule itself exists once and
``tests/webapp/test_access_agreement.py`` checks that both readings agree.

API views build on :class:`RestrictedAPIView`: the queryset holds what the caller may *view*
(anything else answers 404, so private objects do not leak their existence), and each HTTP
method names the action it performs (``method_actions``), checked on the object (403, or 401 for
an anonymous caller, when the caller may see it but not do this).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TypeVar

from django.contrib.auth.models import User
from django.db import models
from django.db.models import Q
from rest_framework import generics
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.views import APIView

from webapp.core.errors import NotFound
from webapp.core.users import AnyUser

VIEW = "view"
CHANGE = "change"
DELETE = "delete"

M = TypeVar("M", bound=models.Model)
#: The model of another object a view looks up (``get_restricted``).
Other = TypeVar("Other", bound=models.Model)


def _no_teams() -> frozenset[int]:
    return frozenset()


@dataclass(frozen=True)
class Principal:
    """Who asks, reduced to what grants read. ``user_id`` None is an anonymous visitor.

    ``team_ids`` is called only when a grant needs it (it may query), so callers on a hot path
    can pass a cached loader.
    """

    user_id: int | None
    is_superuser: bool = False
    team_ids: Callable[[], frozenset[int]] = field(default=_no_teams, compare=False)

    @property
    def is_authenticated(self) -> bool:
        return self.user_id is not None


ANONYMOUS = Principal(None)


def principal_of(
    user: AnyUser | None, team_ids: Callable[[], frozenset[int]] | None = None
) -> Principal:
    """The principal of a Django user (anonymous users and None give ``ANONYMOUS``)."""
    if not isinstance(user, User):  # a User is always authenticated
        return ANONYMOUS
    if team_ids is None:
        uid = user.pk

        def team_ids() -> frozenset[int]:
            return frozenset(user.teams.values_list("pk", flat=True)) if uid else frozenset()

    return Principal(int(user.pk), bool(user.is_superuser), team_ids)


class Grant(Protocol):
    """One way to be allowed: as a queryset filter and as a test on a row's values."""

    def q(self, principal: Principal, model: type[models.Model]) -> Q | None:
        """Rows this grant opens to ``principal``; None when it opens none."""

    def allows(self, row: Any, principal: Principal) -> bool:
        """Whether this grant opens ``row`` (a model instance or facts with the same attributes)."""


@dataclass(frozen=True)
class FieldIs:
    """Open to anyone where ``field`` equals ``value`` (e.g. public datasets)."""

    field: str
    value: Any

    def q(self, principal: Principal, model: type[models.Model]) -> Q | None:
        return Q(**{self.field: self.value})

    def allows(self, row: Any, principal: Principal) -> bool:
        return bool(getattr(row, self.field) == self.value)


@dataclass(frozen=True)
class Owner:
    """Open to the user that the foreign key ``field`` names."""

    field: str = "owner"

    def q(self, principal: Principal, model: type[models.Model]) -> Q | None:
        if principal.user_id is None:
            return None
        return Q(**{f"{self.field}_id": principal.user_id})

    def allows(self, row: Any, principal: Principal) -> bool:
        owner_id = getattr(row, f"{self.field}_id")
        return principal.user_id is not None and owner_id == principal.user_id


@dataclass(frozen=True)
class TeamMember:
    """Open to the members of the team that ``field`` names, where ``when`` holds.

    ``members`` is the team model's many-to-many field to users. The queryset form uses a
    subquery (not a join), so rows never repeat and need no ``distinct()``.
    """

    field: str = "team"
    members: str = "members"
    when: tuple[tuple[str, Any], ...] = ()

    def q(self, principal: Principal, model: type[models.Model]) -> Q | None:
        if principal.user_id is None:
            return None
        team_model = model._meta.get_field(self.field).related_model
        assert isinstance(team_model, type) and issubclass(team_model, models.Model)
        teams = team_model._default_manager.filter(**{self.members: principal.user_id})
        return Q(**dict(self.when)) & Q(**{f"{self.field}__in": teams.values("pk")})

    def allows(self, row: Any, principal: Principal) -> bool:
        if principal.user_id is None:
            return False
        if any(getattr(row, name) != value for name, value in self.when):
            return False
        team_id = getattr(row, f"{self.field}_id")
        return team_id is not None and team_id in principal.team_ids()


Rules = Mapping[str, tuple[Grant, ...]]


def rules_q(rules: Rules, action: str, principal: Principal, model: type[models.Model]) -> Q | None:
    """The OR of the action's grants for ``principal`` (None: no row); superusers are not here."""
    result: Q | None = None
    for grant in _grants(rules, action):
        q = grant.q(principal, model)
        if q is not None:
            result = q if result is None else result | q
    return result


def rules_allow(rules: Rules, action: str, row: Any, principal: Principal) -> bool:
    """Whether ``principal`` may do ``action`` to ``row``: the same rule, read in Python."""
    grants = _grants(rules, action)
    return principal.is_superuser or any(g.allows(row, principal) for g in grants)


def _grants(rules: Rules, action: str) -> tuple[Grant, ...]:
    try:
        return rules[action]
    except KeyError:
        raise ValueError(f"unknown action {action!r}; known: {', '.join(sorted(rules))}")


class RestrictedQuerySet(models.QuerySet[M]):
    """A queryset whose model declares ``rules``; ``restrict(user, action)`` applies them."""

    rules: ClassVar[Rules] = {}

    def restrict(
        self, user: AnyUser | Principal | None, action: str = VIEW
    ) -> RestrictedQuerySet[M]:
        """The rows ``user`` (a Django user, anonymous, or a Principal) may do ``action`` to."""
        principal = user if isinstance(user, Principal) else principal_of(user)
        if action not in self.rules:
            _grants(self.rules, action)  # raises with the known actions
        if principal.is_superuser:
            return self.all()
        q = rules_q(self.rules, action, principal, self.model)
        return self.none() if q is None else self.filter(q)

    def allows(self, user: AnyUser | Principal | None, action: str, obj: models.Model) -> bool:
        """Whether ``user`` may do ``action`` to ``obj`` (asks the database)."""
        return self.restrict(user, action).filter(pk=obj.pk).exists()


class RestrictedByParent(RestrictedQuerySet[M]):
    """Rows whose permissions are their parent's: ``parent_actions`` maps an action on the row
    to the action needed on the parent named by ``parent_field`` (e.g. a share link's dataset).

    ``parent_field`` may be a path through foreign keys (``"layer__dataset"``): the parent is
    then the model at its end, e.g. the dataset of a detection's layer.
    """

    parent_field: ClassVar[str] = ""
    parent_actions: ClassVar[Mapping[str, str]] = {}

    def restrict(
        self, user: AnyUser | Principal | None, action: str = VIEW
    ) -> RestrictedQuerySet[M]:
        if action not in self.parent_actions:
            known = ", ".join(sorted(self.parent_actions))
            raise ValueError(f"unknown action {action!r}; known: {known}")
        parent_model: Any = self.model
        for name in self.parent_field.split("__"):
            parent_model = parent_model._meta.get_field(name).related_model
        assert isinstance(parent_model, type) and issubclass(parent_model, models.Model)
        parents = parent_model._default_manager.all()
        assert isinstance(parents, RestrictedQuerySet)
        allowed = parents.restrict(user, self.parent_actions[action]).values("pk")
        return self.filter(**{f"{self.parent_field}__in": allowed})


# ------------------------------------------------------------------------------------- the API


class MayDoAction(BasePermission):
    """The caller may do the view's action for this method to the object.

    Anything but viewing needs a signed-in caller (401 before any lookup, so an anonymous
    caller learns nothing about which objects exist). Viewing needs no object check: the view's
    queryset already holds only what the caller may see.
    """

    message = "Sign in first (session or API token)."

    def has_permission(self, request: Request, view: APIView) -> bool:
        action = _restricted_view(view).action_for(request.method)
        return action == VIEW or bool(request.user and request.user.is_authenticated)

    def has_object_permission(self, request: Request, view: APIView, obj: Any) -> bool:
        restricted = _restricted_view(view)
        action = restricted.action_for(request.method)
        if action == VIEW:
            return True
        if type(obj)._default_manager.all().allows(request.user, action, obj):
            return True
        self.message = restricted.denied_message(action)
        return False


def _restricted_view(view: APIView) -> RestrictedAPIView[Any]:
    if not isinstance(view, RestrictedAPIView):
        raise TypeError(f"MayDoAction needs a RestrictedAPIView, not {type(view).__name__}")
    return view


class RestrictedAPIView(generics.GenericAPIView[M]):
    """Base of API views on restricted models: each method states its action.

    ``queryset`` is restricted to what the caller may view (404 for anything else); the object's
    action (``method_actions[request.method]``) is checked by :class:`MayDoAction` (403 for a
    caller who may see it but not do this, 401 when not signed in). ``get_restricted`` does the
    same for another object the URL names, e.g. the dataset of ``/datasets/<slug>/share-links/``.
    """

    permission_classes = [MayDoAction]
    method_actions: ClassVar[Mapping[str, str]] = {
        "GET": VIEW,
        "HEAD": VIEW,
        "OPTIONS": VIEW,
        "POST": CHANGE,
        "PUT": CHANGE,
        "PATCH": CHANGE,
        "DELETE": DELETE,
    }
    denied_messages: ClassVar[Mapping[str, str]] = {}

    def action_for(self, method: str | None) -> str:
        return self.method_actions.get((method or "GET").upper(), CHANGE)

    def denied_message(self, action: str) -> str:
        return self.denied_messages.get(action, f"You may not {action} this.")

    def get_queryset(self) -> models.QuerySet[M]:
        qs = super().get_queryset()
        assert isinstance(qs, RestrictedQuerySet), "queryset must be a RestrictedQuerySet"
        return qs.restrict(self.request.user, VIEW)

    def get_restricted(
        self,
        queryset: RestrictedQuerySet[Other],
        action: str,
        not_found: str = "No such object, or you may not see it.",
        **lookup: Any,
    ) -> Other:
        """The object of ``queryset`` matching ``lookup`` if the caller may do ``action`` to it.

        404 (``not_found``) when the caller may not see it, 403 (401 when anonymous) when they
        may see it but not do ``action``.
        """
        assert isinstance(queryset, RestrictedQuerySet), "queryset must be a RestrictedQuerySet"
        user = self.request.user
        obj = queryset.restrict(user, VIEW).filter(**lookup).first()
        if obj is None:
            raise NotFound(not_found)
        if action != VIEW and not queryset.allows(user, action, obj):
            self.permission_denied(self.request, self.denied_message(action))
        return obj

    def allows_anonymous(self, method: str) -> bool:
        """Whether an anonymous caller may get a 2xx answer (the schema's security says so)."""
        return self.action_for(method) == VIEW and not any(
            isinstance(p, IsAuthenticated) for p in self.get_permissions()
        )


class RestrictedActionView(RestrictedAPIView[M]):
    """A POST that acts on one object (cancel a job, make a version current...): signed-in
    callers who may change the object; OPTIONS for those who see it."""

    permission_classes = [IsAuthenticated, MayDoAction]
    method_actions: ClassVar[Mapping[str, str]] = {"OPTIONS": VIEW, "POST": CHANGE}
