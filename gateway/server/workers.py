"""``server.workers = N``: a supervisor process and N forked workers serving the same ports.

Each worker is ``serve`` (gateway/server/main.py) with its index; the supervisor only forks,
passes signals on, starts a worker that died again, and keeps the metrics directory every
worker's ``/metrics`` reads.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from pathlib import Path

from gateway.config import Config, ConfigError
from gateway.server.config import load_config
from gateway.server.main import pid_path, remove_pid_file, serve, write_pid_file
from gateway.server.metrics import (
    enable_multiprocess,
    prepare_multiprocess_dir,
    remove_multiprocess_dir,
    worker_gone,
)
from gateway.server.reload import restart_problems

__all__ = ["run_workers"]

log = logging.getLogger("smsgw")


def run_workers(config: Config) -> int:
    """``server.workers = N``: N forked processes serve the same ports (SO_REUSEPORT).

    This process only supervises. SIGTERM/SIGINT are passed on (each worker drains for
    ``shutdown_timeout_s``; one still running 10 s later is killed). SIGHUP reloads the config
    here too (so a worker started again later starts with it) and is passed on: each worker
    reloads itself. A worker that dies after it was serving is started again; one that dies
    before it ever listened (a port in use, say) stops them all, exit code 1, rather than
    looping. Each worker writes its own log files (``audit.w1.jsonl``, ...) and its metrics to
    a private directory every worker's ``/metrics`` reads. Call it before any event loop
    exists in this process.
    """
    metrics_dir, made_here = prepare_multiprocess_dir()
    enable_multiprocess(metrics_dir)
    supervisor = _Supervisor(config, metrics_dir)
    pid_file = pid_path(config)
    supervisor.take_signals()
    if pid_file is not None:
        write_pid_file(pid_file)
    try:
        return supervisor.run(config.settings.server.workers)
    finally:
        if pid_file is not None:
            remove_pid_file(pid_file)
        remove_multiprocess_dir(metrics_dir, made_here)


class _Supervisor:
    """The workers by pid, and what the signals asked for (flags: handlers only set them)."""

    def __init__(self, config: Config, metrics_dir: Path) -> None:
        #: What a worker started from now on runs (a SIGHUP the supervisor accepts replaces it).
        self.config = config
        self.generation = 1
        self.metrics_dir = metrics_dir
        self.workers: dict[int, _Worker] = {}
        self.stopping = False
        self.reload_asked = False
        self.code = 0
        self._drain_s = config.settings.server.shutdown_timeout_s + 10
        self._deadline: float | None = None

    def take_signals(self) -> None:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        # A worker keeps this handler (a flag in its own copy of the supervisor) until its event
        # loop takes SIGHUP over, so a reload signal never ends a worker that is still starting.
        signal.signal(signal.SIGHUP, self._ask_reload)

    def run(self, count: int) -> int:
        for index in range(1, count + 1):
            self.spawn(index)
        while self.workers:
            self._act_on_signals()
            for worker in self.workers.values():
                worker.poll_ready()
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(0.1)
                continue
            self._exited(pid, status)
        for worker in self.workers.values():
            worker.close()
        return self.code

    def spawn(self, index: int) -> None:
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker
            os.close(read_end)
            os._exit(self._work(index, write_end))
        os.close(write_end)
        os.set_blocking(read_end, False)
        self.workers[pid] = _Worker(index, read_end)

    def _work(self, index: int, ready_fd: int) -> int:
        """A forked worker's whole life; returns its exit code."""
        code = 0
        try:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, signal.SIG_DFL)
            asyncio.run(serve(self.config, index, ready_fd, self.generation))
        except OSError as exc:
            log.error("worker %d cannot listen: %s", index, exc.strerror)
            code = 1
        except BaseException as exc:
            log.error("worker %d failed: %s", index, type(exc).__name__)
            code = 1
        finally:
            logging.shutdown()
        return code

    def forward(self, sig: int) -> None:
        for pid in list(self.workers):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def _stop(self, _sig: int, _frame: object) -> None:
        self.stopping = True
        self.forward(signal.SIGTERM)

    def _ask_reload(self, _sig: int, _frame: object) -> None:
        self.reload_asked = True

    def _reload(self) -> None:
        """The workers check and report the new config themselves; here it only decides what
        a worker started from now on runs."""
        try:
            new: Config | None = load_config(self.config.path)
        except ConfigError:
            new = None
        if new is not None and not restart_problems(self.config, new):
            self.config = new
            self.generation += 1
        self.forward(signal.SIGHUP)

    def _act_on_signals(self) -> None:
        if self.reload_asked and not self.stopping:
            self.reload_asked = False
            self._reload()
        if self.stopping and self._deadline is None:
            self._deadline = time.monotonic() + self._drain_s
        if self._deadline is not None and time.monotonic() > self._deadline:
            self.forward(signal.SIGKILL)
            self._deadline = float("inf")

    def _exited(self, pid: int, status: int) -> None:
        worker = self.workers.pop(pid)
        worker_gone(self.metrics_dir, pid)
        worker.poll_ready()
        worker.close()
        if self.stopping:
            return
        code = os.waitstatus_to_exitcode(status)
        if not worker.ready:
            log.error("worker %d exited before it listened (%d); stopping", worker.index, code)
            self.stopping, self.code = True, 1
            self.forward(signal.SIGTERM)
            return
        log.warning("worker %d exited (%d); starting it again", worker.index, code)
        self.spawn(worker.index)


class _Worker:
    """A worker process as its supervisor sees it: its index and whether it has listened yet."""

    __slots__ = ("fd", "index", "ready")

    def __init__(self, index: int, fd: int) -> None:
        self.index = index
        self.fd: int | None = fd
        self.ready = False

    def poll_ready(self) -> None:
        if self.fd is None:
            return
        try:
            data = os.read(self.fd, 1)
        except BlockingIOError:
            return
        if data:
            self.ready = True
        self.close()

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
