"""The emulated PSAM: terminal-side MACs for purchase and grey lock, GMAC for unlock, bill TMAC.

The PSAM holds MPK, MTK and MTMAC and diversifies per card (n = 1: ASN8; n = 2: ASN8 then the
issuer factor). Its TTC and its recent grey-lock sessions are persistent, so `E0 44` and
`E0 46` still work after a power loss.

Cells: key.mpk, key.mtk, key.mtmac; ef15 (14), ef16 (6, the terminal id), ef17 (25); ttc (4);
grey (up to PSAM_GREY_SESSIONS GreySession records, newest first).
"""

from __future__ import annotations

from dataclasses import dataclass
from hmac import compare_digest

from card_profiles.applet import Applet, expect_lc, fail, fixed_answer, require
from card_profiles.nvm import Cells, Nvm
from card_profiles.psam_states import Df, PsamCmd, PsamPending, psam_precheck
from cardcore import crypto, layout
from cardcore.apdu import CommandApdu
from cardcore.keys import PsamKeys
from cardcore.layout import TxType
from cardcore.ports import Rng
from cardcore.records import PsamKeyInfo, PsamSerial
from cardcore.sw import SW
from cardcore.tlv import Tlv, encode

MF_FILES = {layout.SFI_PSAM_EF15: "ef15", layout.SFI_PSAM_EF16: "ef16"}
ADF_FILES = {layout.SFI_PSAM_EF17: "ef17"}
PSAM_FCI = encode(
    [Tlv(0x6F, children=(Tlv(0x84, layout.PSAM_AID), Tlv(0xA5, children=(Tlv(0x9F08, b"\x02"),))))]
)
MF_FID = b"\x3f\x00"
KIND = b"psam"
MAX_CHAIN = 1024  # bytes a chained DES CRYPT may accumulate


class SessionState:
    OPEN = 0  # E0 40 answered
    LOCKED = 1  # E0 42 verified the card's MAC2
    ANSWERED = 2  # E0 44 computed the GMAC


