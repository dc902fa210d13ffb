"""Worker liveness and the worker's metrics exporter (see worker/heartbeat.py, worker/exporter.py).

Every worker node consumes one extra queue, ``flexmit.hb.<node>``, and sends itself a
``flexmit.heartbeat`` task on it every ``FLEXMIT_HEARTBEAT_INTERVAL_S`` seconds from a consumer
bootstep. The message makes the full trip (publish, broker, the node's consumer, a pool child),
so the stamp it leaves goes stale when any link breaks: a cut broker connection, a consumer
that stopped fetching, a pool that stopped running tasks. ``flexmit health worker`` checks it.

This module is the first task module a worker imports (``TASK_MODULES``), so it can switch
prometheus_client to multiprocess mode before any metric exists.
"""

from __future__ import annotations

import os
import time
from typing import Any

import structlog
from celery import bootsteps
from celery.signals import (
    celeryd_after_setup,
    worker_init,
    worker_process_shutdown,
    worker_shutdown,
)

from tasks.base import FlexmitTask
from worker import exporter, heartbeat
from worker.celery import app

exporter.prepare_multiprocess()  # before anything imports worker.metrics (prometheus_client)
log = structlog.get_logger(__name__)


@app.task(name=heartbeat.TASK_NAME, base=FlexmitTask, bind=True, ignore_result=True)
def beat(self: FlexmitTask) -> None:
    """Stamp this node's heartbeat file: a message reached it through the broker."""
    from worker import metrics

    node = self.request.hostname
    if node:
        heartbeat.stamp(node, "heartbeat")
    metrics.WORKER_HEARTBEAT.set(time.time())


class HeartbeatStep(bootsteps.StartStopStep):
    """Consumer step: send ``flexmit.heartbeat`` to this node's own queue on a timer.

    It lives in the consumer blueprint, so Celery stops it while the broker connection is
    down and starts it again after a reconnect, like its own event heartbeats.
    """

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, c: Any, **kwargs: Any) -> None:
        super().__init__(c, **kwargs)
        self.tref: Any = None

    def start(self, c: Any) -> None:
        """Send one heartbeat now, then every interval."""
        send_heartbeat(c.app, c.hostname)
        self.tref = c.timer.call_repeatedly(heartbeat.interval_s(), send_heartbeat,
                                            (c.app, c.hostname))

    def stop(self, c: Any) -> None:
        """Cancel the timer (connection lost, or shutting down)."""
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None

    shutdown = stop


def send_heartbeat(celery_app: Any, node: str) -> None:
    """Publish one heartbeat for ``node``; a failure is logged (the stamp then ages)."""
    try:
        celery_app.send_task(heartbeat.TASK_NAME, queue=heartbeat.queue_name(node),
                             retry=True, retry_policy={"max_retries": 1, "interval_start": 0,
                                                       "interval_step": 0.5,
                                                       "interval_max": 0.5})
    except Exception as exc:  # broker gone: keep the worker up, let the stamp go stale
        log.warning("heartbeat.send_failed", node=node, error=type(exc).__name__)


app.steps["consumer"].add(HeartbeatStep)


@celeryd_after_setup.connect
def _consume_own_queue(sender: str, instance: Any, **_: Any) -> None:
    # The documented way to give a worker a queue of its own (celery "worker_direct" style).
    instance.app.amqp.queues.select_add(heartbeat.queue_name(sender))


@worker_init.connect
def _worker_starting(sender: Any, **_: Any) -> None:
    # A first stamp gives a starting node one max-age of grace to reach the broker.
    heartbeat.stamp(sender.hostname, "start", main_pid=os.getpid())
    port = exporter.exporter_port()
    if port is None:
        return
    if not exporter.multiprocess_active():
        log.error("metrics.exporter_disabled",
                  reason="prometheus_client was loaded before multiprocess mode was chosen; "
                         "set PROMETHEUS_MULTIPROC_DIR to an empty directory")
        return
    exporter.start_exporter(port, exporter.exporter_addr())
    log.info("metrics.exporter_started", port=port, addr=exporter.exporter_addr())


@worker_shutdown.connect
def _worker_stopped(sender: Any, **_: Any) -> None:
    heartbeat.remove_stamp(sender.hostname)  # stopped on purpose: gone, not dead
    exporter.remove_own_directory()


@worker_process_shutdown.connect
def _child_stopped(pid: int | None = None, **_: Any) -> None:
    exporter.child_exited(pid or os.getpid())
