"""The science core must stay independent of the web layer."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_pipeline_never_imports_django() -> None:
    code = (
        "import importlib, pkgutil, sys\n"
        "import pipeline\n"
        "for m in pkgutil.walk_packages(pipeline.__path__, 'pipeline.'):\n"
        "    if m.name != 'pipeline.__main__':\n"
        "        importlib.import_module(m.name)\n"
        "bad = sorted(n for n in sys.modules\n"
        "             if n == 'django' or n.startswith(('django.', 'webapp')))\n"
        "print(len([n for n in sys.modules if n.startswith('pipeline')]))\n"
        "assert not bad, bad\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) > 1  # the walk really imported modules


def test_pipeline_sources_do_not_mention_django() -> None:
    offenders = [
        p.name
        for p in (ROOT / "pipeline").rglob("*.py")
        if "import django" in p.read_text()
        or "from django" in p.read_text()
        or "from webapp" in p.read_text()
        or "import webapp" in p.read_text()
    ]
    assert offenders == []
