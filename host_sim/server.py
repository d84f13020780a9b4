"""Running the host: `serve` (blocking, for `fuelsim host serve`), a background server for tests
and tools, and a dev terminal key printed to the console."""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType

import uvicorn
from starlette.types import ASGIApp

from cardcore.ports import Hsm
from host_sim.access import (
    DEFAULT_SCOPES,
    AccessKey,
    add_access_key,
    add_terminal,
    load_access_key,
    normalise_terminal,
)
from host_sim.app import ClockLike, create_app
from host_sim.db import Database
from host_sim.deps import HostContext

DEV_TERMINAL = "440101000001"  # the terminal of the psam-dispenser profile


def bootstrap_dev_key(
    db: Database,
    terminal_id: str = DEV_TERMINAL,
    *,
    ak: str | None = None,
    sk: str | None = None,
    station_id: str | None = None,
    out: Callable[[str], None] = print,
) -> AccessKey:
    """A terminal key for development (created once, reused after), printed with its secret."""
    terminal = normalise_terminal(terminal_id)
    ak = ak or f"dev-{terminal}"
    with db.connect() as conn:
        key = load_access_key(conn, ak)
    if key is None:
        key = add_access_key(
            db, ak, sk or secrets.token_hex(24), "terminal", DEFAULT_SCOPES["terminal"], terminal
        )
    if station_id:
        add_terminal(db, terminal, station_id)
    out(f"dev terminal key for {key.owner} (scopes {' '.join(sorted(key.scopes))}):")
    out(f"  AK {key.ak}")
    out(f"  SK {key.sk}")
    return key


def serve(
    host: str,
    port: int,
    db_path: str | os.PathLike[str],
    hsm: Hsm,
    *,
    clock: ClockLike | None = None,
    dev_key: bool = False,
    log_level: str = "info",
    out: Callable[[str], None] = print,
) -> None:
    """Run the host API with uvicorn until interrupted (Ctrl-C)."""
    app = create_app(db_path, hsm, clock)
    context: HostContext = app.state.host
    out(f"fuelsim host on http://{host}:{port}  database {context.db.path}")
    if dev_key:
        bootstrap_dev_key(context.db, out=out)
    try:
        uvicorn.run(app, host=host, port=port, log_level=log_level)
    finally:
        context.db.close()


class BackgroundServer:
    """uvicorn in a daemon thread on a socket bound before start (port 0: a free port)."""

    def __init__(
        self, app: ASGIApp, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"
    ) -> None:
        self.app = app
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.host, self.port = self._socket.getsockname()[:2]
        self._server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, lifespan="off"))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> str:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the host server did not start")
            time.sleep(0.01)
        return self.base_url

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._socket.close()

    def __enter__(self) -> BackgroundServer:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
