"""A dispenser paid with a virtual fleet card: QR text, numeric code or an NFC tap, parsed and
forwarded to the host with the pump's context. The terminal holds no keys and decides nothing:
the host validates (virtual-cards spec §4) and answers with a hold or a precise refusal.

Prepaid (authorisation code): `authorize` holds the amount limit and unlocks the nozzle;
`settle` completes with the delivered amount (the host releases the rest) or releases the whole
hold when nothing was delivered. Post-paid: `flash_pay` pays the pump's finished sale once.

NFC: SELECT the fuel card AID, then GET TOKEN with a fresh unpredictable number, the amount
limit, the station and the pump; the phone binds its cryptogram to all of them, so a token
tapped at one pump does not pay at another.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Protocol

from card_profiles.hce_applet import get_token_command, select_command
from cardcore import vfc
from cardcore.apdu import ResponseApdu
from cardcore.errors import FuelsimError
from cardcore.ports import Reader, Rng
from cardcore.sw import SW

METHODS = ("qr", "nfc", "numeric")


class VfcPumpError(FuelsimError):
    """The pump could not read a code (no phone, not armed, unreadable answer)."""

    title = "virtual card at the pump"


class VfcHost(Protocol):
    """The host's pump routes (terminal_sim.host_client.HostClient implements them)."""

    def vfc_authorize(
        self, method: str, data: str, *, pump: int, product: str, amount: int
    ) -> dict[str, Any]: ...

    def vfc_flash_pay(
        self, method: str, data: str, *, pump: int, product: str, amount: int, sale_id: str
    ) -> dict[str, Any]: ...

    def vfc_complete(self, hold_id: int, amount: int) -> dict[str, Any]: ...

    def vfc_release(self, hold_id: int) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Presented:
    """A code as the pump forwards it: method and text (NFC tokens as base64)."""

    method: str
    data: str


def presented_text(method: str, text: str) -> Presented:
    """A scanned QR or typed numeric code, cleaned of what scanners and people add."""
    if method not in ("qr", "numeric"):
        raise VfcPumpError(f"method must be qr or numeric, got {method!r}")
    cleaned = text.strip() if method == "qr" else text.replace(" ", "").strip()
    if not cleaned:
        raise VfcPumpError("empty code")
    return Presented(method, cleaned)


class VfcPump:
    """One nozzle's virtual card payments at station `station_id`."""

    def __init__(self, host: VfcHost, station_id: str, pump: int, rng: Rng) -> None:
        self.host = host
        self.station_id = station_id
        self.pump = pump
        self.rng = rng

    # Reading ---------------------------------------------------------------------------------

    def tap(self, reader: Reader, amount_limit: int) -> Presented:
        """Read a token from the phone on the NFC reader, bound to this pump and limit."""
        context = vfc.NfcContext(amount_limit, self.station_id, self.pump)
        reader.connect()
        try:
            select = ResponseApdu.from_bytes(reader.transmit(bytes(select_command())))
            if not select.ok:
                raise VfcPumpError(f"the phone refused SELECT: {SW.describe(select.sw)}")
            un = self.rng.random(vfc.UN_LEN)
            command = get_token_command(un, context)
            answer = ResponseApdu.from_bytes(reader.transmit(bytes(command)))
        finally:
            reader.disconnect()
        if answer.sw == SW.CONDITIONS_NOT_SATISFIED:
            raise VfcPumpError("the phone is not armed or its countdown is over: arm and tap again")
        if not answer.ok:
            raise VfcPumpError(f"the phone refused GET TOKEN: {SW.describe(answer.sw)}")
        return Presented("nfc", base64.b64encode(answer.data).decode("ascii"))

    # Paying ----------------------------------------------------------------------------------

    def authorize(self, code: Presented, product: str, amount_limit: int) -> dict[str, Any]:
        """Prepaid: the host holds `amount_limit` and the nozzle may be unlocked."""
        return self.host.vfc_authorize(
            code.method, code.data, pump=self.pump, product=product, amount=amount_limit
        )

    def settle(self, hold_id: int, delivered: int) -> dict[str, Any]:
        """After the nozzle is hung up: complete with what was delivered, or release."""
        if delivered == 0:
            return self.host.vfc_release(hold_id)
        return self.host.vfc_complete(hold_id, delivered)

    def flash_pay(self, code: Presented, product: str, amount: int, sale_id: str) -> dict[str, Any]:
        """Post-paid: pay the finished sale `sale_id` (paid once)."""
        return self.host.vfc_flash_pay(
            code.method,
            code.data,
            pump=self.pump,
            product=product,
            amount=amount,
            sale_id=sale_id,
        )
