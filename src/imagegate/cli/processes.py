"""`serve --processes N` and `worker --processes N`: one supervisor, N children.

What must happen once (migrations, the sandbox demo token) is done before the supervisor
starts. It takes the node's address (see Listener), creates the node's shared memory (rate
limits, credential changes) and the metrics directory, and starts the children with
multiprocessing's *spawn* (a fresh interpreter: nothing half-initialised is inherited).
Then it watches them:

- On SIGTERM or SIGINT it lets go of the address and sends SIGTERM to every child, once.
  Each child keeps the single-process promises within one IMAGEGATE_SHUTDOWN_GRACE
  (waiting clients answered, async tasks handed back); a child still running STOP_MARGIN
  seconds after that is killed.
- A child that dies while the node runs is replaced (after a pause if it keeps dying
  young); one that dies before the node was first ready stops the node, since its error
  would only repeat.
- A child whose supervisor died (kill -9) sees its pipe close and stops as on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

import structlog

from imagegate.settings import Settings

log = structlog.get_logger("imagegate.processes")
STOP_MARGIN = 10.0  # seconds past the grace period before a child is killed
YOUNG = 30.0  # a child that dies younger than this is replaced after a pause
MAX_PAUSE = 30.0
READY = b"ready"


@dataclass(eq=False)
class Child:
    index: int
    process: BaseProcess
    link: Connection  # the supervisor's end of a pipe to the child
    started: float = field(default_factory=time.monotonic)
    ready: bool = False


class Supervisor:
    """Runs ``target(*args, on_ready=...)`` in ``count`` child processes (see the module)."""

    def __init__(self, name: str, count: int, target: Callable[..., None], args: tuple[Any, ...],
                 grace: float, *, on_stop: Callable[[], None] | None = None,
                 on_exit: Callable[[int], None] | None = None) -> None:
        self.name = name
        self.count = count
        self.target = target
        self.args = args
        self.grace = grace
        self.on_stop = on_stop
        self.on_exit = on_exit
        self.context = multiprocessing.get_context("spawn")
        self.children: dict[int, Child] = {}
        self.restarts: dict[int, tuple[float, int]] = {}  # index -> (when, young deaths)
        self.signals: list[int] = []
        self.node_ready = False

    def run(self) -> int:
        """Until a signal (0) or a child that cannot start (1); the children are gone then."""
        wake, self._wake = socket.socketpair()
        wake.setblocking(False)
        self._wake.setblocking(False)
        handlers = {sig: signal.signal(sig, self._signalled)
                    for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            for index in range(self.count):
                self._start(index)
            code = self._watch(wake)
            self._stop()
            return code
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            wake.close()
            self._wake.close()

    def _signalled(self, sig: int, _frame: Any) -> None:
        self.signals.append(sig)
        with contextlib.suppress(OSError):
            self._wake.send(b"\0")

    def _start(self, index: int) -> None:
        mine, theirs = self.context.Pipe()
        process = self.context.Process(target=_child, args=(self.target, theirs, *self.args),
                                       name=f"imagegate-{self.name}-{index}")
        process.start()
        theirs.close()
        self.children[index] = Child(index, process, mine)

    def _watch(self, wake: socket.socket) -> int:
        while not self.signals:
            now = time.monotonic()
            due = [i for i, (when, _) in self.restarts.items() if when <= now and
                   i not in self.children]
            for index in due:
                self._start(index)
            timeout = min((when - now for when, _ in self.restarts.values()
                           if when > now), default=None)
            waiting: list[Any] = [wake]
            for child in self.children.values():
                waiting.append(child.process.sentinel)
                if not child.ready:
                    waiting.append(child.link)
            for ready in wait(waiting, timeout):
                if ready is wake:
                    with contextlib.suppress(OSError):
                        wake.recv(64)
                elif isinstance(ready, Connection):
                    self._heard(ready)
                else:
                    code = self._died(ready)
                    if code is not None:
                        return code
        log.info("processes_stopping", signal=signal.Signals(self.signals[0]).name,
                 processes=len(self.children), grace=self.grace)
        return 0

    def _heard(self, link: Connection) -> None:
        child = next(c for c in self.children.values() if c.link is link)
        try:
            message = link.recv_bytes()
        except (EOFError, OSError):  # it died; its sentinel says so
            return
        if message == READY and not child.ready:
            child.ready = True
            if self.node_ready:
                log.info("process_replaced", index=child.index, pid=child.process.pid)
            elif all(c.ready for c in self.children.values()):
                self.node_ready = True
                log.info("processes_ready", command=self.name, processes=self.count)

    def _died(self, sentinel: int) -> int | None:
        child = next(c for c in self.children.values() if c.process.sentinel == sentinel)
        child.process.join()
        self._forget(child)
        age = time.monotonic() - child.started
        if not self.node_ready:
            log.error("process_failed_to_start", pid=child.process.pid,
                      exitcode=child.process.exitcode)
            return 1
        _, strikes = self.restarts.get(child.index, (0.0, 0))
        strikes = strikes + 1 if age < YOUNG else 0
        pause = min(MAX_PAUSE, 2.0 ** strikes - 1)
        log.warning("process_died", pid=child.process.pid, exitcode=child.process.exitcode,
                    age_s=round(age, 1), restart_in_s=pause)
        self.restarts[child.index] = (time.monotonic() + pause, strikes)
        return None

    def _forget(self, child: Child) -> None:
        self.children.pop(child.index, None)
        child.link.close()
        if self.on_exit is not None and child.process.pid is not None:
            self.on_exit(child.process.pid)

    def _stop(self) -> None:
        if self.on_stop is not None:
            self.on_stop()
        for child in self.children.values():
            if child.process.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace + STOP_MARGIN
        while self.children and (left := deadline - time.monotonic()) > 0:
            for sentinel in wait([c.process.sentinel for c in self.children.values()], left):
                child = next(c for c in self.children.values()
                             if c.process.sentinel == sentinel)
                child.process.join()
                self._forget(child)
        for child in list(self.children.values()):
            log.error("process_killed", pid=child.process.pid,
                      reason=f"still running {self.grace + STOP_MARGIN:g}s after SIGTERM")
            child.process.kill()
            child.process.join(5)
            self._forget(child)


def _child(target: Callable[..., None], link: Connection, *args: Any) -> None:
    # SIGINT from a terminal reaches every process of the group: the supervisor alone acts
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_supervisor, args=(link,), daemon=True,
                     name="imagegate-supervisor-watch").start()
    target(*args, on_ready=lambda: link.send_bytes(READY))
    # Everything is closed by now; the interpreter's own teardown (seconds of garbage
    # collection on a loaded machine) would only stretch the node's stop.
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(0)


def _watch_supervisor(link: Connection) -> None:
    """The supervisor never writes: this returns when it is gone."""
    with contextlib.suppress(EOFError, OSError):
        while True:
            link.recv_bytes()
    os.kill(os.getpid(), signal.SIGTERM)


@dataclass
class Listener:
    """The node's address. With SO_REUSEPORT (Linux) each child listens on a socket of its
    own and the kernel spreads connections over them by address hash; on one shared socket
    whichever process is first to accept takes every waiting connection (bench.accept: of
    16 connections opened together, the busiest of two processes took 13 on average, and
    in a quarter of the rounds all of them). The supervisor's ``guard`` is bound, never
    listening: it holds the port for the node and receives nothing. Without SO_REUSEPORT,
    ``shared`` is the one socket all accept on."""

    host: str
    port: int
    backlog: int
    guard: socket.socket | None = None
    shared: socket.socket | None = None
    claim: socket.socket | None = None

    @classmethod
    def open(cls, host: str, port: int, backlog: int) -> Listener:
        """Raises OSError when the address cannot be had (say, in use)."""
        listener = cls(host, port, backlog)
        if hasattr(socket, "SO_REUSEPORT"):
            listener.claim = _claim(host, port)
            try:
                listener.guard = _bind(host, port, reuse_port=True)
            except OSError:
                listener.close()
                raise
        else:
            listener.shared = _bind(host, port, reuse_port=False)
            listener.shared.listen(backlog)
            listener.shared.set_inheritable(True)
        return listener

    def sockets(self) -> list[socket.socket]:
        """In a child: the socket(s) it accepts on."""
        if self.shared is not None:
            return [self.shared]
        sock = _bind(self.host, self.port, reuse_port=True)
        sock.listen(self.backlog)
        return [sock]

    def close(self) -> None:
        for sock in (self.guard, self.shared, self.claim):
            if sock is not None:
                sock.close()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "guard": None, "claim": None}  # the supervisor's alone


def _claim(host: str, port: int) -> socket.socket | None:
    """SO_REUSEPORT would let a second node started by mistake (by the same user) share the
    port silently; a name in Linux's abstract socket namespace, held by the supervisor and
    gone with it, makes that second node fail instead."""
    if not sys.platform.startswith("linux"):
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(f"\0imagegate-node:{host}:{port}")
    except OSError as e:
        sock.close()
        raise OSError(e.errno, "in use by another imagegate node") from None
    return sock


def _bind(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                         socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _shared_tmp() -> str | None:
    """tmpfs when there is one: the metrics files are written on every request."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None


