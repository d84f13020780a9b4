"""Human-readable APDU traces and bills: what the CLI and the demo print."""

from __future__ import annotations

from cardcore.apdu import CommandApdu, ResponseApdu
from cardcore.commands import decode_exchange
from cardcore.errors import DecodeError
from cardcore.records import Bill
from cardcore.sw import SW
from terminal_sim.readers import Exchange


def spaced(raw: bytes) -> str:
    return raw.hex(" ").upper()


def describe_exchange(number: int, exchange: Exchange) -> list[str]:
    """Lines for one exchange: header with name and timing, the bytes, the decoded fields."""
    try:
        command = CommandApdu.from_bytes(exchange.command)
    except DecodeError:
        return [f"#{number:<3} {exchange.reader:<5} (malformed) → {spaced(exchange.command)}"]
    response = ResponseApdu.from_bytes(exchange.response) if exchange.response else None
    name, command_fields, response_fields = decode_exchange(
        command, response.data if response else b""
    )
    if command.ins == 0xB0 and command.p1 & 0x80:
        name += f" EF{command.p1 & 0x1F:02X}"
    elif command.ins == 0xB2:
        name += f" EF{command.p2 >> 3:02X} #{command.p1}"
    millis = exchange.seconds * 1000
    lines = [f"#{number:<3} {exchange.reader:<5} {name:<30} {millis:8.3f} ms"]
    lines.append(f"     → {spaced(exchange.command)}")
    lines += [f"         {field}: {value.hex().upper()}" for field, value in command_fields]
    if response is None:
        lines.append("     ← (no answer: the card was lost)")
        return lines
    lines.append(f"     ← {response.sw:04X} {SW.describe(response.sw)}")
    if response.data:
        lines += [f"         {field}: {value.hex().upper()}" for field, value in response_fields]
    return lines


def yuan(fen: int) -> str:
    return f"{fen // 100:,}.{fen % 100:02d}"


def bill_rows(bill: Bill) -> list[tuple[str, str]]:
    dt = bill.dt.hex()
    return [
        ("bill TTC", str(bill.bill_ttc)),
        ("type", f"{bill.tx_type:02X}"),
        ("date and time", f"{dt[:4]}-{dt[4:6]}-{dt[6:8]} {dt[8:10]}:{dt[10:12]}:{dt[12:14]}"),
        ("card ASN", bill.asn.hex().upper()),
        ("amount", yuan(bill.amount)),
        ("balance after", yuan(bill.balance_after)),
        ("card CTC", str(bill.ctc)),
        ("TAC", bill.tac.hex().upper()),
        ("GMAC", bill.gmac.hex().upper()),
        ("PSAM TAC", bill.psam_tac.hex().upper()),
        ("PSAM ASN", bill.psam_asn.hex().upper()),
        ("terminal", bill.term.hex().upper()),
        ("PSAM TTC", str(bill.psam_ttc)),
        ("nozzle", str(bill.nozzle)),
        ("grade", f"{bill.grade:04X}"),
        ("volume", f"{bill.volume / 100:.2f} L"),
        ("price", f"{yuan(bill.price)} /L"),
        ("TMAC", bill.tmac.hex().upper()),
        ("bytes", bill.to_bytes().hex().upper()),
    ]
