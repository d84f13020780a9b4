"""`HttpOnlineHost`: the terminals' `OnlineHost` over the host's signed HTTP API.

The same Protocol as `terminal_sim.online.InProcessHost`, and behind it the same decisions
(`host_sim.online_ops`); here they travel as JSON (docs/host-api.md, "Online operations"). A
refusal of the host (any 4xx or 5xx with its `E_…` code) becomes `HostRefused(code, message)`;
a host that cannot be reached raises `HostUnavailable` (`E_UNREACHABLE`) unchanged.

`blacklisted` follows the host's versioned blacklist incrementally and answers from the last
list it got when the host cannot be reached, as a terminal's synced copy does.
"""

from __future__ import annotations

import contextlib
from typing import Any

from cardcore.records import Bill
from terminal_sim.host_client import HostClient, HostError, HostUnavailable
from terminal_sim.online import (
    HostRefused,
    LoadAuthorization,
    UnlockAuthorization,
    escape_bill_refusal,
)

VERSION_AHEAD = "E_VERSION_AHEAD"


def _refused(error: HostError) -> HostRefused:
    message = str(error).removeprefix(f"{error.code}: ")
    return HostRefused(error.code, message, **error.details)


class HttpOnlineHost:
    """`client` signs the office's calls; `bill_client` (default: the same) uploads bills."""

    def __init__(self, client: HostClient, *, bill_client: HostClient | None = None) -> None:
        self.client = client
        self.bill_client = bill_client or client
        self.blacklist_version = 0
        self._listed: set[str] = set()

    def _post(self, asn: bytes, operation: str, payload: dict[str, Any]) -> Any:
        try:
            return self.client.request(
                "POST", f"/v1/cards/{asn.hex()}/{operation}", payload=payload
            )
        except HostUnavailable:
            raise
        except HostError as error:
            raise _refused(error) from error

    # Blacklist ----------------------------------------------------------------------------------
    def blacklisted(self, asn: bytes) -> bool:
        with contextlib.suppress(HostError):  # unreachable or refused: the list as last synced
            self.sync_blacklist()
        return asn.hex() in self._listed

    def sync_blacklist(self) -> int:
        """Apply the host's changes since the version last applied; returns the new version."""
        try:
            delta = self.client.blacklist(since=self.blacklist_version)
        except HostError as error:
            if error.code != VERSION_AHEAD:
                raise
            self.blacklist_version, self._listed = 0, set()  # a new host database: start again
            delta = self.client.blacklist(since=0)
        while True:
            for change in delta.changes:
                if change.action == "add":
                    self._listed.add(change.asn)
                else:
                    self._listed.discard(change.asn)
            self.blacklist_version = delta.next_since
            if not delta.more:
                return self.blacklist_version
            delta = self.client.blacklist(since=self.blacklist_version)

    def report_loss(self, asn: bytes) -> None:
        try:
            self.client.report_loss(asn)
        except HostUnavailable:
            raise
        except HostError as error:
            raise _refused(error) from error

    def unblock(self, asn: bytes) -> None:
        try:
            self.client.unblock(asn)
        except HostUnavailable:
            raise
        except HostError as error:
            raise _refused(error) from error

    # Load ---------------------------------------------------------------------------------------
    def authorize_load(
        self,
        asn: bytes,
        *,
        rand: bytes,
        online_ctc: int,
        old_balance: int,
        amount: int,
        term: bytes,
        mac1: bytes,
    ) -> LoadAuthorization:
        answer = self._post(
            asn,
            "load/authorize",
            {
                "term": term.hex(),
                "rand": rand.hex(),
                "online_ctc": online_ctc,
                "old_balance": old_balance,
                "amount": amount,
                "mac1": mac1.hex(),
            },
        )
        return LoadAuthorization(bytes.fromhex(answer["mac2"]), bytes.fromhex(answer["dt"]))

    def confirm_load(
        self,
        asn: bytes,
        *,
        new_balance: int,
        online_ctc: int,
        amount: int,
        term: bytes,
        dt: bytes,
        tac: bytes,
    ) -> None:
        self._post(
            asn,
            "load/confirm",
            {
                "term": term.hex(),
                "online_ctc": online_ctc,
                "new_balance": new_balance,
                "amount": amount,
                "dt": dt.hex(),
                "tac": tac.hex(),
            },
        )

    # Maintenance MACs ---------------------------------------------------------------------------
    def _mac(self, asn: bytes, operation: str, payload: dict[str, Any]) -> bytes:
        return bytes.fromhex(self._post(asn, operation, payload)["mac"])

    def store_flag_mac(self, asn: bytes, *, command: bytes, challenge: bytes) -> bytes:
        return self._mac(
            asn, "store-flag/mac", {"command": command.hex(), "challenge": challenge.hex()}
        )

    def block_mac(self, asn: bytes, *, challenge: bytes, permanent: bool = False) -> bytes:
        return self._mac(asn, "block/mac", {"challenge": challenge.hex(), "permanent": permanent})

    def unblock_mac(self, asn: bytes, *, challenge: bytes) -> bytes:
        return self._mac(asn, "unblock/mac", {"challenge": challenge.hex()})

    def reload_pin_mac(self, asn: bytes, *, pin_block: bytes) -> bytes:
        return self._mac(asn, "pin/reload-mac", {"pin_block": pin_block.hex()})

    # Escape bills and online unlock -------------------------------------------------------------
    def record_escape_bill(self, bill: Bill) -> None:
        """Upload the escape bill for its own terminal; a rejected bill raises `E_BAD_BILL`."""
        refusal = escape_bill_refusal(bill)
        if refusal is not None:
            raise refusal
        try:
            (result,) = self.bill_client.upload_bills([bill], terminal_id=bill.term.hex().upper())
        except HostUnavailable:
            raise
        except HostError as error:
            raise _refused(error) from error
        if result.status == "rejected":
            raise HostRefused("E_BAD_BILL", f"{result.reason}: {result.message}")

    def authorize_online_unlock(
        self,
        asn: bytes,
        *,
        rand: bytes,
        online_ctc: int,
        balance: int,
        offline_ctc: int,
        term: bytes,
        mac1: bytes,
    ) -> UnlockAuthorization:
        answer = self._post(
            asn,
            "unlock/authorize",
            {
                "term": term.hex(),
                "rand": rand.hex(),
                "online_ctc": online_ctc,
                "balance": balance,
                "offline_ctc": offline_ctc,
                "mac1": mac1.hex(),
            },
        )
        return UnlockAuthorization(
            answer["amount"],
            bytes.fromhex(answer["dt"]),
            bytes.fromhex(answer["mac2"]),
            answer["lock_ctc"],
        )

    def confirm_online_unlock(
        self,
        asn: bytes,
        *,
        rand: bytes,
        online_ctc: int,
        balance_after: int,
        amount: int,
        term: bytes,
        dt: bytes,
        mac3: bytes,
    ) -> None:
        self._post(
            asn,
            "unlock/confirm",
            {
                "term": term.hex(),
                "rand": rand.hex(),
                "online_ctc": online_ctc,
                "balance_after": balance_after,
                "amount": amount,
                "dt": dt.hex(),
                "mac3": mac3.hex(),
            },
        )

    def close(self) -> None:
        self.client.close()
        if self.bill_client is not self.client:
            self.bill_client.close()
