"""``manage.py ensure_demo_admin``: make sure a superuser exists for the embedded site.

- No such user: create it with ``ANNOTOME_ADMIN_PASSWORD`` or a generated password, print
  ``Demo admin: username admin, password XXX`` and keep a generated password in
  ``var/demo_admin_password.txt`` (mode 600) so it can be looked up later.
- The user exists and ``ANNOTOME_ADMIN_PASSWORD`` is set: the password is reset to it (and printed).
- The user exists and no variable is set: nothing changes; the username is printed with where
  the password came from.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

PASSWORD_ENV = "ANNOTOME_ADMIN_PASSWORD"


def password_file() -> Path:
    return Path(getattr(settings, "VAR_DIR", settings.BASE_DIR / "var")) / "demo_admin_password.txt"


class Command(BaseCommand):
    help = "Create the demo superuser (credentials printed) or report that it exists."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="admin")

    def handle(self, *args: Any, **options: Any) -> None:
        username = options["username"]
        from_env = os.environ.get(PASSWORD_ENV) or None
        users = get_user_model().objects
        with transaction.atomic():
            user = users.filter(username=username).first()
            if user is None:
                password = from_env or secrets.token_urlsafe(12)
                users.create_superuser(username=username, email="", password=password)
                if from_env is None:
                    self._remember(password)
                else:
                    password_file().unlink(missing_ok=True)
                self.stdout.write(f"Demo admin: username {username}, password {password}")
                return
            if from_env is not None:
                if not user.check_password(from_env):
                    user.set_password(from_env)
                if not (user.is_superuser and user.is_staff and user.is_active):
                    user.is_superuser = user.is_staff = user.is_active = True
                user.save()
                password_file().unlink(missing_ok=True)  # no longer the password
                self.stdout.write(
                    f"Demo admin: username {username}, password {from_env} (from {PASSWORD_ENV})"
                )
                return
        hint = (
            f"see {password_file()}"
            if password_file().exists()
            else f"set {PASSWORD_ENV} and run this again to reset it"
        )
        self.stdout.write(f"Demo admin: username {username} (password set earlier; {hint})")

    def _remember(self, password: str) -> None:
        path = password_file()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(password + "\n")
        except OSError:
            pass  # printing it is enough
