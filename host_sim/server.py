"""Running the host: `serve` (blocking, for `fuelsim host serve`), a background server for tests
and tools, and a dev terminal key printed to the console."""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from types import TracebackType

import uvicorn
from starlette.types import ASGIApp

from cardcore.clockrng import ClockLike
from cardcore.ports import Hsm
from host_sim import fleet, knobs
from host_sim.access import (
    DEFAULT_SCOPES,
    ISSUING_SCOPES,
    OFFICE_SCOPES,
    AccessKey,
    add_access_key,
    add_terminal,
    grant_scopes,
    load_access_key,
    normalise_terminal,
)
from host_sim.app import create_app
from host_sim.db import Database
from host_sim.deps import HostContext
from host_sim.knobs import Knobs
from host_sim.promotion_store import load_rules
from host_sim.promotions import Rule

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
    # a pump, or an office's counter that also issues cards and funds fleet sub cards
    scopes = {*DEFAULT_SCOPES["terminal"], *OFFICE_SCOPES, *ISSUING_SCOPES}
    with db.connect() as conn:
        key = load_access_key(conn, ak)
    if key is None:
        key = add_access_key(db, ak, sk or secrets.token_hex(24), "terminal", scopes, terminal)
    elif not scopes <= key.scopes:  # a key made by an older host: give it today's scopes
        key = replace(key, scopes=grant_scopes(db, ak, scopes))
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
    promotions: Sequence[Rule] = (),
    test_knobs: Knobs | None = None,
) -> int:
    """Run the host API with uvicorn until interrupted (Ctrl-C); returns the exit status.

    `promotions` are stored (created or replaced) before serving. `test_knobs` turns the test
    knobs on (host_sim.knobs); a `restart` knob stops the server with status 75.
    """
    app = create_app(db_path, hsm, clock)
    context: HostContext = app.state.host
    out(f"fuelsim host on http://{host}:{port}  database {context.db.location}")
    if dev_key:
        bootstrap_dev_key(context.db, out=out)
        fleet.bootstrap_dev_fleet(context.db, context.now(), out)
    if promotions:
        count = load_rules(context.db, promotions, ak="serve --promotions", now=context.now())
        out(f"promotion rules loaded: {count}")
    restarting = threading.Event()

    def restart() -> None:  # a restart knob fired: stop like Ctrl-C would, then exit 75
        restarting.set()
        server.should_exit = True

    asgi: ASGIApp = app
    if test_knobs is not None:
        asgi = knobs.enable(app, test_knobs, on_restart=restart)
        out(f"TEST KNOBS ON: {len(test_knobs.current())} knob(s); PUT /v1/test/knobs to change")
    server = uvicorn.Server(uvicorn.Config(asgi, host=host, port=port, log_level=log_level))
    try:
        server.run()
    finally:
        context.db.close()
    return knobs.RESTART_EXIT_STATUS if restarting.is_set() else 0


class BackgroundServer:
    """uvicorn in a daemon thread on a socket bound before start (port 0: a free port)."""

    def __init__(
        self, app: ASGIApp, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"
    ) -> None:
        self.app = app
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit it (Linux): no answer waits for the client's delayed ACK.
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
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
