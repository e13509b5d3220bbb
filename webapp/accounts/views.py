"""Account pages: login/logout (Django's views) and the API token page."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from webapp.accounts.services import api_token_get_or_create, api_token_rotate
from webapp.core.users import signed_in_user


@login_required
@require_http_methods(["GET", "POST"])
def api_token_page(request: HttpRequest) -> HttpResponse:
    """Show the caller's API token; POST regenerates it."""
    if request.method == "POST":
        api_token_rotate(signed_in_user(request))
        return redirect("accounts:api-token")
    token = api_token_get_or_create(signed_in_user(request))
    return render(request, "accounts/api_token.html", {"token": token.key})
