"""Builders for every command of spec §2 and §4, and the names a trace shows for them.

Builders take typed values and return CommandApdu with the Le the spec shows; `command_name`
maps any command APDU back to its spec name for traces and the CLI.
"""

from __future__ import annotations

from cardcore import layout
from cardcore.apdu import CommandApdu
from cardcore.bcd import encode_pin

# (CLA, INS, P1 or None for any) → name, most specific first.
_NAMES: dict[tuple[int, int, int | None], str] = {
    (0x00, 0xA4, None): "SELECT",
    (0x00, 0xB0, None): "READ BINARY",
    (0x00, 0xB2, None): "READ RECORD",
    (0x00, 0x20, None): "VERIFY",
    (0x00, 0x84, None): "GET CHALLENGE",
    (0x80, 0x5C, None): "GET BALANCE",
    (0x80, 0x50, 0x00): "INITIALIZE FOR LOAD",
    (0x80, 0x50, 0x01): "INITIALIZE FOR PURCHASE",
    (0x80, 0x52, None): "CREDIT FOR LOAD",
    (0x80, 0x54, None): "DEBIT FOR PURCHASE",
    (0xE0, 0x7A, 0x08): "INITIALIZE FOR GREY LOCK",
    (0xE0, 0x7A, 0x09): "INITIALIZE FOR ONLINE UNLOCK",
    (0xE0, 0x7C, None): "GREY LOCK",
    (0xE0, 0x7E, 0x08): "DEBIT FOR UNLOCK",
    (0xE0, 0x7E, 0x09): "ONLINE UNLOCK",
    (0xE0, 0xCA, 0x00): "GET LOCK PROOF",
    (0xE0, 0xCA, 0x01): "CLEAR TAC-UNREAD",
    (0x80, 0x5A, None): "GET TRANSACTION PROVE",
    (0x04, 0xD6, None): "UPDATE BINARY (MAC)",
    (0x84, 0x1E, None): "APPLICATION BLOCK",
    (0x84, 0x18, None): "APPLICATION UNBLOCK",
    (0x80, 0x5E, 0x01): "CHANGE PIN",
    (0x80, 0x5E, 0x00): "RELOAD PIN",
    (0x80, 0x70, None): "INIT SAM FOR PURCHASE",
    (0x80, 0x72, None): "CREDIT SAM FOR PURCHASE",
    (0xE0, 0x40, None): "INIT SAM FOR GREY LOCK",
    (0xE0, 0x42, None): "VERIFY GREY-LOCK MAC2",
    (0xE0, 0x44, None): "GMAC FOR UNLOCK",
    (0xE0, 0x46, None): "GET GMAC AGAIN",
    (0x80, 0x1A, None): "INIT FOR DESCRYPT",
    (0x80, 0xFA, None): "DES CRYPT",
}


COMMAND_NAMES: tuple[str, ...] = tuple(_NAMES.values())


def command_name(apdu: CommandApdu) -> str:
    for key in ((apdu.cla, apdu.ins, apdu.p1), (apdu.cla, apdu.ins, None)):
        if key in _NAMES:
            return _NAMES[key]
    return f"{apdu.cla:02X} {apdu.ins:02X}"


def u32(value: int) -> bytes:
    return value.to_bytes(4, "big")


def u16(value: int) -> bytes:
    return value.to_bytes(2, "big")


# ISO commands ----------------------------------------------------------------------------------
def select(name: bytes) -> CommandApdu:
    return CommandApdu(0x00, 0xA4, 0x04, 0x00, name, ne=256)


def read_binary(sfi: int, offset: int = 0, length: int = 256) -> CommandApdu:
    return CommandApdu(0x00, 0xB0, 0x80 | sfi, offset, ne=length)


def read_record(sfi: int, number: int, length: int = 256) -> CommandApdu:
    return CommandApdu(0x00, 0xB2, number, (sfi << 3) | 0x04, ne=length)


def verify(pin: str) -> CommandApdu:
    return CommandApdu(0x00, 0x20, 0x00, 0x00, encode_pin(pin))


def get_challenge(length: int = 4) -> CommandApdu:
    return CommandApdu(0x00, 0x84, 0x00, 0x00, ne=length)


