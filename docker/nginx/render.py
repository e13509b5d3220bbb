"""Render ``annotome.conf.template`` (an http-level nginx snippet) with concrete values.

Used by the nginx tests and the benchmark; in Docker, the official nginx image's envsubst step
does the same from environment variables. As a command it reads ``ANNOTOME_*`` variables and
prints the snippet: ``python docker/nginx/render.py > /etc/nginx/conf.d/annotome.conf``.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

TEMPLATE = Path(__file__).with_name("annotome.conf.template")
_PLACEHOLDER = re.compile(r"\$\{(ANNOTOME_[A-Z_]+)\}")

DEFAULTS: dict[str, str] = {
    "ANNOTOME_LISTEN": "80",
    "ANNOTOME_UPSTREAM": "127.0.0.1:8000",
    "ANNOTOME_DATA_ROOT": "/data",
    "ANNOTOME_STATIC_ROOT": "/static",
    "ANNOTOME_AUTH_CACHE_PATH": "/var/cache/nginx/annotome-auth",
    "ANNOTOME_AUTH_CACHE_SECONDS": "10",
    "ANNOTOME_SESSION_COOKIE": "sessionid",
    "ANNOTOME_CLIENT_MAX_BODY_SIZE": "8g",
}


def cors_origin_map(origins: list[str]) -> str:
    """Map body turning ``$http_origin`` into Access-Control-Allow-Origin ("*" allows any)."""
    if not origins or "*" in origins:
        return '    default "*";'
    lines = ['    default "";']
    for origin in origins:
        if not re.fullmatch(r"https?://[A-Za-z0-9.:\[\]-]+", origin):
            raise ValueError(f"Not an origin: {origin!r}")
        lines.append(f'    "{origin}" $http_origin;')
    return "\n".join(lines)


def render_nginx_conf(cors_origins: list[str] | None = None, **values: str | int) -> str:
    """The snippet with every placeholder filled.

    Keyword names are the placeholders without the ``ANNOTOME_`` prefix, in any case
    (``upstream="127.0.0.1:8000"``, ``data_root=...``); missing ones take DEFAULTS.
    """
    filled = dict(DEFAULTS)
    filled["ANNOTOME_CORS_ORIGIN_MAP"] = cors_origin_map(cors_origins or ["*"])
    for key, value in values.items():
        name = "ANNOTOME_" + key.upper()
        if name not in filled:
            raise KeyError(f"Unknown placeholder {name}")
        filled[name] = str(value)
    text = TEMPLATE.read_text()
    missing = sorted(set(_PLACEHOLDER.findall(text)) - set(filled))
    if missing:
        raise KeyError(f"No value for {', '.join(missing)}")
    return _PLACEHOLDER.sub(lambda m: filled[m.group(1)], text)


def main() -> None:
    values = {
        name.removeprefix("ANNOTOME_").lower(): os.environ[name]
        for name in DEFAULTS
        if name in os.environ
    }
    origins = [o.strip() for o in os.environ.get("ANNOTOME_DATA_CORS_ORIGINS", "*").split(",")]
    sys.stdout.write(render_nginx_conf(cors_origins=[o for o in origins if o], **values))


if __name__ == "__main__":
    main()
