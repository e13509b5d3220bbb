"""A file-system kombu transport that survives a killed worker.

kombu's stock ``filesystem://`` transport deletes a message file the moment a consumer reads it,
so a task that was running when its whole worker was SIGKILLed is lost (``task_acks_late`` cannot
help: nothing is left to redeliver). This subclass:

- writes each message atomically (temp file, then rename) so a consumer never reads half a file;
- moves a claimed message into the ``processing`` folder and deletes it only on ack;
- on reject/restore puts the message back into the queue under its original name (keeps order);
- when a consumer starts, moves every file left in ``processing`` back to the queue. It takes an
  exclusive ``flock`` on ``processing/.consumer.lock`` first, so only the first consumer on a
  spool recovers and a crashed worker's lock is released by the kernel. Run one worker per spool.

Selected by ``annotome-fs://`` or ``filesystem://`` once this module is imported (the settings
import it). Spool layout (one directory, created on first use): ``queue/`` (ready messages),
``processing/`` (claimed, not yet acked), ``control/`` (exchange bindings), ``tmp/``.
"""

from __future__ import annotations

import fcntl
import logging
import os
import uuid
from pathlib import Path
from queue import Empty
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.transport.virtual import base as virtual_base
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads
from kombu.utils.scheduling import FairCycle

logger = logging.getLogger(__name__)

#: URL scheme of this transport. Importing this module also makes it the ``filesystem://``
#: transport of the process: Celery lets the CELERY_BROKER_URL environment variable override the
#: configured URL, so the plain scheme must resolve to the durable class too.
TRANSPORT_ALIAS = "annotome-fs"
TRANSPORT_ALIASES[TRANSPORT_ALIAS] = "webapp.celery_fs_transport:Transport"
TRANSPORT_ALIASES["filesystem"] = "webapp.celery_fs_transport:Transport"

LOCK_NAME = ".consumer.lock"

# Consumer-lock descriptors held by this process. A forked child (a prefork pool process) closes
# its copies so that, if the parent is killed, the lock dies with the parent and not with an
# orphaned child.
_LOCK_FDS: set[int] = set()


def _close_inherited_locks() -> None:
    for fd in list(_LOCK_FDS):
        try:
            os.close(fd)
        except OSError:
            pass
    _LOCK_FDS.clear()


os.register_at_fork(after_in_child=_close_inherited_locks)


def spool_transport_options(spool: Path | str, polling_interval: float = 0.1) -> dict[str, Any]:
    """Transport options that put every folder of the transport under ``spool``."""
    root = Path(spool)
    return {
        "data_folder_in": str(root / "queue"),
        "data_folder_out": str(root / "queue"),
        "processed_folder": str(root / "processing"),
        "control_folder": str(root / "control"),
        "store_processed": True,
        "polling_interval": polling_interval,
    }


def requeue_claimed(processing: Path, queue: Path) -> int:
    """Move every claimed message file back to ``queue``; return how many moved."""
    moved = 0
    for path in sorted(processing.glob("*.msg")):
        try:
            os.replace(path, queue / path.name)
        except FileNotFoundError:
            continue
        moved += 1
    return moved


class DurableQoS(virtual_base.QoS):
    """QoS that deletes the claimed file when a message is acked (or rejected without requeue)."""

    channel: Channel  # always ours: Channel.QoS is this class

    def ack(self, delivery_tag: str) -> None:
        super().ack(delivery_tag)
        self.channel._release_claim(delivery_tag)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        # With requeue the channel's _restore moves the claimed file back itself.
        super().reject(delivery_tag, requeue=requeue)
        if not requeue:
            self.channel._release_claim(delivery_tag)