@dataclass(frozen=True, slots=True)
class GreySession:
    """One grey lock as the PSAM remembers it (56 bytes in memory)."""

    lock_ttc: int
    asn8: bytes
    lock_ctc: int
    sesgk: bytes
    term: bytes
    lock_dt: bytes
    balance: int
    state: int = SessionState.OPEN
    unlock_ttc: int = 0
    amount: int = 0
    gmac: bytes = bytes(4)
    psam_tac: bytes = bytes(4)

    SIZE = 56
    STATE_AT = 39  # state ‖ unlock TTC ‖ amount ‖ GMAC ‖ PSAM TAC fill bytes 39–55

    def to_bytes(self) -> bytes:
        return (
            self.lock_ttc.to_bytes(4, "big")
            + self.asn8
            + self.lock_ctc.to_bytes(2, "big")
            + self.sesgk
            + self.term
            + self.lock_dt
            + self.balance.to_bytes(4, "big")
            + bytes((self.state,))
            + self.unlock_ttc.to_bytes(4, "big")
            + self.amount.to_bytes(4, "big")
            + self.gmac
            + self.psam_tac
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> GreySession:
        def num(a: int, b: int) -> int:
            return int.from_bytes(raw[a:b], "big")

        return cls(
            num(0, 4),
            raw[4:12],
            num(12, 14),
            raw[14:22],
            raw[22:28],
            raw[28:35],
            num(35, 39),
            raw[39],
            num(40, 44),
            num(44, 48),
            raw[48:52],
            raw[52:56],
        )


class GreySessions:
    """The `grey` cell: GreySession records, newest first, searched without decoding them all."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    def find(self, key: bytes, start: int) -> tuple[int, GreySession] | None:
        """The newest record holding `key` at byte `start` (lock TTC at 0, ASN8 ‖ CTC at 4)."""
        size, end = GreySession.SIZE, start + len(key)
        for offset in range(0, len(self.raw), size):
            if self.raw[offset + start : offset + end] == key:
                return offset, GreySession.from_bytes(self.raw[offset : offset + size])
        return None

    def by_lock_ttc(self, lock_ttc: int) -> tuple[int, GreySession] | None:
        return self.find(lock_ttc.to_bytes(4, "big"), 0)

    def by_card(self, asn8: bytes, lock_ctc: bytes) -> tuple[int, GreySession] | None:
        return self.find(asn8 + lock_ctc, 4)

    def open_locks(self) -> list[tuple[int, GreySession]]:
        """Sessions whose E0 42 never came, newest first."""
        size, state_at = GreySession.SIZE, GreySession.STATE_AT
        return [
            (offset, GreySession.from_bytes(self.raw[offset : offset + size]))
            for offset in range(0, len(self.raw), size)
            if self.raw[offset + state_at] == SessionState.OPEN
        ]

    def with_new(self, session: GreySession) -> bytes:
        """The cell with `session` added; the oldest falls out beyond PSAM_GREY_SESSIONS."""
        return (session.to_bytes() + self.raw)[: layout.PSAM_GREY_SESSIONS * GreySession.SIZE]

    def with_tail(self, offset: int, state: int, answer: bytes = b"") -> bytes:
        """The cell with one record's state changed (and its unlock answer filled in)."""
        start = offset + GreySession.STATE_AT
        tail = bytes((state,)) + answer
        return self.raw[:start] + tail + self.raw[start + len(tail) :]


def store_sessions(sessions: list[GreySession]) -> bytes:
    return b"".join(s.to_bytes() for s in sessions[: layout.PSAM_GREY_SESSIONS])


@dataclass(slots=True)
class PsamSession:
    df: Df = Df.MF
    pending: PsamPending = PsamPending.NONE
    purchase_key: bytes = b""
    purchase_amount: bytes = b""
    grey_ttc: int = 0
    tmac_key: bool = False
    chain: bytes = b""


@dataclass(frozen=True, slots=True)
class InitRequest:
    """The data of 80 70 / E0 40 (Lc = 0x14 + 8·n, n = 1 or 2 diversification factors)."""

    rand: bytes
    ctc: bytes
    amount: bytes  # the purchase amount, or the balance for a grey lock
    tx_type: int
    dt: bytes
    key_version: int
    alg: int
    asn8: bytes
    issuer8: bytes | None

    @classmethod
    def parse(cls, data: bytes) -> InitRequest:
        issuer8 = data[28:36] if len(data) == 0x24 else None
        return cls(
            data[0:4],
            data[4:6],
            data[6:10],
            data[10],
            data[11:18],
            data[18],
            data[19],
            data[20:28],
            issuer8,
        )


class Psam(Applet):
    atr = layout.ATR_PSAM

    def __init__(self, nvm: Nvm, rng: Rng) -> None:
        super().__init__(nvm, rng)
        self.session = PsamSession()
        self.handlers = {
            (0x00, 0xA4): self.select,
            (0x00, 0xB0): self.read_binary,
            (0x80, 0x70): self.init_sam_for_purchase,
            (0x80, 0x72): self.credit_sam_for_purchase,
            (0xE0, 0x40): self.init_sam_for_grey_lock,
            (0xE0, 0x42): self.verify_grey_lock_mac2,
            (0xE0, 0x44): self.gmac_for_unlock,
            (0xE0, 0x46): self.get_gmac_again,
            (0x80, 0x1A): self.init_for_descrypt,
            (0x80, 0xFA): self.des_crypt,
        }

    def reset_session(self) -> None:
        self.session = PsamSession()

    def enter(self, cmd: PsamCmd) -> None:
        s = self.session
        sw = psam_precheck(cmd, s.df, s.pending, s.tmac_key)
        if sw is not None:
            fail(sw)

    @property
    def term(self) -> bytes:
        return self.nvm.cells["ef16"]

    def card_purchase_key(self, request: InitRequest) -> bytes:
        return crypto.purchase_key(self.nvm.cells["key.mpk"], request.asn8, request.issuer8)

    def next_ttc(self) -> int:
        ttc = int.from_bytes(self.nvm.cells["ttc"], "big")
        require(ttc < layout.TTC_MAX, SW.COUNTER_AT_MAXIMUM)
        return ttc

    # Files -------------------------------------------------------------------------------------
    def select(self, apdu: CommandApdu) -> bytes:
        if apdu.p2 != 0x00 or apdu.p1 not in (0x00, 0x04):
            fail(SW.WRONG_P1P2)
        self.enter(PsamCmd.SELECT)
        if apdu.p1 == 0x00 and apdu.data == MF_FID:
            self.session = PsamSession(df=Df.MF)
            return b""
        if apdu.p1 == 0x04 and apdu.data == layout.PSAM_AID:
            fixed_answer(apdu, len(PSAM_FCI))
            self.session = PsamSession(df=Df.ADF)
            return PSAM_FCI
        if not apdu.data:
            fail(SW.WRONG_LENGTH)
        fail(SW.FILE_NOT_FOUND)

    def read_binary(self, apdu: CommandApdu) -> bytes:
        if apdu.p1 & 0xE0 != 0x80:
            fail(SW.WRONG_P1P2)
        if apdu.data:
            fail(SW.WRONG_LENGTH)
        self.enter(PsamCmd.READ_BINARY)
        files = MF_FILES if self.session.df is Df.MF else ADF_FILES
        cell = files.get(apdu.p1 & 0x1F)
        if cell is None:
            fail(SW.FILE_NOT_FOUND)
        content = self.nvm.cells[cell]
        if apdu.p2 >= len(content):
            fail(SW.WRONG_OFFSET)
        available = len(content) - apdu.p2
        wanted = available if apdu.ne is None or apdu.ne == 256 else apdu.ne
        if wanted > available:
            fail(0x6C00 | available)
        return content[apdu.p2 : apdu.p2 + wanted]

    # Purchase ----------------------------------------------------------------------------------
    def parse_init(self, apdu: CommandApdu, answer: int, cmd: PsamCmd) -> InitRequest:
        if apdu.p1 != 0x00 or apdu.p2 != 0x00:
            fail(SW.WRONG_P1P2)
        data = expect_lc(apdu, 0x1C, 0x24)
        fixed_answer(apdu, answer)
        self.enter(cmd)
        request = InitRequest.parse(data)
        require(request.key_version == layout.KEY_VERSION, SW.KEY_INDEX_UNKNOWN)
        require(request.alg == layout.ALG_3DES, SW.WRONG_DATA)
        return request

    def init_sam_for_purchase(self, apdu: CommandApdu) -> bytes:
        request = self.parse_init(apdu, 8, PsamCmd.INIT_SAM_FOR_PURCHASE)
        require(request.tx_type in (TxType.ED_PURCHASE, TxType.EP_PURCHASE), SW.WRONG_DATA)
        ttc = self.next_ttc().to_bytes(4, "big")
        key = crypto.session_key_purchase(
            self.card_purchase_key(request), request.rand, request.ctc, ttc
        )
        mac1 = crypto.mac_session(
            key, request.amount + bytes((request.tx_type,)) + self.term + request.dt
        )
        self.nvm.commit({"ttc": (int.from_bytes(ttc, "big") + 1).to_bytes(4, "big")})
        s = self.session
        s.pending, s.purchase_key, s.purchase_amount = PsamPending.PURCHASE, key, request.amount
        return ttc + mac1

    def credit_sam_for_purchase(self, apdu: CommandApdu) -> bytes:
        if apdu.p1 != 0x00 or apdu.p2 != 0x00:
            fail(SW.WRONG_P1P2)
        mac2 = expect_lc(apdu, 4)
        self.enter(PsamCmd.CREDIT_SAM_FOR_PURCHASE)
        s = self.session
        s.pending = PsamPending.NONE
        expected = crypto.mac_session(s.purchase_key, s.purchase_amount)
        require(compare_digest(expected, mac2), SW.MAC_WRONG)
        return b""

    # Grey lock ---------------------------------------------------------------------------------
    def init_sam_for_grey_lock(self, apdu: CommandApdu) -> bytes:
        request = self.parse_init(apdu, 12, PsamCmd.INIT_SAM_FOR_GREY_LOCK)
        require(request.tx_type == TxType.GREY_LOCK, SW.WRONG_DATA)
        ttc = self.next_ttc()
        # The unlock takes the next TTC: refuse a lock the PSAM could not unlock.
        require(ttc + 1 < layout.TTC_MAX, SW.COUNTER_AT_MAXIMUM)
        ttc4 = ttc.to_bytes(4, "big")
        psam_rand = self.random(4)
        sesgk = crypto.session_key_grey_lock(
            self.card_purchase_key(request), request.rand, request.ctc, ttc4, psam_rand
        )
        mac1 = crypto.mac_session(sesgk, bytes((TxType.GREY_LOCK,)) + self.term + request.dt)
        session = GreySession(
            ttc,
            request.asn8,
            int.from_bytes(request.ctc, "big"),
            sesgk,
            self.term,
            request.dt,
            int.from_bytes(request.amount, "big"),
        )
        grey = GreySessions(self.nvm.cells["grey"]).with_new(session)
        self.nvm.commit({"ttc": (ttc + 1).to_bytes(4, "big"), "grey": grey})
        self.session.pending, self.session.grey_ttc = PsamPending.GREY_LOCK, ttc
        return ttc4 + psam_rand + mac1

    def verify_grey_lock_mac2(self, apdu: CommandApdu) -> bytes:
        """E0 42 checks the card's MAC2 for the lock E0 40 just opened. After a PSAM power loss
        (the session forgotten, the lock still open in memory) it checks it against the open
        locks, newest first: a matching MAC2 proves which lock the card made."""
        if apdu.p1 != 0x00 or apdu.p2 != 0x00:
            fail(SW.WRONG_P1P2)
        mac2 = expect_lc(apdu, 4)
        self.enter(PsamCmd.VERIFY_GREY_LOCK_MAC2)
        pending = self.session.pending is PsamPending.GREY_LOCK
        self.session.pending = PsamPending.NONE
        sessions = GreySessions(self.nvm.cells["grey"])
        if pending:
            found = sessions.by_lock_ttc(self.session.grey_ttc)
            candidates = [found] if found is not None else []
        else:
            candidates = sessions.open_locks()
        require(bool(candidates), SW.CONDITIONS_NOT_SATISFIED)
        for offset, session in candidates:
            expected = crypto.mac_session(session.sesgk, session.balance.to_bytes(4, "big"))
            if compare_digest(expected, mac2):
                if session.state == SessionState.OPEN:
                    self.nvm.commit({"grey": sessions.with_tail(offset, SessionState.LOCKED)})
                return b""
        fail(SW.MAC_WRONG)

    def gmac_for_unlock(self, apdu: CommandApdu) -> bytes:
        if apdu.p1 != 0x00 or apdu.p2 != 0x00:
            fail(SW.WRONG_P1P2)
        data = expect_lc(apdu, 15)
        fixed_answer(apdu, 8)
        self.enter(PsamCmd.GMAC_FOR_UNLOCK)
        require(data[0] == TxType.DEBIT_FOR_UNLOCK, SW.WRONG_DATA)
        asn8, amount = data[1:9], data[11:15]
        sessions = GreySessions(self.nvm.cells["grey"])
        found = sessions.by_card(asn8, data[9:11])
        if found is None:
            fail(SW.REFERENCED_DATA_NOT_FOUND)
        offset, session = found
        require(session.state != SessionState.OPEN, SW.CONDITIONS_NOT_SATISFIED)
        value = int.from_bytes(amount, "big")
        if session.state == SessionState.ANSWERED:
            # Asked again (the terminal lost the answer): the same amount gets the same answer.
            require(session.amount == value, SW.CONDITIONS_NOT_SATISFIED)
            return session.gmac + session.psam_tac
        require(value <= session.balance, SW.INSUFFICIENT_BALANCE)
        unlock_ttc = self.next_ttc()
        unlock_type = bytes((TxType.DEBIT_FOR_UNLOCK,))
        gmac = crypto.mac_session(session.sesgk, amount + unlock_type + asn8 + data[9:11])
        dtk_prime = crypto.tac_key(crypto.diversify(self.nvm.cells["key.mtk"], asn8))
        psam_tac = crypto.mac_session(
            dtk_prime,
            amount
            + unlock_type
            + session.term
            + session.lock_ttc.to_bytes(4, "big")
            + session.lock_dt,
        )
        answer = unlock_ttc.to_bytes(4, "big") + amount + gmac + psam_tac
        self.nvm.commit(
            {
                "ttc": (unlock_ttc + 1).to_bytes(4, "big"),
                "grey": sessions.with_tail(offset, SessionState.ANSWERED, answer),
            }
        )
        return gmac + psam_tac

    def get_gmac_again(self, apdu: CommandApdu) -> bytes:
        if apdu.p1 != 0x00 or apdu.p2 != 0x00:
            fail(SW.WRONG_P1P2)
        lock_ttc = int.from_bytes(expect_lc(apdu, 4), "big")
        fixed_answer(apdu, 8)
        self.enter(PsamCmd.GET_GMAC_AGAIN)
        found = GreySessions(self.nvm.cells["grey"]).by_lock_ttc(lock_ttc)
        if found is None or found[1].state != SessionState.ANSWERED:
            fail(SW.REFERENCED_DATA_NOT_FOUND)
        return found[1].gmac + found[1].psam_tac

    # Bill TMAC ---------------------------------------------------------------------------------
    def init_for_descrypt(self, apdu: CommandApdu) -> bytes:
        if (apdu.p1, apdu.p2) != (layout.TMAC_KEY_USAGE, layout.TMAC_KEY_VERSION):
            fail(SW.WRONG_P1P2)
        if apdu.data:
            fail(SW.WRONG_LENGTH)
        self.enter(PsamCmd.INIT_FOR_DESCRYPT)
        self.session.tmac_key, self.session.chain = True, b""
        return b""

    def des_crypt(self, apdu: CommandApdu) -> bytes:
        more = layout.PSAM_DES_CRYPT_MORE
        if apdu.p1 & ~more != layout.PSAM_DES_CRYPT_MAC or apdu.p2 != 0x00:
            fail(SW.WRONG_P1P2)
        if not apdu.data or len(self.session.chain) + len(apdu.data) > MAX_CHAIN:
            fail(SW.WRONG_LENGTH)
        self.enter(PsamCmd.DES_CRYPT)
        chain = self.session.chain + apdu.data
        if apdu.p1 & more:
            self.session.chain = chain
            return b""
        self.session.chain = b""
        return crypto.mac_retail(self.nvm.cells["key.mtmac"], chain)


@dataclass(frozen=True)
class PsamContent:
    """Everything a PSAM holds, in typed form; `cells()` lays it out in memory."""

    keys: PsamKeys
    serial: PsamSerial
    term: bytes
    key_info: PsamKeyInfo
    ttc: int = 0
    sessions: tuple[GreySession, ...] = ()

    def cells(self) -> Cells:
        return {
            "kind": KIND,
            "key.mpk": self.keys.mpk,
            "key.mtk": self.keys.mtk,
            "key.mtmac": self.keys.mtmac,
            "ef15": self.serial.to_bytes(),
            "ef16": self.term,
            "ef17": self.key_info.to_bytes(),
            "ttc": self.ttc.to_bytes(4, "big"),
            "grey": store_sessions(list(self.sessions)),
        }
