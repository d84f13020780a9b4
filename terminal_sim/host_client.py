"""A terminal's (or a tool's) client of the host API: signed requests over httpx.

    with HostClient("http://127.0.0.1:8080", ak, sk, terminal_id="440101000001") as host:
        results = host.upload_bills(dispenser.bills)
        delta = host.blacklist(since=known_version)

Every refusal raises a `HostError` carrying the host's code (`E_SIGNATURE`, `E_SCOPE`, …), the
HTTP status and the figures of the error body; a host that cannot be reached raises
`HostUnavailable` (code `E_UNREACHABLE`).
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any

import httpx

from cardcore.clockrng import ClockLike, now_function
from cardcore.errors import FuelsimError
from cardcore.records import Bill, StoreSale
from host_sim.bills import MAX_BATCH
from host_sim.promotions import Kind, Level
from host_sim.signing import SERVER_TIME_HEADER, parse_time, sign_request


class HostError(FuelsimError):
    """The host refused a call: `code` is its E_… code, `details` the rest of the error body."""

    title = "host refused"

    def __init__(
        self, code: str, message: str, *, status: int | None, details: dict[str, Any]
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.status = status
        self.details = details


class HostAuthError(HostError):
    """401/403: signature, key, clock, nonce or scope."""

    title = "host refused the credentials"


class HostRateLimited(HostError):
    title = "host rate limit"

    @property
    def retry_after_s(self) -> int:
        return int(self.details.get("retry_after_s", 1))


class HostUnavailable(HostError):
    title = "host unavailable"


@dataclass(frozen=True)
class BillResult:
    index: int
    status: str  # accepted | duplicate | rejected
    bill_id: int | None
    reason: str | None
    message: str
    booked: bool
    transaction_id: int | None
    exception_id: int | None


@dataclass(frozen=True)
class BlacklistChange:
    version: int
    asn: str
    action: str  # add | remove
    reason: str
    changed_at: str


@dataclass(frozen=True)
class BlacklistDelta:
    since: int
    version: int
    next_since: int
    more: bool
    changes: list[BlacklistChange]


@dataclass(frozen=True)
class BlacklistUpdate:
    asn: str
    blacklisted: bool
    changed: bool
    version: int


@dataclass(frozen=True)
class AccountEntry:
    transaction_id: int
    kind: str
    memo: str
    posted_at: str
    amount: int


@dataclass(frozen=True)
class CardAccount:
    asn: str
    account: str
    balance: int
    blacklisted: bool
    entries: list[AccountEntry]


@dataclass(frozen=True)
class PromotionQuote:
    """The host's answer to a pump's quote: `rule_id` None means no discount."""

    quote_id: str | None
    rule_id: str | None
    level: Level | None
    kind: Kind | None
    value: int
    min_amount: int
    max_discount: int | None
    discount: int
    pay: int
    text: str
    station_id: str


NO_DELAY = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _asn_text(asn: bytes | str) -> str:
    text = asn.hex() if isinstance(asn, bytes) else asn
    if len(text) != 20 or not text.isdigit():
        raise ValueError(f"an ASN is 10 BCD bytes (20 digits), got {text!r}")
    return text


class HostClient:
    """Signs each request with AK/SK at the clock's time and a fresh nonce."""

    def __init__(
        self,
        base_url: str,
        ak: str,
        sk: str,
        clock: ClockLike | None = None,
        *,
        terminal_id: str | None = None,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.ak = ak
        self._sk = sk
        self.terminal_id = terminal_id
        self._now = now_function(clock)
        # TCP_NODELAY: a request's body goes out at once, not after the headers' delayed ACK.
        transport = transport or httpx.HTTPTransport(socket_options=[NO_DELAY])
        self._http = httpx.Client(base_url=base_url, timeout=timeout, transport=transport)
        self.last_server_time: datetime | None = None

    def __repr__(self) -> str:
        return f"HostClient({str(self._http.base_url)!r}, ak={self.ak!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> HostClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # Transport --------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        payload: Any = None,
    ) -> Any:
        """One signed call; returns the decoded JSON answer or raises a HostError."""
        body = b"" if payload is None else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        request = self._http.build_request(
            method, path, params=query, content=body, headers=headers
        )
        wire_path, _, _ = request.url.raw_path.partition(b"?")
        request.headers.update(
            sign_request(
                method,
                wire_path.decode("ascii"),
                request.url.query.decode("ascii"),
                body,
                self.ak,
                self._sk,
                self._now(),
                host=request.headers["host"],
            )
        )
        try:
            response = self._http.send(request)
        except httpx.HTTPError as exc:
            raise HostUnavailable(
                "E_UNREACHABLE", f"{method} {path}: {exc}", status=None, details={}
            ) from exc
        stamp = response.headers.get(SERVER_TIME_HEADER)
        if stamp:
            with contextlib.suppress(ValueError):
                self.last_server_time = parse_time(stamp)
        if response.is_success:
            return response.json()
        raise self._error(response)

    @staticmethod
    def _error(response: httpx.Response) -> HostError:
        try:
            error = response.json()["error"]
            code, message = str(error.pop("code")), str(error.pop("message"))
        except (ValueError, KeyError, TypeError, AttributeError):
            error, code, message = {}, f"E_HTTP_{response.status_code}", response.text[:200]
        status = response.status_code
        kind = HostError
        if status in (401, 403):
            kind = HostAuthError
        elif status == 429:
            kind = HostRateLimited
        return kind(code, message, status=status, details=error)

    # Calls ------------------------------------------------------------------------------------

    def upload_bills(
        self, bills: Sequence[Bill], *, terminal_id: str | None = None
    ) -> list[BillResult]:
        """Upload bills in batches of up to 500; one result per bill, in order."""
        if not bills:
            return []
        terminal = terminal_id or self.terminal_id or bills[0].term.hex().upper()
        results: list[BillResult] = []
        for start in range(0, len(bills), MAX_BATCH):
            batch = bills[start : start + MAX_BATCH]
            answer = self.request(
                "POST",
                "/v1/bills",
                payload={"terminal_id": terminal, "bills": [b.to_bytes().hex() for b in batch]},
            )
            for item in answer["results"]:
                results.append(
                    BillResult(
                        index=start + int(item["index"]),
                        status=item["status"],
                        bill_id=item.get("bill_id"),
                        reason=item.get("reason"),
                        message=item.get("message", ""),
                        booked=bool(item.get("booked")),
                        transaction_id=item.get("transaction_id"),
                        exception_id=item.get("exception_id"),
                    )
                )
        return results

    def upload_store_sales(
        self, sales: Sequence[StoreSale], *, terminal_id: str | None = None
    ) -> list[BillResult]:
        """Upload store sales in batches of up to 500; one result per sale, in order (a
        result's `bill_id` is the host's sale id)."""
        if not sales:
            return []
        terminal = terminal_id or self.terminal_id or sales[0].term.hex().upper()
        results: list[BillResult] = []
        for start in range(0, len(sales), MAX_BATCH):
            batch = sales[start : start + MAX_BATCH]
            answer = self.request(
                "POST",
                "/v1/store-sales",
                payload={"terminal_id": terminal, "sales": [s.to_bytes().hex() for s in batch]},
            )
            for item in answer["results"]:
                results.append(
                    BillResult(
                        index=start + int(item["index"]),
                        status=item["status"],
                        bill_id=item.get("sale_id"),
                        reason=item.get("reason"),
                        message=item.get("message", ""),
                        booked=item["status"] == "accepted",
                        transaction_id=item.get("transaction_id"),
                        exception_id=item.get("exception_id"),
                    )
                )
        return results

    def blacklist(self, since: int = 0, *, limit: int | None = None) -> BlacklistDelta:
        query: dict[str, Any] = {"since": since}
        if limit is not None:
            query["limit"] = limit
        answer = self.request("GET", "/v1/blacklist", query=query)
        return BlacklistDelta(
            since=answer["since"],
            version=answer["version"],
            next_since=answer["next_since"],
            more=answer["more"],
            changes=[BlacklistChange(**change) for change in answer["changes"]],
        )

    def _blacklist_call(self, asn: bytes | str, action: str, reason: str) -> BlacklistUpdate:
        payload = {"reason": reason} if reason else None
        answer = self.request("POST", f"/v1/cards/{_asn_text(asn)}/{action}", payload=payload)
        return BlacklistUpdate(**answer)

    def report_loss(self, asn: bytes | str, reason: str = "") -> BlacklistUpdate:
        return self._blacklist_call(asn, "loss", reason)

    def unblock(self, asn: bytes | str, reason: str = "") -> BlacklistUpdate:
        return self._blacklist_call(asn, "unblock", reason)

    def account(self, asn: bytes | str, *, limit: int | None = None) -> CardAccount:
        query = None if limit is None else {"limit": limit}
        answer = self.request("GET", f"/v1/cards/{_asn_text(asn)}/account", query=query)
        return CardAccount(
            asn=answer["asn"],
            account=answer["account"],
            balance=answer["balance"],
            blacklisted=answer["blacklisted"],
            entries=[AccountEntry(**entry) for entry in answer["entries"]],
        )

    def quote_promotion(
        self,
        terminal_id: str,
        asn: bytes | str,
        grade: int,
        amount: int,
        volume: int = 0,
        coupon: str | None = None,
    ) -> PromotionQuote:
        """The discount of a sale at authorisation (`POST /v1/promotions/quote`)."""
        payload: dict[str, Any] = {
            "terminal_id": terminal_id,
            "asn": _asn_text(asn),
            "grade": grade,
            "amount": amount,
            "volume": volume,
        }
        if coupon is not None:
            payload["coupon"] = coupon
        return PromotionQuote(**self.request("POST", "/v1/promotions/quote", payload=payload))

    # Virtual fleet cards (the driver's phone) ---------------------------------------------------

    def server_time(self) -> datetime:
        """The host's clock from the open `GET /health` (whole seconds, as the host sends it)."""
        try:
            response = self._http.get("/health")
        except httpx.HTTPError as exc:
            raise HostUnavailable(
                "E_UNREACHABLE", f"GET /health: {exc}", status=None, details={}
            ) from exc
        if not response.is_success:
            raise self._error(response)
        return parse_time(str(response.json()["server_time"]))

    def vfc_cards(self) -> list[dict[str, Any]]:
        """The cards bound to the calling driver (`GET /v1/vfc/cards`)."""
        cards: list[dict[str, Any]] = self.request("GET", "/v1/vfc/cards")["cards"]
        return cards

    def vfc_keys(self, card_id: str, count: int | None = None) -> dict[str, Any]:
        """Limited-use keys for the driver's phone (`POST /v1/vfc/cards/{card_id}/keys`)."""
        payload = None if count is None else {"count": count}
        answer: dict[str, Any] = self.request(
            "POST", f"/v1/vfc/cards/{card_id}/keys", payload=payload
        )
        return answer

    def _vfc_pump(
        self, path: str, method: str, data: str, pump: int, product: str, amount: int, **extra: Any
    ) -> dict[str, Any]:
        terminal = extra.pop("terminal_id", None) or self.terminal_id
        if terminal is None:
            raise ValueError("a VFC payment names its terminal: pass terminal_id")
        payload = {
            "terminal_id": terminal,
            "method": method,
            "data": data,
            "pump": pump,
            "product": product,
            "amount": amount,
            **extra,
        }
        answer: dict[str, Any] = self.request("POST", path, payload=payload)
        return answer

    def vfc_authorize(
        self, method: str, data: str, *, pump: int, product: str, amount: int
    ) -> dict[str, Any]:
        """Prepaid: validate a virtual card code and hold `amount` (`POST /v1/vfc/authorize`)."""
        return self._vfc_pump("/v1/vfc/authorize", method, data, pump, product, amount)

    def vfc_flash_pay(
        self, method: str, data: str, *, pump: int, product: str, amount: int, sale_id: str
    ) -> dict[str, Any]:
        """Post-paid: pay the pump's finished sale once (`POST /v1/vfc/flash-pay`)."""
        return self._vfc_pump(
            "/v1/vfc/flash-pay", method, data, pump, product, amount, sale_id=sale_id
        )

    def vfc_complete(self, hold_id: int, amount: int) -> dict[str, Any]:
        """Settle the delivered amount of a hold, releasing the rest (`POST /v1/vfc/complete`)."""
        payload = {"terminal_id": self.terminal_id, "hold_id": hold_id, "amount": amount}
        answer: dict[str, Any] = self.request("POST", "/v1/vfc/complete", payload=payload)
        return answer

    def vfc_release(self, hold_id: int) -> dict[str, Any]:
        """Nothing delivered: release the whole hold (`POST /v1/vfc/release`)."""
        payload = {"terminal_id": self.terminal_id, "hold_id": hold_id}
        answer: dict[str, Any] = self.request("POST", "/v1/vfc/release", payload=payload)
        return answer

    # Card registry ------------------------------------------------------------------------------

    def issue_card(
        self,
        profile: str,
        holder: str,
        *,
        kind: str = "single",
        master: bytes | str | None = None,
        asn: bytes | str | None = None,
    ) -> dict[str, Any]:
        """Issue a card through the host (`POST /v1/cards`): the card as the registry has it."""
        payload: dict[str, Any] = {"kind": kind, "holder": holder, "profile": profile}
        if master is not None:
            payload["master"] = _asn_text(master)
        if asn is not None:
            payload["asn"] = _asn_text(asn)
        answer: dict[str, Any] = self.request("POST", "/v1/cards", payload=payload)
        return answer

    def card(self, asn: bytes | str) -> dict[str, Any]:
        """A registered card, its balance and a master's sub cards (`GET /v1/cards/{asn}`)."""
        answer: dict[str, Any] = self.request("GET", f"/v1/cards/{_asn_text(asn)}")
        return answer

    def allocate(
        self, master: bytes | str, sub: bytes | str, amount: int, request_id: str
    ) -> dict[str, Any]:
        """Fund a sub card's reserve from its master (`POST /v1/cards/{master}/allocate`).

        Keep `request_id` for retries: the same id books once."""
        payload = {"sub": _asn_text(sub), "amount": amount, "request_id": request_id}
        answer: dict[str, Any] = self.request(
            "POST", f"/v1/cards/{_asn_text(master)}/allocate", payload=payload
        )
        return answer
