"""A recorded session served as a card: `ReplayCard` answers one reader's commands from a trace.

It is a `cardcore.ports.CardOS`, so it goes wherever an emulated card goes: `InProcReader` for
a terminal test in process, `terminal_sim.vpcd.VirtualSlot` to appear in pcscd. The terminal
under test must send the recorded commands in the recorded order (a command with masked bytes,
from a redacted trace, accepts anything in the masked places). Then:

- a matching command gets the recorded answer and the card moves on to the next step; a
  recorded answer with masked bytes is sent with those bytes set to 00 (the step is listed in
  `masked_answers`);
- any other command, or any command after the end, gets `divergence_sw` (6F00 by default), is
  listed in `divergences`, and the card stays at the step it expected, so the terminal can still
  send it;
- a step recorded as LOST answers `divergence_sw` and is listed in `lost_steps`; with
  `tear=True` the card instead loses power there (PowerLost, which InProcReader turns into
  CardLost and VirtualSlot into a card that vanishes without answering).

Power-on and reset return the ATR and keep the position; `rewind()` starts the session again.
Nothing else ever leaves `process`.
"""

from __future__ import annotations

from dataclasses import dataclass

from card_profiles.nvm import PowerLost
from cardcore import layout
from cardcore.errors import FuelsimError
from cardcore.sw import SW
from terminal_sim.traces import Pattern, Payload, Trace, command_label, format_payload


class ReplayCardError(FuelsimError):
    title = "replay card"


@dataclass(frozen=True)
class Divergence:
    """The terminal sent `got` where the recording has `expected` (None: the session was over)."""

    step: int | None  # the trace step the card expected, None after the last one
    expected: Payload | None
    got: bytes
    reason: str

    def describe(self) -> str:
        sent = f"{self.got.hex(' ').upper()} ({command_label(self.got)})"
        if self.expected is None:
            return f"after the last step: got {sent}: {self.reason}"
        wanted = f"{format_payload(self.expected)} ({command_label(self.expected)})"
        return f"step {self.step}: expected {wanted}, got {sent}: {self.reason}"


class ReplayCard:
    """Plays back the card side of `reader`'s exchanges in `trace` (see the module doc)."""

    def __init__(
        self,
        trace: Trace,
        reader: str = "card",
        *,
        atr: bytes | None = None,
        divergence_sw: int = SW.UNKNOWN,
        tear: bool = False,
    ) -> None:
        self.steps = trace.for_reader(reader)
        if not self.steps:
            raise ReplayCardError(
                f"the trace has no exchanges with reader {reader!r} (readers: {trace.readers})"
            )
        self.reader = reader
        self.atr = atr if atr is not None else _recorded_atr(trace, reader)
        self.divergence_answer = divergence_sw.to_bytes(2, "big")
        self.tear = tear
        self.powered = False
        self.position = 0
        self.divergences: list[Divergence] = []
        self.masked_answers: list[int] = []
        self.lost_steps: list[int] = []

    # Power ------------------------------------------------------------------------------------
    def power_on(self) -> bytes:
        self.powered = True
        return self.atr

    def power_off(self) -> None:
        self.powered = False

    def reset(self) -> bytes:
        self.powered = True
        return self.atr

    def rewind(self) -> None:
        """Back to the first step, forgetting divergences and notes."""
        self.position = 0
        self.divergences.clear()
        self.masked_answers.clear()
        self.lost_steps.clear()

    # Progress ---------------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self.position >= len(self.steps)

    @property
    def remaining(self) -> int:
        return len(self.steps) - self.position

    @property
    def ok(self) -> bool:
        """The terminal went through the whole recorded session without diverging."""
        return self.finished and not self.divergences

    # Commands ---------------------------------------------------------------------------------
    def process(self, apdu: bytes) -> bytes:
        self.powered = True
        try:
            return self._answer(bytes(apdu))
        except Exception as exc:  # never raise: a bug here is a divergence, not a crash
            self.divergences.append(Divergence(None, None, bytes(apdu), f"internal error: {exc!r}"))
            return self.divergence_answer

    def _answer(self, apdu: bytes) -> bytes:
        if self.finished:
            return self._diverge(None, None, apdu, "the recorded session is over")
        number, entry = self.steps[self.position]
        expected = entry.command
        fits = expected.matches(apdu) if isinstance(expected, Pattern) else expected == apdu
        if not fits:
            return self._diverge(number, expected, apdu, "not the recorded command")
        self.position += 1
        response = entry.response
        if response is None:
            if self.tear:
                self.powered = False
                raise PowerLost
            self.lost_steps.append(number)
            return self.divergence_answer
        if isinstance(response, Pattern):
            self.masked_answers.append(number)
            return response.filled()
        return response

    def _diverge(self, step: int | None, expected: Payload | None, got: bytes, why: str) -> bytes:
        self.divergences.append(Divergence(step, expected, got, why))
        return self.divergence_answer


def _recorded_atr(trace: Trace, reader: str) -> bytes:
    """The ATR in the trace's `atr.READER` metadata, else the emulated card's (or PSAM's)."""
    recorded = trace.meta.get(f"atr.{reader}")
    if recorded:
        try:
            return bytes.fromhex(recorded)
        except ValueError:
            pass
    return layout.ATR_PSAM if reader == "psam" else layout.ATR_USER_CARD
