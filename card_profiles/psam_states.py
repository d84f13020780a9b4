"""The PSAM's session states and which command each allows: one table, tested directly.

Order of checks after syntax: the DF the command runs in (6985 elsewhere), then the session the
command needs open (6985 otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, auto

from cardcore.sw import SW


class Df(IntEnum):
    MF = auto()
    ADF = auto()


class PsamPending(IntEnum):
    NONE = auto()
    PURCHASE = auto()  # after 80 70, until 80 72
    GREY_LOCK = auto()  # after E0 40, until E0 42


class PsamCmd(IntEnum):
    SELECT = auto()
    READ_BINARY = auto()
    INIT_SAM_FOR_PURCHASE = auto()
    CREDIT_SAM_FOR_PURCHASE = auto()
    INIT_SAM_FOR_GREY_LOCK = auto()
    VERIFY_GREY_LOCK_MAC2 = auto()
    GMAC_FOR_UNLOCK = auto()
    GET_GMAC_AGAIN = auto()
    INIT_FOR_DESCRYPT = auto()
    DES_CRYPT = auto()


@dataclass(frozen=True)
class PsamRule:
    dfs: frozenset[Df]
    needs: PsamPending | None = None
    needs_tmac_key: bool = False  # DES CRYPT needs INIT FOR DESCRYPT first


ANYWHERE = frozenset(Df)
ADF = frozenset({Df.ADF})

PSAM_RULES: dict[PsamCmd, PsamRule] = {
    PsamCmd.SELECT: PsamRule(ANYWHERE),
    PsamCmd.READ_BINARY: PsamRule(ANYWHERE),
    PsamCmd.INIT_SAM_FOR_PURCHASE: PsamRule(ADF),
    PsamCmd.CREDIT_SAM_FOR_PURCHASE: PsamRule(ADF, needs=PsamPending.PURCHASE),
    PsamCmd.INIT_SAM_FOR_GREY_LOCK: PsamRule(ADF),
    PsamCmd.VERIFY_GREY_LOCK_MAC2: PsamRule(ADF),  # also after a power loss: see psam.py
    PsamCmd.GMAC_FOR_UNLOCK: PsamRule(ADF),
    PsamCmd.GET_GMAC_AGAIN: PsamRule(ADF),
    PsamCmd.INIT_FOR_DESCRYPT: PsamRule(ADF),
    PsamCmd.DES_CRYPT: PsamRule(ADF, needs_tmac_key=True),
}


def psam_precheck(cmd: PsamCmd, df: Df, pending: PsamPending, tmac_key: bool) -> SW | None:
    rule = PSAM_RULES[cmd]
    if df not in rule.dfs:
        return SW.CONDITIONS_NOT_SATISFIED
    if rule.needs is not None and pending is not rule.needs:
        return SW.CONDITIONS_NOT_SATISFIED
    if rule.needs_tmac_key and not tmac_key:
        return SW.CONDITIONS_NOT_SATISFIED
    return None