# Purse ------------------------------------------------------------------------------------------
def get_balance(purse: int = layout.ET_PURSE) -> CommandApdu:
    return CommandApdu(0x80, 0x5C, 0x00, purse, ne=4)


def initialize_for_load(amount: int, term: bytes, kidx: int = layout.KEY_INDEX) -> CommandApdu:
    return CommandApdu(0x80, 0x50, 0x00, layout.ET_PURSE, bytes((kidx,)) + u32(amount) + term, 0x10)


def credit_for_load(dt: bytes, mac2: bytes) -> CommandApdu:
    return CommandApdu(0x80, 0x52, 0x00, 0x00, dt + mac2, ne=4)


def initialize_for_purchase(amount: int, term: bytes, kidx: int = layout.KEY_INDEX) -> CommandApdu:
    return CommandApdu(0x80, 0x50, 0x01, layout.ET_PURSE, bytes((kidx,)) + u32(amount) + term, 0x0F)


def debit_for_purchase(ttc: int, dt: bytes, mac1: bytes) -> CommandApdu:
    return CommandApdu(0x80, 0x54, 0x01, 0x00, u32(ttc) + dt + mac1, ne=8)


def initialize_for_grey_lock(term: bytes, kidx: int = layout.KEY_INDEX) -> CommandApdu:
    return CommandApdu(0xE0, 0x7A, 0x08, layout.ET_PURSE, bytes((kidx,)) + term, ne=0x0F)


def grey_lock(ttc: int, psam_rand: bytes, dt: bytes, mac1: bytes) -> CommandApdu:
    return CommandApdu(0xE0, 0x7C, 0x08, 0x00, u32(ttc) + psam_rand + dt + mac1, ne=8)


def debit_for_unlock(
    amount: int, ctc: int, term: bytes, ttc: int, dt: bytes, gmac: bytes
) -> CommandApdu:
    data = u32(amount) + u16(ctc) + term + u32(ttc) + dt + gmac
    return CommandApdu(0xE0, 0x7E, 0x08, layout.ET_PURSE, data, ne=4)


def initialize_for_online_unlock(term: bytes, kidx: int = layout.KEY_INDEX) -> CommandApdu:
    return CommandApdu(0xE0, 0x7A, 0x09, layout.ET_PURSE, bytes((kidx,)) + term, ne=0x12)


def online_unlock(amount: int, dt: bytes, mac2: bytes) -> CommandApdu:
    return CommandApdu(0xE0, 0x7E, 0x09, 0x00, u32(amount) + dt + mac2, ne=4)


def get_lock_proof() -> CommandApdu:
    return CommandApdu(0xE0, 0xCA, 0x00, 0x00, ne=layout.LOCK_RECORD_SIZE)


def clear_tac_unread() -> CommandApdu:
    return CommandApdu(0xE0, 0xCA, 0x01, 0x00, ne=256)


def get_transaction_prove(tx_type: int, ctc: int) -> CommandApdu:
    return CommandApdu(0x80, 0x5A, 0x00, tx_type, u16(ctc), ne=8)


# Issuer maintenance (the MAC comes from the HSM) ----------------------------------------------
def update_binary_mac_header(sfi: int, offset: int, data: bytes) -> bytes:
    """CLA‖INS‖P1‖P2‖Lc‖data: what the secure-messaging MAC covers (Lc counts the MAC)."""
    return bytes((0x04, 0xD6, 0x80 | sfi, offset, len(data) + 4)) + data


def update_binary_mac(sfi: int, offset: int, data: bytes, mac: bytes) -> CommandApdu:
    return CommandApdu(0x04, 0xD6, 0x80 | sfi, offset, data + mac)


def application_block_header(permanent: bool = False) -> bytes:
    return bytes((0x84, 0x1E, 0x00, 0x01 if permanent else 0x00, 0x04))


def application_block(mac: bytes, permanent: bool = False) -> CommandApdu:
    return CommandApdu(0x84, 0x1E, 0x00, 0x01 if permanent else 0x00, mac)


def application_unblock_header() -> bytes:
    return bytes((0x84, 0x18, 0x00, 0x00, 0x04))


def application_unblock(mac: bytes) -> CommandApdu:
    return CommandApdu(0x84, 0x18, 0x00, 0x00, mac)


