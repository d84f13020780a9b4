"""The phone's host over the signed HTTP API: cards, limited-use keys and the host's clock.

The host sends its time in whole seconds (truncated), so the true time of a reading lies in
[stamp, stamp + 1): the adapter reports the middle, stamp + 0.5, and the phone's NTP-style sync
adds the half round trip. The result is within half a second plus the path asymmetry.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from terminal_sim.host_client import HostClient, HostError
from terminal_sim.phone_state import CardGrant, LukGrant


class HttpPhoneHost:
    """`PhoneHost` over a `HostClient` signed with the driver's AK/SK."""

    def __init__(self, client: HostClient) -> None:
        self.client = client

    def server_time(self) -> float:
        return self.client.server_time().timestamp() + 0.5

    def provision(self, card_id: str, device_id: str) -> CardGrant:
        for card in self.client.vfc_cards():
            if card["card_id"] == card_id:
                return _card(card)
        raise HostError(
            "E_UNKNOWN_CARD",
            f"card {card_id} is not bound to this driver",
            status=None,
            details={"card_id": card_id},
        )

    def fetch_luks(self, card_id: str, device_id: str, count: int) -> list[LukGrant]:
        answer = self.client.vfc_keys(card_id, count)
        return [
            LukGrant(
                int(k["index"]), bytes.fromhex(k["key"]), int(k["expires_at"]), int(k["budget"])
            )
            for k in answer["keys"]
        ]


def _card(card: dict[str, Any]) -> CardGrant:
    return CardGrant(
        card_id=str(card["card_id"]),
        card_number=str(card["card_number"]),
        expiry=date.fromisoformat(str(card["expiry"])),
        alias=str(card["alias"]),
        kv=int(card["kv"]),
    )