class Channel(filesystem.Channel):
    """File-system channel keeping claimed messages on disk until they are acked."""

    QoS = DurableQoS

    def __init__(self, connection: Any, **kwargs: Any) -> None:
        super().__init__(connection, **kwargs)
        # delivery tag -> path of the claimed file in the processing folder
        self._claimed: dict[str, Path] = {}
        self._consumer_lock: int | None = None
        # queues consumed without acks (broadcast, replies): their files are deleted on read
        self._no_ack_queues: set[str] = set()
        for folder in (self.data_folder_in, self.data_folder_out, self.processed_folder):
            Path(folder).mkdir(parents=True, exist_ok=True)
        self.control_folder.mkdir(parents=True, exist_ok=True)
        self._tmp_folder.mkdir(parents=True, exist_ok=True)

    @property
    def _tmp_folder(self) -> Path:
        return Path(self.processed_folder).parent / "tmp"

    def _write_atomic(self, folder: str | Path, name: str, payload: dict[str, Any]) -> None:
        tmp = self._tmp_folder / f"{name}.{uuid.uuid4().hex}.tmp"
        try:
            tmp.write_bytes(str_to_bytes(dumps(payload)))
            os.replace(tmp, Path(folder) / name)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise ChannelError(f"Cannot add message {name!r} to {folder}") from exc

    # kombu-stubs name the second parameter "message" in the virtual base and "payload" here (as
    # kombu's source does); kombu passes it by position.
    def _put(  # type: ignore[override]
        self, queue: str, payload: dict[str, Any], **kwargs: Any
    ) -> None:
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        self._write_atomic(self.data_folder_out, name, payload)

    def _get(self, queue: str, timeout: float | None = None) -> dict[str, Any]:
        """The queue's oldest message, claimed (``timeout`` is unused: the spool is polled)."""
        wanted = f"{queue}.msg"
        for name in sorted(os.listdir(self.data_folder_in)):
            if name.partition(".")[2] != wanted:
                continue
            claimed = Path(self.processed_folder) / name
            try:
                # rename is atomic: of several consumers exactly one wins the file
                os.rename(os.path.join(self.data_folder_in, name), claimed)
            except OSError:
                continue
            try:
                payload: dict[str, Any] = loads(bytes_to_str(claimed.read_bytes()))
            except (OSError, ValueError) as exc:
                raise ChannelError(f"Cannot read message {name!r}") from exc
            if queue in self._no_ack_queues:
                claimed.unlink(missing_ok=True)  # nobody will ack it (broadcast, replies)
            else:
                self._claimed[payload["properties"]["delivery_tag"]] = claimed
            return payload
        raise Empty()

    def basic_get(self, queue: str, no_ack: bool = False, **kwargs: Any) -> Any:
        message = super().basic_get(queue, no_ack=no_ack, **kwargs)
        if message is not None and no_ack and message.delivery_tag is not None:
            self._release_claim(message.delivery_tag)
        return message

    def basic_consume(
        self, queue: str, no_ack: bool, callback: Any, consumer_tag: str | None, **kwargs: Any
    ) -> Any:
        if no_ack:
            self._no_ack_queues.add(queue)
        else:
            self._recover_once()
        return super().basic_consume(queue, no_ack, callback, consumer_tag, **kwargs)

    def basic_cancel(self, consumer_tag: str) -> Any:
        queue = self._tag_to_queue.get(consumer_tag)
        result = super().basic_cancel(consumer_tag)
        if queue is not None and queue not in self._tag_to_queue.values():
            self._no_ack_queues.discard(queue)
        return result

    def _recover_once(self) -> None:
        """Take the spool's consumer lock; the first holder requeues orphaned claims."""
        if self._consumer_lock is not None:
            return
        fd = os.open(Path(self.processed_folder) / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            logger.warning(
                "Another worker consumes from %s; orphaned messages are left to it "
                "(run one worker per file-system spool).",
                Path(self.processed_folder).parent,
            )
            self._consumer_lock = -1
            return
        self._consumer_lock = fd
        _LOCK_FDS.add(fd)
        moved = requeue_claimed(Path(self.processed_folder), Path(self.data_folder_in))
        if moved:
            logger.warning("Requeued %d message(s) left unacknowledged by a stopped worker.", moved)

    def _release_claim(self, delivery_tag: str) -> None:
        path = self._claimed.pop(delivery_tag, None)
        if path is not None:
            path.unlink(missing_ok=True)

    def _restore(self, message: Any) -> None:
        """Put an unacked message back in its queue, keeping its place in line."""
        claimed = self._claimed.pop(message.delivery_tag, None)
        if claimed is None or not claimed.exists():
            super()._restore(message)
            return
        payload = message.serializable()
        payload["redelivered"] = True
        self._write_atomic(self.data_folder_in, claimed.name, payload)
        claimed.unlink(missing_ok=True)

    def close(self) -> None:
        super().close()  # restores unacked messages first
        fd = self._consumer_lock
        if fd is not None and fd in _LOCK_FDS:  # not if a fork already closed our copy
            _LOCK_FDS.discard(fd)
            os.close(fd)  # closing the descriptor releases the flock
        self._consumer_lock = None


class Transport(filesystem.Transport):
    """Durable file-system transport (``annotome-fs://``, and ``filesystem://`` here).

    Declared asynchronous: a Celery worker then runs its event loop (``asynloop``) with the
    prefork ``AsyncPool``, as it does on Redis, polling the spool from a hub timer. Without it
    Celery falls back to ``synloop`` and billiard's threaded pool, whose children read jobs from
    one shared pipe under one process-shared lock, held by whichever idle child waits in
    ``read()``: a SIGKILL to that child leaves the lock taken for good, its replacement blocks
    on it, and every later task stays "received" until the worker restarts.
    """

    Channel = Channel
    driver_type = "filesystem"
    driver_name = "annotome-fs"
    implements = filesystem.Transport.implements.extend(asynchronous=True)
    #: Most messages delivered per poll of the event loop (the loop's other work runs between).
    max_deliveries_per_poll = 100
    # Declared exchanges and bindings, one state per spool (the stock transport keeps one per
    # process, so a second spool in the same process would miss its bindings).
    _states: dict[str, virtual_base.BrokerState] = {}
    cycle: FairCycle  # set by the base Transport's __init__

    @property
    def default_connection_params(self) -> dict[str, Any]:
        """No host: a spool folder has none (kombu would warn "No hostname was supplied" on
        every connection of ``filesystem://``, e.g. during ``make up``)."""
        return {"port": self.default_port}

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        control = str(client.transport_options.get("control_folder", "control"))
        self.state = self._states.setdefault(control, virtual_base.BrokerState())

    def register_with_event_loop(self, connection: Any, loop: Any) -> None:
        """Poll the spool every ``polling_interval`` seconds from the worker's event loop."""
        loop.call_repeatedly(self.polling_interval or 0.1, self._deliver_ready, connection)

    def _deliver_ready(self, connection: Any) -> None:
        """Deliver what is ready now, without sleeping (QoS still bounds it by the prefetch)."""
        for _ in range(self.max_deliveries_per_poll):
            try:
                self.cycle.get(self._deliver, timeout=0)
            except Empty:
                return
