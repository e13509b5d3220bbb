"""The site's user types for annotations, and the signed-in user of a request.

The site uses Django's own ``auth.User`` (``AUTH_USER_MODEL`` is not swapped). A request's user
is that or ``AnonymousUser``; views that require a signed-in caller (``IsAuthenticated``,
``login_required``) hand services a ``User`` through :func:`signed_in_user`.
"""

from __future__ import annotations

from typing import TypeAlias

from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

#: Whoever makes a request: a signed-in user or an anonymous visitor.
AnyUser: TypeAlias = User | AnonymousUser


def signed_in_user(request: HttpRequest) -> User:
    """The request's user, who must be signed in.

    Views call it after their permission check made sure of that, so the refusal (403) only
    guards a view whose check was forgotten.
    """
    user = request.user
    if not isinstance(user, User):
        raise PermissionDenied("Sign in first (session or API token).")
    return user