def serve(settings: Settings, listener: Listener) -> int:
    """`imagegate serve --processes N` on ``listener``; the exit code."""
    from prometheus_client.multiprocess import mark_process_dead

    from imagegate.core.metrics import MULTIPROCESS_DIR
    from imagegate.core.node_memory import NodeMemory

    memory = NodeMemory.create()
    metrics_dir = tempfile.mkdtemp(prefix="imagegate-metrics-", dir=_shared_tmp())
    os.environ[MULTIPROCESS_DIR] = metrics_dir  # before the children import prometheus
    child_settings = settings.model_copy(update={"migrate": False})  # migrated once already
    supervisor = Supervisor(
        "serve", settings.processes, _serve_child, (child_settings, listener, memory),
        settings.shutdown_grace, on_stop=listener.close,
        on_exit=lambda pid: mark_process_dead(pid, metrics_dir))
    try:
        return supervisor.run()
    finally:
        listener.close()
        memory.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)


def work(settings: Settings) -> int:
    """`imagegate worker --processes N`; the exit code."""
    child_settings = settings.model_copy(update={"migrate": False})
    return Supervisor("worker", settings.processes, _worker_child, (child_settings,),
                      settings.shutdown_grace).run()


def _serve_child(settings: Settings, listener: Listener, memory: Any, *,
                 on_ready: Callable[[], None]) -> None:
    from imagegate import logging as logs
    from imagegate.api.app import create_app, run

    logs.configure(settings.log_level, settings.log_json, pid=True)
    run(create_app(settings, memory=memory), settings, sockets=listener.sockets(),
        on_ready=on_ready, supervised=True, backlog=listener.backlog)


def _worker_child(settings: Settings, *, on_ready: Callable[[], None]) -> None:
    from imagegate import logging as logs
    from imagegate.worker.service import run_worker

    logs.configure(settings.log_level, settings.log_json, pid=True)
    asyncio.run(run_worker(settings, on_ready=on_ready, supervised=True))
