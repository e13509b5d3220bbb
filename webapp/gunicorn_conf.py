"""gunicorn settings, embedded and production: ``gunicorn -c webapp/gunicorn_conf.py``.

Worker class: gthread (a few processes, each with a pool of OS threads). Not gevent: its
monkey-patching turns threads into greenlets of one OS thread, so zarr-python's asyncio I/O loop
(thumbnails, uploads, OME-Zarr registration) ran in the same thread as the request greenlets;
zarr then failed with "Calling sync() from within a running loop" and Django refused every later
database call of that worker as async-unsafe until it was restarted. With real threads an event
loop stays in the thread that started it. Neuroglancer's held-open ``/events/`` stream is answered
inside the browser (``webapp/viewer/neuroglancer_client.py`` injects a shim into the client), so an
open viewer costs no worker or thread; idle keep-alive connections wait in gthread's poller, not
in a thread. Measured with bench/serve.py (figures in bench/README.md).

Environment: ``PORT`` (8000) and ``HOST`` (127.0.0.1; 0.0.0.0 in containers) or ``GUNICORN_BIND``;
``WEB_CONCURRENCY`` worker processes (default: CPU count, at most 4); ``GUNICORN_THREADS``
threads per worker (8); ``GUNICORN_WORKER_CLASS`` (gthread; sync also works; gevent and eventlet
are refused); ``GUNICORN_WORKER_CONNECTIONS`` (1000 per worker), ``GUNICORN_TIMEOUT`` (120 s),
``GUNICORN_KEEPALIVE`` (5 s), ``GUNICORN_ACCESSLOG`` ("-" for stdout; off by default, nginx logs in
production), ``GUNICORN_CONTROL_SOCKET`` (a path to enable ``gunicornc``; off by default),
``GUNICORN_REUSE_PORT`` (0; 1: a listening socket per worker, the kernel spreads connections),
``DATABASE_CONN_MAX_AGE`` (60 here: persistent database connections, one per worker thread),
``GUNICORN_SENDFILE`` (1: the kernel's sendfile for data files), ``FORWARDED_ALLOW_IPS`` (read by
gunicorn itself; set it to nginx's address in containers).
"""

from __future__ import annotations

import multiprocessing
import os

#: Worker classes that monkey-patch the standard library: zarr's asyncio I/O breaks under them.
PATCHING_WORKER_CLASSES = frozenset({"gevent", "eventlet", "tornado"})


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw else default


def worker_class_from_env() -> str:
    """The configured worker class; a patching one is refused with the reason."""
    name = os.environ.get("GUNICORN_WORKER_CLASS", "").strip() or "gthread"
    if name.lower() in PATCHING_WORKER_CLASSES or "gevent" in name or "eventlet" in name:
        raise SystemExit(
            f"GUNICORN_WORKER_CLASS={name} is not supported: it monkey-patches threads, and "
            "zarr-python's asyncio I/O then breaks the worker. Use gthread (the default) or sync."
        )
    return name


# Persistent database connections for the site's threads (webapp/settings/base.py): each
# worker thread keeps its connection for a minute instead of opening one per request. Set in
# the environment the workers inherit (they load the settings after the fork).
os.environ.setdefault("DATABASE_CONN_MAX_AGE", "60")

wsgi_app = "webapp.wsgi:application"
bind = [
    os.environ.get("GUNICORN_BIND")
    or f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
]
worker_class = worker_class_from_env()
workers = _int("WEB_CONCURRENCY", min(multiprocessing.cpu_count(), 4))
threads = _int("GUNICORN_THREADS", 8)
worker_connections = _int("GUNICORN_WORKER_CONNECTIONS", 1000)
timeout = _int("GUNICORN_TIMEOUT", 120)
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 10)
keepalive = _int("GUNICORN_KEEPALIVE", 5)
# SO_REUSEPORT: each worker listens on its own socket and the kernel spreads new connections
# over them, instead of whichever worker wakes first taking a burst of them.
reuse_port = os.environ.get("GUNICORN_REUSE_PORT", "0") == "1"
# Data files go out through the kernel's sendfile() (the response wraps a file descriptor).
sendfile = os.environ.get("GUNICORN_SENDFILE", "1") == "1"
accesslog = os.environ.get("GUNICORN_ACCESSLOG") or None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOGLEVEL", "info")
# gunicorn >= 25 opens a control socket at one fixed per-user path, which several gunicorns on
# one machine (tests, bench, a dev server) would fight over: only where asked for.
control_socket = os.environ.get("GUNICORN_CONTROL_SOCKET") or None
control_socket_disable = control_socket is None
# Each worker loads the app itself, after the fork: no state shared by accident.
preload_app = False


def post_worker_init(worker: object) -> None:
    """Import every view now (pandas, scipy, zarr, ...), then freeze what exists for the GC.

    Otherwise the first page a worker serves imports them, for seconds in which that request
    (and, holding the GIL, its sibling threads) waits; and each full collection afterwards would
    walk those long-lived objects again (30-100 ms pauses measured with all of them in the heap).
    """
    import gc

    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 (imports the URLconf and every view module)
    gc.collect()
    gc.freeze()
