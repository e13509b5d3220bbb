"""Account pages: login/logout (Django's views) and the API token page."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from webapp.accounts.services import api_token_get_or_create, api_token_rotate


@login_required
@require_http_methods(["GET", "POST"])
def api_token_page(request: HttpRequest) -> HttpResponse:
    """Show the caller's API token; POST regenerates it."""
    if request.method == "POST":
        api_token_rotate(request.user)
        return redirect("accounts:api-token")
    token = api_token_get_or_create(request.user)
    return render(request, "accounts/api_token.html", {"token": token.key})
