"""The Redis kombu transport, with the unacked messages of a live worker kept alive.

With ``task_acks_late`` a task's message stays in Redis's ``unacked`` hash until the task ends;
kombu puts it back in its queue once it is older than the ``visibility_timeout``. That timeout
has to choose between two evils: long (kombu's default is an hour) and a SIGKILLed worker's job
waits that long to be redelivered; short and a live worker's long job is delivered a second time.

This subclass removes the dilemma: the worker refreshes the timestamp (the ``unacked_index``
score) of every message it holds, every quarter of the timeout, from its event loop. Only the
messages of a worker that stopped age past the timeout, so it can be as short as the job lease
(``JOB_LEASE_SECONDS``; the settings pass it as ``visibility_timeout``). Importing this module
makes it the ``redis://`` and ``rediss://`` transport of the process (``webapp.celery`` does).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Any

from kombu.asynchronous.timer import Entry
from kombu.transport import TRANSPORT_ALIASES, redis

logger = logging.getLogger(__name__)

TRANSPORT_ALIASES["redis"] = "webapp.celery_redis_transport:Transport"
TRANSPORT_ALIASES["rediss"] = "webapp.celery_redis_transport:Transport"


class KeepAliveQoS(redis.QoS):
    """Redis QoS that can refresh the unacked-index timestamps of the messages it holds."""

    channel: Channel  # always ours: Channel.QoS is this class
    # Both made by QoS.__init__ (None only on the class).
    _delivered: OrderedDict[str, Any]
    _dirty: set[str]

    def held_tags(self) -> list[str]:
        """Delivery tags delivered to this consumer and not yet acknowledged."""
        return [tag for tag in self._delivered if tag not in self._dirty]

    def keep_alive(self) -> int:
        """Mark every held message as seen now (only those still unacked in Redis)."""
        tags = self.held_tags()
        if not tags:
            return 0
        now = time.time()
        with self.channel.conn_or_acquire() as client:
            client.zadd(self.unacked_index_key, dict.fromkeys(tags, now), xx=True)
        return len(tags)


class Channel(redis.Channel):
    QoS = KeepAliveQoS
    connection_errors: tuple[type[Exception], ...]  # set by redis.Channel.__init__ (not stubbed)


class Transport(redis.Transport):
    """``redis://`` whose worker keeps its unacked messages from being restored to others."""

    Channel = Channel
    #: The keep-alive timer (kept per transport, as its poller is: one each).
    _keep_alive_tref: Entry | None = None

    def register_with_event_loop(self, connection: Any, loop: Any) -> None:
        super().register_with_event_loop(connection, loop)
        previous = self._keep_alive_tref
        if previous is not None:  # a reconnect registers again
            previous.cancel()
        timeout = float(
            connection.client.transport_options.get(
                "visibility_timeout", redis.Channel.visibility_timeout
            )
        )
        self._keep_alive_tref = loop.call_repeatedly(max(timeout / 4, 0.5), self._keep_alive)

    def _keep_alive(self) -> None:
        for channel in list(self.channels or ()):  # a list from the base __init__ on
            assert isinstance(channel, Channel)  # made by Transport.Channel
            try:
                qos = channel.qos
                assert isinstance(qos, KeepAliveQoS)  # made by Channel.QoS
                qos.keep_alive()
            except channel.connection_errors:
                logger.debug("keep-alive of unacked messages: connection error", exc_info=True)
