"""Serve emulated cards into pcscd through the vsmartcard-vpcd driver (the virtual PC/SC reader).

vpcd listens on one TCP port per slot (35963 + N) and the virtual card connects to it. Every
message either way is a 2-byte big-endian length and a payload. A 1-byte payload from vpcd is
a control code: 0 power off, 1 power on, 2 reset, 4 "send the ATR". Anything longer is an APDU,
answered with the response APDU. Connected means inserted; closing the socket removes the card.

Latency: each answer goes out in one send with TCP_NODELAY, and TCP_QUICKACK is set again after
every receive. Without these, Nagle's algorithm and delayed ACKs add about 40 ms to each APDU on
Linux loopback.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from card_profiles.nvm import PowerLost
from cardcore.errors import FuelsimError
from cardcore.ports import CardOS

VPCD_BASE_PORT = 35963
POWER_OFF, POWER_ON, RESET, GET_ATR = 0, 1, 2, 4
_QUICKACK = getattr(socket, "TCP_QUICKACK", None)


class VpcdError(FuelsimError):
    title = "virtual reader"


def slot_port(slot: int, base: int = VPCD_BASE_PORT) -> int:
    return base + slot


@dataclass
class SlotStats:
    apdus: int = 0
    connects: int = 0


class VirtualSlot:
    """One vpcd slot holding (or not) one emulated card.

    `insert()` connects to vpcd and answers it from a thread until `remove()`. `tear_next()`
    makes the card lose power inside its next committing command and vanish without answering:
    a card pulled between a command and its answer.
    """

    def __init__(
        self,
        applet: CardOS,
        slot: int = 0,
        *,
        host: str = "127.0.0.1",
        base_port: int = VPCD_BASE_PORT,
        on_exchange: Callable[[bytes, bytes | None], None] | None = None,
    ) -> None:
        self.applet = applet
        self.slot = slot
        self.address = (host, slot_port(slot, base_port))
        self.on_exchange = on_exchange
        self.stats = SlotStats()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._tear: Tear | None = None

    @property
    def inserted(self) -> bool:
        return self._sock is not None

    def insert(self, timeout: float = 10.0) -> None:
        """Connect to vpcd (retrying while pcscd starts) and serve the card from a thread."""
        with self._lock:
            if self._sock is not None:
                return
            self._sock = self._connect(timeout)
            self.stats.connects += 1
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._serve, args=(self._sock,), name=f"vpcd-slot-{self.slot}", daemon=True
            )
            self._thread.start()

    def remove(self) -> None:
        """Pull the card: it loses power and vpcd sees the slot empty."""
        with self._lock:
            sock, self._sock = self._sock, None
            self._stop.set()
        if sock is not None:
            _close(sock)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        self.applet.power_off()

    def reset(self) -> None:
        """Take the card out and put it back (a cold reset that the terminal sees)."""
        self.remove()
        self.insert()

    def tear_next(
        self, applies: Callable[[bytes], bool] = lambda _: True, point: int | None = 0
    ) -> None:
        """Pull the card during the next command `applies` accepts (see Tear)."""
        self._tear = Tear(applies, point)

    def _connect(self, timeout: float) -> socket.socket:
        deadline = time.monotonic() + timeout
        while True:
            try:
                sock = socket.create_connection(self.address, timeout=2)
                break
            except OSError as exc:
                if time.monotonic() >= deadline:
                    raise VpcdError(
                        f"cannot reach vpcd on {self.address[0]}:{self.address[1]} ({exc}); "
                        "is pcscd running with the vsmartcard-vpcd driver?"
                    ) from None
                time.sleep(0.05)
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _serve(self, sock: socket.socket) -> None:
        try:
            while not self._stop.is_set():
                request = _receive(sock)
                if request is None:
                    break
                if len(request) == 1:
                    reply = self._control(request[0])
                else:
                    reply = self._apdu(request)
                    if reply is None:  # torn: the card vanishes without answering
                        break
                if reply is not None:
                    sock.sendall(len(reply).to_bytes(2, "big") + reply)
        except OSError:
            pass
        finally:
            with self._lock:
                if self._sock is sock:
                    self._sock = None
            _close(sock)

    def _control(self, code: int) -> bytes | None:
        """Power codes get no answer; only GET_ATR does."""
        if code == POWER_OFF:
            self.applet.power_off()
        elif code == POWER_ON:
            self.applet.power_on()
        elif code == RESET:
            self.applet.reset()
        elif code == GET_ATR:
            return self.applet.atr
        return None

    def _apdu(self, request: bytes) -> bytes | None:
        self.stats.apdus += 1
        tear, self._tear = self._tear, None
        if tear is not None and not tear.applies(request):
            self._tear, tear = tear, None
        nvm = getattr(self.applet, "nvm", None)
        if tear is not None and tear.point is not None and nvm is not None:
            nvm.tear_hook = tear.hook()
        response: bytes | None
        try:
            response = self.applet.process(request)
        except PowerLost:
            response = None
        finally:
            if nvm is not None:
                nvm.tear_hook = None
        if tear is not None and response is not None:
            if tear.point is not None:  # the command wrote nothing: wait for one that does
                self._tear = tear
            else:  # committed, but the answer never leaves the card
                self.applet.power_off()
                response = None
        if self.on_exchange:
            self.on_exchange(request, response)
        return response


@dataclass
class Tear:
    """Where a pulled card loses power: at write point `point` of the next command `applies`
    accepts that writes (0 = before anything is committed), or, with `point` None, after that
    command committed but before its answer is sent."""

    applies: Callable[[bytes], bool]
    point: int | None

    def hook(self) -> Callable[[object], None]:
        seen = 0

        def cut(_: object) -> None:
            nonlocal seen
            if seen == self.point:
                raise PowerLost
            seen += 1

        return cut


def _receive(sock: socket.socket) -> bytes | None:
    header = _exactly(sock, 2)
    if header is None:
        return None
    return _exactly(sock, int.from_bytes(header, "big"))


def _exactly(sock: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if _QUICKACK is not None:
            sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
        if not chunk:
            return None
        data += chunk
    return data


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
