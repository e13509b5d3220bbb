"""The embedded file-system broker: messages survive until acked, even a SIGKILLed worker."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from celery import Celery
from celery_harness import WorkerProcess, base_env, migrate_sqlite, wait_for
from kombu import Connection, Consumer, Exchange, Producer, Queue

from webapp.celery_fs_transport import LOCK_NAME, TRANSPORT_ALIAS, spool_transport_options


def _connection(spool: Path) -> Connection:
    return Connection(f"{TRANSPORT_ALIAS}://", transport_options=spool_transport_options(spool))


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.msg")) if folder.exists() else []


def _publish(conn: Connection, queue: Queue, body: dict) -> None:
    Producer(conn.default_channel).publish(
        body, exchange=queue.exchange, routing_key=queue.routing_key, declare=[queue]
    )


def _receive(conn: Connection, queue: Queue) -> list:
    got: list = []
    with Consumer(conn, [queue], callbacks=[lambda body, msg: got.append((body, msg))]):
        wait_for(lambda: _drain(conn) or got, 10, "a message")
    return got


def _drain(conn: Connection) -> None:
    try:
        conn.drain_events(timeout=0.2)
    except TimeoutError:
        pass


def test_connections_to_a_spool_name_no_host_and_warn_of_none(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A spool folder has no host: kombu used to warn "No hostname was supplied" on every
    clone of the connection (each task sent by ``make up``'s demo loading printed it)."""
    with caplog.at_level("WARNING"), _connection(tmp_path / "spool") as conn:
        conn.ensure_connection()
        conn.clone().ensure_connection()
    assert "hostname" not in caplog.text


def test_claimed_message_stays_on_disk_until_acked(tmp_path: Path) -> None:
    queue = Queue("jobs", Exchange("jobs", type="direct"), routing_key="jobs")
    spool = tmp_path / "spool"
    with _connection(spool) as producer_conn:
        _publish(producer_conn, queue, {"n": 1})
    assert len(_files(spool / "queue")) == 1
    assert not list((spool / "tmp").iterdir()), "temp files are renamed into place"

    with _connection(spool) as conn:
        [(body, message)] = _receive(conn, queue)
        assert body == {"n": 1}
        assert _files(spool / "queue") == []
        assert len(_files(spool / "processing")) == 1
        message.ack()
        assert _files(spool / "processing") == []


def test_rejected_message_is_requeued_under_its_name(tmp_path: Path) -> None:
    queue = Queue("jobs", Exchange("jobs", type="direct"), routing_key="jobs")
    spool = tmp_path / "spool"
    with _connection(spool) as conn:
        _publish(conn, queue, {"n": 2})
        [name] = _files(spool / "queue")
        [(_, message)] = _receive(conn, queue)
        message.requeue()
        assert _files(spool / "queue") == [name]
        assert _files(spool / "processing") == []


def test_unacked_messages_of_a_dead_consumer_are_requeued_by_the_next(tmp_path: Path) -> None:
    """A consumer that vanished without acking (its lock released) leaves its claims behind."""
    queue = Queue("jobs", Exchange("jobs", type="direct"), routing_key="jobs")
    spool = tmp_path / "spool"
    crashed = _connection(spool)
    _publish(crashed, queue, {"n": 3})
    [(_, _message)] = _receive(crashed, queue)
    assert len(_files(spool / "processing")) == 1
    # A second consumer while the first holds the spool lock must not steal its claims.
    with _connection(spool) as rival:
        with Consumer(rival, [queue], callbacks=[lambda body, msg: None]):
            _drain(rival)
        assert len(_files(spool / "processing")) == 1
    # Simulate the crash: the lock descriptor goes away, the in-memory state is never restored.
    channel = crashed.default_channel
    channel.qos.restore_at_shutdown = False
    import os

    from webapp import celery_fs_transport

    celery_fs_transport._LOCK_FDS.discard(channel._consumer_lock)
    os.close(channel._consumer_lock)
    channel._consumer_lock = None
    assert (spool / "processing" / LOCK_NAME).exists()

    with _connection(spool) as conn:
        [(body, message)] = _receive(conn, queue)
        assert body == {"n": 3}
        message.ack()
    assert _files(spool / "queue") == [] and _files(spool / "processing") == []


@pytest.mark.integration
@pytest.mark.slow
def test_sigkilled_worker_task_is_redelivered_after_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kill the whole worker mid-task; a restarted worker runs the task to completion."""
    # Celery lets CELERY_BROKER_URL (Redis under `make test`) override the producer's URL.
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    db = tmp_path / "worker.sqlite3"
    migrate_sqlite(db)
    spool = tmp_path / "spool"
    markers = tmp_path / "markers"
    markers.mkdir()
    env = base_env(
        DATABASE_URL=f"sqlite:///{db}",
        CELERY_BROKER_URL="filesystem://",
        ANNOTOME_BROKER_SPOOL=str(spool),
        ANNOTOME_VAR_DIR=str(tmp_path / "var"),
        CELERY_RESULT_BACKEND="django-db",
    )
    producer = Celery(
        "producer",
        # Not the current app: shared_task calls of later tests in this process would
        # publish through it, into this test's spool.
        set_as_current=False,
        broker=f"{TRANSPORT_ALIAS}://",
        broker_transport_options=spool_transport_options(spool),
    )
    first = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        result = producer.send_task("annotome_test.block_until_released", args=[str(markers)])
        wait_for(lambda: list(markers.glob("started-*")), 60, "the task to start")
        assert len(_files(spool / "processing")) == 1
        first.kill()
    finally:
        first.stop()
    assert len(_files(spool / "processing")) == 1, "the claim survives the crash"

    second = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        wait_for(lambda: len(list(markers.glob("started-*"))) == 2, 60, "redelivery")
        (markers / "release").touch()
        wait_for(lambda: (markers / "done").exists(), 60, "the task to finish")

        def stored_status() -> str | None:
            with sqlite3.connect(db, timeout=30) as con:
                row = con.execute(
                    "SELECT status FROM django_celery_results_taskresult WHERE task_id = ?",
                    (result.id,),
                ).fetchone()
            return row[0] if row and row[0] == "SUCCESS" else None

        wait_for(stored_status, 30, "the SUCCESS row in the result backend")
        wait_for(lambda: _files(spool / "processing") == [], 10, "the ack to delete the claim")
        assert _files(spool / "queue") == []
        with sqlite3.connect(db) as con:
            assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        second.stop(graceful=False)
    assert (markers / "done").read_text().count("\n") == 1, "ran to completion exactly once"