def change_pin(old: str, new: str) -> CommandApdu:
    return CommandApdu(0x80, 0x5E, 0x01, 0x00, encode_pin(old) + b"\xff" + encode_pin(new))


def reload_pin(pin: str, mac: bytes) -> CommandApdu:
    return CommandApdu(0x80, 0x5E, 0x00, 0x00, encode_pin(pin) + mac)


# PSAM -------------------------------------------------------------------------------------------
def _sam_init(
    ins: int,
    rand: bytes,
    ctc: int,
    value: int,
    tx_type: int,
    dt: bytes,
    asn8: bytes,
    issuer8: bytes | None,
    ne: int,
) -> CommandApdu:
    data = (
        rand
        + u16(ctc)
        + u32(value)
        + bytes((tx_type,))
        + dt
        + bytes((layout.KEY_VERSION, layout.ALG_3DES))
        + asn8
        + (issuer8 or b"")
    )
    return CommandApdu(0xE0 if ins == 0x40 else 0x80, ins, 0x00, 0x00, data, ne=ne)


def init_sam_for_purchase(
    rand: bytes,
    ctc: int,
    amount: int,
    dt: bytes,
    asn8: bytes,
    issuer8: bytes | None,
    tx_type: int = layout.TxType.ED_PURCHASE,
) -> CommandApdu:
    return _sam_init(0x70, rand, ctc, amount, tx_type, dt, asn8, issuer8, 8)


def credit_sam_for_purchase(mac2: bytes) -> CommandApdu:
    return CommandApdu(0x80, 0x72, 0x00, 0x00, mac2)


def init_sam_for_grey_lock(
    rand: bytes, ctc: int, balance: int, dt: bytes, asn8: bytes, issuer8: bytes | None
) -> CommandApdu:
    return _sam_init(0x40, rand, ctc, balance, layout.TxType.GREY_LOCK, dt, asn8, issuer8, 0x0C)


def verify_grey_lock_mac2(mac2: bytes) -> CommandApdu:
    return CommandApdu(0xE0, 0x42, 0x00, 0x00, mac2)


def gmac_for_unlock(asn8: bytes, lock_ctc: int, amount: int) -> CommandApdu:
    data = bytes((layout.TxType.DEBIT_FOR_UNLOCK,)) + asn8 + u16(lock_ctc) + u32(amount)
    return CommandApdu(0xE0, 0x44, 0x00, 0x00, data, ne=8)


def get_gmac_again(lock_ttc: int) -> CommandApdu:
    return CommandApdu(0xE0, 0x46, 0x00, 0x00, u32(lock_ttc), ne=8)


def init_for_descrypt() -> CommandApdu:
    return CommandApdu(0x80, 0x1A, layout.TMAC_KEY_USAGE, layout.TMAC_KEY_VERSION)


def des_crypt_mac(data: bytes, more: bool = False) -> CommandApdu:
    p1 = layout.PSAM_DES_CRYPT_MAC | (layout.PSAM_DES_CRYPT_MORE if more else 0)
    return CommandApdu(0x80, 0xFA, p1, 0x00, data, ne=None if more else 4)


