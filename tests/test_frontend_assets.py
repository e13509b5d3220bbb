"""The templates' static files are what scripts/build_frontend.sh builds, loaded the right way."""

from __future__ import annotations

import json
import re
from pathlib import Path

from django.conf import settings
from django.contrib.staticfiles import finders

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = sorted(REPO_ROOT.glob("webapp/**/templates/**/*.html"))
STATIC_TAG = re.compile(r"""\{%\s*static\s+['"]([^'"]+)['"]\s*%\}""")
SCRIPT_TAG = re.compile(r"""<script\b([^>]*)\bsrc="\{%\s*static\s+'([^']+)'\s*%\}"([^>]*)>""")


def test_every_static_file_a_template_names_is_found(built_frontend: Path) -> None:
    named = {name: path for path in TEMPLATES for name in STATIC_TAG.findall(path.read_text())}
    assert {"site.css", "viewer.css", "viewer.js", "import.js", "share_links.js"} <= set(named)
    missing = {name: str(path) for name, path in named.items() if not finders.find(name)}
    assert not missing, f"templates name static files that are not there: {missing}"
    # Served from the build, not from the sources.
    assert Path(finders.find("viewer.js")).parent == built_frontend  # type: ignore[arg-type]
    assert [built_frontend] == settings.STATICFILES_DIRS


def test_page_scripts_are_modules_and_their_chunks_are_built(built_frontend: Path) -> None:
    scripts = [m for path in TEMPLATES for m in SCRIPT_TAG.findall(path.read_text())]
    assert scripts
    for before, name, after in scripts:
        # The entries import the shared chunk: a classic <script> would fail to parse them.
        assert 'type="module"' in before + after, f"{name} must be loaded with type=module"
    manifest = json.loads((built_frontend / ".vite" / "manifest.json").read_text())
    entries = {v["file"]: v for v in manifest.values() if v.get("isEntry")}
    assert {"viewer.js", "import.js", "share_links.js", "site.css", "viewer.css"} <= set(entries)
    for entry in entries.values():
        for chunk in entry.get("imports", []):
            chunk_file = built_frontend / manifest[chunk]["file"]
            assert chunk_file.is_file()
            assert f'"./{manifest[chunk]["file"]}"' in (built_frontend / entry["file"]).read_text()


def test_sources_are_not_served() -> None:
    assert finders.find("src/lib/api.ts") is None
    assert finders.find("package.json") is None
