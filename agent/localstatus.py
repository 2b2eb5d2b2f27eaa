"""The local status socket: ``hub check`` watches the running agent through it.

A Unix stream socket (``[local] socket``), never a network socket: what it serves is the
sensor-level board of the home (``agent.board``), for the installer standing in the
hallway. Each connected client receives newline-delimited JSON snapshots: one at once,
then another whenever something changed (at most every ``PUSH_EVERY`` seconds) and at
least every ``REFRESH_EVERY`` seconds. Clients only read; whatever they send is ignored.
A client that does not keep up for ``SLOW_CLIENT`` seconds is disconnected. At most
``MAX_CLIENTS`` at once.

The socket file is made with mode 0660, so only its owner and group (the hub's service
user and the installer's group) can connect; a stale file left by a crash is replaced, and
a socket that another live agent answers on is left alone (this one then serves none).
Nothing here can stop the agent: every failure is logged and the agent goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PUSH_EVERY = 0.25
REFRESH_EVERY = 2.0
SLOW_CLIENT = 5.0
MAX_CLIENTS = 4


def _answers(path: Path) -> bool:
    """Whether a live process accepts connections on the Unix socket at ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except OSError:
            return False
        return True


class StatusServer:
    """Serves ``snapshot()`` to ``hub check`` clients; ``changed()`` says when to push."""

    def __init__(
        self,
        path: Path,
        snapshot: Callable[[], dict[str, Any]],
        changed: Callable[[], int],
    ) -> None:
        self.path = path
        self._snapshot = snapshot
        self._changed = changed
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()

    @property
    def watching(self) -> bool:
        """Whether an installer is watching now (``hub check`` is connected)."""
        return bool(self._clients)

    async def start(self) -> bool:
        """Listen on the socket; False (logged) when it cannot be done."""
        path = self.path
        try:
            if path.exists() or path.is_symlink():
                if not stat.S_ISSOCK(path.lstat().st_mode):
                    log.error(
                        "local status socket: %s exists and is not a socket; hub check will "
                        "not work until it is removed",
                        path,
                    )
                    return False
                if _answers(path):
                    log.error(
                        "local status socket: another agent already serves %s; is the hub "
                        "running twice?",
                        path,
                    )
                    return False
                path.unlink()  # left by an agent that did not stop cleanly
            self._server = await asyncio.start_unix_server(self._serve, path=str(path))
            os.chmod(path, 0o660)
        except OSError as err:
            log.error(
                "local status socket %s cannot be opened: %s; hub check will not work", path, err
            )
            await self.stop()
            return False
        log.info("local status for hub check on %s", path)
        return True

    async def stop(self) -> None:
        server, self._server = self._server, None
        for task in list(self._clients):
            task.cancel()
        await asyncio.gather(*self._clients, return_exceptions=True)
        if server is not None:
            server.close()
            with contextlib.suppress(Exception):
                await server.wait_closed()
            with contextlib.suppress(OSError):
                self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._clients) >= MAX_CLIENTS:
            log.warning("local status: more than %d hub check clients; one refused", MAX_CLIENTS)
            writer.close()
            return
        self._clients.add(task)
        log.info("hub check connected (%d watching)", len(self._clients))
        drain = asyncio.create_task(self._discard(reader))
        loop = asyncio.get_running_loop()
        try:
            sent_version = -1
            sent_at = -REFRESH_EVERY
            while not drain.done():
                version = self._changed()
                now = loop.time()
                if version != sent_version or now - sent_at >= REFRESH_EVERY:
                    line = json.dumps(self._snapshot(), separators=(",", ":")) + "\n"
                    writer.write(line.encode())
                    async with asyncio.timeout(SLOW_CLIENT):
                        await writer.drain()
                    sent_version, sent_at = version, now
                await asyncio.wait({drain}, timeout=PUSH_EVERY)
        except TimeoutError:
            log.warning("local status: a hub check client did not keep up; disconnected")
        except (ConnectionError, OSError):
            pass  # the client went away
        finally:
            self._clients.discard(task)
            drain.cancel()
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            log.info("hub check disconnected (%d watching)", len(self._clients))

    @staticmethod
    async def _discard(reader: asyncio.StreamReader) -> None:
        """Read and drop what a client sends, until it closes its end."""
        with contextlib.suppress(ConnectionError, OSError):
            while await reader.read(4096):
                pass
