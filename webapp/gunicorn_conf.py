"""gunicorn settings, embedded and production: ``gunicorn -c webapp/gunicorn_conf.py``.

Worker class: gevent. Neuroglancer holds ``/events/`` open for as long as a viewer is open; with
sync or gthread workers each open viewer would pin a worker or thread, with gevent it costs one
greenlet, and client connections stay alive. Measured with bench/serve.py (2 cores, 218 KB
chunks, wrk at 32 connections; figures in bench/README.md): on a quiet machine gevent serves
~4,000 chunks/s with p99 ~30 ms, sync workers ~3,300/s with p99 ~12 ms; on a loaded machine
gevent's tail grows much more than sync's (a descheduled gevent worker holds all its in-flight
requests). In production nginx serves the chunks, so gevent's tail only touches the embedded
server; ``GUNICORN_WORKER_CLASS=sync`` suits a data-only deployment. Each worker imports every
view and freezes its start-up objects for the GC before it accepts (``post_worker_init``).

Environment: ``PORT`` (8000) and ``HOST`` (127.0.0.1; 0.0.0.0 in containers) or ``GUNICORN_BIND``;
``WEB_CONCURRENCY`` worker processes (default: CPU count, at most 4);
``GUNICORN_WORKER_CLASS`` (gevent), ``GUNICORN_WORKER_CONNECTIONS`` (1000 per worker),
``GUNICORN_THREADS`` (gthread only), ``GUNICORN_TIMEOUT`` (120 s), ``GUNICORN_KEEPALIVE`` (5 s),
``GUNICORN_ACCESSLOG`` ("-" for stdout; off by default, nginx logs in production),
``GUNICORN_CONTROL_SOCKET`` (a path to enable ``gunicornc``; off by default),
``GUNICORN_YIELD_PER_REQUEST`` (1: gevent yields before each request, for fair turns),
``GUNICORN_REUSE_PORT`` (0; 1: a listening socket per worker, the kernel spreads connections),
``FORWARDED_ALLOW_IPS`` (read by gunicorn itself; set it to nginx's address in containers).
Keep ``DATABASE_CONN_MAX_AGE`` at 0 with gevent: persistent connections are per greenlet and
would leak.
"""

from __future__ import annotations

import multiprocessing
import os


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw else default


wsgi_app = "webapp.wsgi:application"
bind = [
    os.environ.get("GUNICORN_BIND")
    or f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
]
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gevent")
workers = _int("WEB_CONCURRENCY", min(multiprocessing.cpu_count(), 4))
worker_connections = _int("GUNICORN_WORKER_CONNECTIONS", 1000)
threads = _int("GUNICORN_THREADS", 1)
timeout = _int("GUNICORN_TIMEOUT", 120)
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 5)  # open event streams would hold it
keepalive = _int("GUNICORN_KEEPALIVE", 5)
# SO_REUSEPORT: each worker listens on its own socket and the kernel spreads new connections
# over them, instead of whichever worker wakes first taking a burst of them.
reuse_port = os.environ.get("GUNICORN_REUSE_PORT", "0") == "1"
# gevent's socket.sendfile() is a Python loop of 8 KB reads and sends; writing the response's
# 256 KB blocks is faster there. Sync workers get the kernel's sendfile().
sendfile = os.environ.get("GUNICORN_SENDFILE", "1" if worker_class == "sync" else "0") == "1"
accesslog = os.environ.get("GUNICORN_ACCESSLOG") or None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOGLEVEL", "info")
# gunicorn >= 25 opens a control socket at one fixed per-user path, which several gunicorns on
# one machine (tests, bench, a dev server) would fight over: only where asked for.
control_socket = os.environ.get("GUNICORN_CONTROL_SOCKET") or None
control_socket_disable = control_socket is None
# The Django app is loaded in each worker after gevent has patched the standard library.
preload_app = False


def post_worker_init(worker: object) -> None:
    """Import every view now (pandas, scipy, zarr, ...), then freeze what exists for the GC.

    Otherwise the first page a worker serves imports them, for seconds in which, under gevent,
    every other request of that worker waits; and each full collection afterwards would walk
    those long-lived objects again (30-100 ms pauses measured with all of them in the heap).
    """
    import gc

    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 (imports the URLconf and every view module)
    gc.collect()
    gc.freeze()


def pre_request(worker: object, req: object) -> None:
    """Under gevent, let other connections run before each request (fair turns, shorter tails).

    A keep-alive connection whose next request is already buffered is otherwise served again
    without yielding, so a few connections can starve the rest.
    """
    if worker_class == "gevent" and os.environ.get("GUNICORN_YIELD_PER_REQUEST", "1") == "1":
        import gevent

        gevent.sleep(0)