# Field layouts of command and response data, for decoded traces: (name, size) with size None
# for "the rest".
Fields = tuple[tuple[str, int | None], ...]
_SAM_INIT: Fields = (
    ("rand", 4),
    ("CTC", 2),
    ("amount", 4),
    ("type", 1),
    ("date", 4),
    ("time", 3),
    ("key ver", 1),
    ("alg", 1),
    ("ASN8", 8),
    ("issuer8", None),
)
FIELDS: dict[str, tuple[Fields, Fields]] = {
    "SELECT": ((("name", None),), (("FCI", None),)),
    "VERIFY": ((("PIN", None),), ()),
    "GET CHALLENGE": ((), (("challenge", None),)),
    "GET BALANCE": ((), (("balance", 4),)),
    "INITIALIZE FOR LOAD": (
        (("kidx", 1), ("amount", 4), ("term", 6)),
        (("balance", 4), ("online CTC", 2), ("key ver", 1), ("alg", 1), ("rand", 4), ("MAC1", 4)),
    ),
    "CREDIT FOR LOAD": ((("date", 4), ("time", 3), ("MAC2", 4)), (("TAC", 4),)),
    "INITIALIZE FOR PURCHASE": (
        (("kidx", 1), ("amount", 4), ("term", 6)),
        (
            ("balance", 4),
            ("offline CTC", 2),
            ("overdraft", 3),
            ("key ver", 1),
            ("alg", 1),
            ("rand", 4),
        ),
    ),
    "DEBIT FOR PURCHASE": (
        (("TTC", 4), ("date", 4), ("time", 3), ("MAC1", 4)),
        (("TAC", 4), ("MAC2", 4)),
    ),
    "INITIALIZE FOR GREY LOCK": (
        (("kidx", 1), ("term", 6)),
        (
            ("balance", 4),
            ("offline CTC", 2),
            ("overdraft", 3),
            ("key ver", 1),
            ("alg", 1),
            ("rand", 4),
        ),
    ),
    "GREY LOCK": (
        (("TTC", 4), ("psamRand", 4), ("date", 4), ("time", 3), ("MAC1", 4)),
        (("GTAC", 4), ("MAC2", 4)),
    ),
    "DEBIT FOR UNLOCK": (
        (("amount", 4), ("CTC", 2), ("term", 6), ("TTC", 4), ("date", 4), ("time", 3), ("GMAC", 4)),
        (("TAC", 4),),
    ),
    "INITIALIZE FOR ONLINE UNLOCK": (
        (("kidx", 1), ("term", 6)),
        (
            ("balance", 4),
            ("offline CTC", 2),
            ("online CTC", 2),
            ("key ver", 1),
            ("alg", 1),
            ("rand", 4),
            ("MAC1", 4),
        ),
    ),
    "ONLINE UNLOCK": ((("amount", 4), ("date", 4), ("time", 3), ("MAC2", 4)), (("MAC3", 4),)),
    "GET LOCK PROOF": (
        (),
        (
            ("status", 1),
            ("type", 1),
            ("ET id", 1),
            ("balance", 4),
            ("CTC", 2),
            ("term", 6),
            ("dt", 7),
            ("amount/MAC2", 4),
            ("TAC/GTAC", 4),
        ),
    ),
    "GET TRANSACTION PROVE": ((("CTC", 2),), (("MAC", 4), ("TAC", 4))),
    "INIT SAM FOR PURCHASE": (_SAM_INIT, (("TTC", 4), ("MAC1", 4))),
    "CREDIT SAM FOR PURCHASE": ((("MAC2", 4),), ()),
    "INIT SAM FOR GREY LOCK": (
        tuple(("balance", 4) if name == "amount" else (name, size) for name, size in _SAM_INIT),
        (("TTC", 4), ("psamRand", 4), ("MAC1", 4)),
    ),
    "VERIFY GREY-LOCK MAC2": ((("MAC2", 4),), ()),
    "GMAC FOR UNLOCK": (
        (("type", 1), ("ASN8", 8), ("lock CTC", 2), ("amount", 4)),
        (("GMAC", 4), ("PSAM TAC", 4)),
    ),
    "GET GMAC AGAIN": ((("lock TTC", 4),), (("GMAC", 4), ("PSAM TAC", 4))),
    "DES CRYPT": ((("data", None),), (("MAC", 4),)),
}


def split_fields(layout_: Fields, data: bytes) -> list[tuple[str, bytes]]:
    """Cut `data` along a field layout; a short or long remainder is shown as it is."""
    out: list[tuple[str, bytes]] = []
    pos = 0
    for name, size in layout_:
        if pos >= len(data):
            break
        end = len(data) if size is None else pos + size
        out.append((name, data[pos:end]))
        pos = end
    if pos < len(data):
        out.append(("…", data[pos:]))
    return out


def decode_exchange(
    command: CommandApdu, response_data: bytes
) -> tuple[str, list[tuple[str, bytes]], list[tuple[str, bytes]]]:
    """Name, command fields and response fields of one exchange."""
    name = command_name(command)
    cmd_fields, resp_fields = FIELDS.get(name, ((("data", None),), (("data", None),)))
    return name, split_fields(cmd_fields, command.data), split_fields(resp_fields, response_data)
