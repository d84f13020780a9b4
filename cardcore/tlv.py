"""BER-TLV (ISO 7816-4 / EMV) codec for FCIs, directory records and virtual-card tokens.

`pytlv` knows EMV tag names but not long-form lengths or constructed tags, so the codec is ours;
its name table feeds `tag_name`, extended with the names of this profile's own tags.

Decisions (the decoder is strict; the encoder is canonical):

- Tags are ints (`0x9F26`) of 1 to 3 bytes. A first byte with low bits 11111 continues; subsequent
  bytes continue while b8 is set. `00` and `FF` are not tags (ISO 7816-4 reserves them as padding).
- Lengths: short form `00`–`7F`, long form `81`, `82`, `83`. The indefinite form `80` and longer
  length-of-length bytes are rejected, and so is a non-minimal long form (`81 05`), so that
  re-encoding decoded bytes gives them back unchanged (they may be MAC or cryptogram input).
- Constructed tags (b6 of the first byte) are decoded recursively; their content must be TLV.
  A constructed object's `value` is always the encoding of its children.
- Padding between objects (`00` in EMV Book 3 Annex B, `00` or `FF` in ISO 7816-4) is rejected
  unless `padding=True`; then both are skipped, so re-encoding drops them.
- `unique=True` rejects a tag that occurs twice at the same level (the token rule "no duplicate
  tags"). The same tag at different levels is fine.
- Nesting is limited to MAX_DEPTH levels, so hostile input cannot exhaust the stack.
- Every malformed input raises `DecodeError` with `field` "tag" or "length" and the absolute
  offset of the offending byte; nothing else escapes `decode_all` or `decode_one`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from pytlv.TLV import emv_tags as _PYTLV_EMV_TAGS

from cardcore.errors import DecodeError

MAX_TAG_BYTES = 3
MAX_LENGTH_BYTES = 3  # up to the 83 form
MAX_LENGTH = (1 << 8 * MAX_LENGTH_BYTES) - 1
MAX_DEPTH = 32
PADDING = (0x00, 0xFF)

BytesLike = bytes | bytearray | memoryview


def tag_bytes(tag: int) -> bytes:
    return tag.to_bytes(max(1, (tag.bit_length() + 7) // 8), "big")


def tag_hex(tag: int) -> str:
    return tag_bytes(tag).hex().upper()


def is_constructed(tag: int) -> bool:
    return bool(tag_bytes(tag)[0] & 0x20)


def check_tag(tag: int) -> None:
    """Raise ValueError unless `tag` is a well-formed BER tag of at most MAX_TAG_BYTES bytes."""
    if tag <= 0 or tag >= 1 << (8 * MAX_TAG_BYTES):
        raise ValueError(f"tag {tag:#x} is not 1 to {MAX_TAG_BYTES} bytes")
    raw = tag_bytes(tag)
    if raw[0] == 0xFF:
        raise ValueError("FF is padding, not a tag")
    multi = raw[0] & 0x1F == 0x1F
    if not multi:
        if len(raw) > 1:
            raise ValueError(f"tag {tag_hex(tag)}: first byte does not announce more tag bytes")
        return
    if len(raw) == 1:
        raise ValueError(f"tag {tag_hex(tag)}: first byte announces more tag bytes")
    *middle, last = raw[1:]
    if any(not b & 0x80 for b in middle) or last & 0x80:
        raise ValueError(f"tag {tag_hex(tag)}: only the last tag byte may have b8 clear")


def encode_length(n: int) -> bytes:
    if n < 0 or n > MAX_LENGTH:
        raise ValueError(f"length {n} does not fit the 83 form")
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


@dataclass(frozen=True, slots=True)
class Tlv:
    """One data object. Primitive: `children` is None. Constructed: `children` is a tuple and
    `value` is filled in as their encoding (pass no value, or exactly that encoding)."""

    tag: int
    value: bytes = b""
    children: tuple[Tlv, ...] | None = None

    def __post_init__(self) -> None:
        check_tag(self.tag)
        if is_constructed(self.tag):
            if self.children is None:
                raise ValueError(f"constructed tag {tag_hex(self.tag)} needs children")
            encoded = b"".join(child.encode() for child in self.children)
            if self.value and self.value != encoded:
                raise ValueError(f"value of {tag_hex(self.tag)} is not the encoding of children")
            object.__setattr__(self, "value", encoded)
        elif self.children is not None:
            raise ValueError(f"primitive tag {tag_hex(self.tag)} cannot have children")
        if len(self.value) > MAX_LENGTH:
            raise ValueError(f"value of {len(self.value)} bytes does not fit the 83 form")

    @property
    def tag_hex(self) -> str:
        return tag_hex(self.tag)

    @property
    def constructed(self) -> bool:
        return self.children is not None

    @property
    def name(self) -> str | None:
        return tag_name(self.tag)

    def encode(self) -> bytes:
        return tag_bytes(self.tag) + encode_length(len(self.value)) + self.value

    def __bytes__(self) -> bytes:
        return self.encode()

    def walk(self) -> Iterator[Tlv]:
        """This object and all its descendants, depth-first, in encoding order."""
        yield self
        for child in self.children or ():
            yield from child.walk()

    def find(self, tag: int) -> Tlv | None:
        """The first descendant (not this object itself) with `tag`, depth-first."""
        return find(self.children or (), tag)


def build(tag: int, content: BytesLike | Iterable[Tlv]) -> Tlv:
    """A primitive object from bytes, or a constructed one from its children."""
    if isinstance(content, BytesLike):
        return Tlv(tag, bytes(content))
    return Tlv(tag, children=tuple(content))


def encode(tlvs: Tlv | Iterable[Tlv]) -> bytes:
    if isinstance(tlvs, Tlv):
        return tlvs.encode()
    return b"".join(t.encode() for t in tlvs)


def walk(tlvs: Iterable[Tlv]) -> Iterator[Tlv]:
    for t in tlvs:
        yield from t.walk()


def find(tlvs: Iterable[Tlv], tag: int) -> Tlv | None:
    """The first object with `tag` among `tlvs` and their descendants, depth-first."""
    return next((t for t in walk(tlvs) if t.tag == tag), None)


def find_all(tlvs: Iterable[Tlv], tag: int) -> list[Tlv]:
    return [t for t in walk(tlvs) if t.tag == tag]


def decode_all(data: BytesLike, *, unique: bool = False, padding: bool = False) -> list[Tlv]:
    """Every object in `data`, which must hold nothing else (see the module docstring)."""
    raw = bytes(data)
    return _Decoder(raw, unique, padding).objects(0, len(raw), 0)


def decode_one(data: BytesLike, *, unique: bool = False, padding: bool = False) -> Tlv:
    """The single object that `data` holds; anything after it is an error."""
    raw = bytes(data)
    decoder = _Decoder(raw, unique, padding)
    start = decoder.skip_padding(0, len(raw))
    if start == len(raw):
        raise DecodeError("no object", field="tag", offset=start)
    obj, pos = decoder.one(start, len(raw), 0)
    end = decoder.skip_padding(pos, len(raw))
    if end != len(raw):
        raise DecodeError("trailing bytes after the object", field="tag", offset=end)
    return obj


class _Decoder:
    def __init__(self, data: bytes, unique: bool, padding: bool) -> None:
        self.data, self.unique, self.padding = data, unique, padding

    def skip_padding(self, pos: int, end: int) -> int:
        while self.padding and pos < end and self.data[pos] in PADDING:
            pos += 1
        return pos

    def objects(self, pos: int, end: int, depth: int) -> list[Tlv]:
        out: list[Tlv] = []
        seen: dict[int, int] = {}
        while (pos := self.skip_padding(pos, end)) < end:
            obj, next_pos = self.one(pos, end, depth)
            if self.unique and obj.tag in seen:
                raise DecodeError(
                    f"duplicate tag {obj.tag_hex} (first at offset {seen[obj.tag]})",
                    field="tag",
                    offset=pos,
                )
            seen.setdefault(obj.tag, pos)
            out.append(obj)
            pos = next_pos
        return out

    def one(self, start: int, end: int, depth: int) -> tuple[Tlv, int]:
        tag, pos = self.tag(start, end)
        length_at = pos
        length, pos = self.length(pos, end, tag)
        if length > end - pos:
            raise DecodeError(
                f"{tag_hex(tag)} declares {length} bytes, {end - pos} remain",
                field="length",
                offset=length_at,
            )
        if not is_constructed(tag):
            return Tlv(tag, self.data[pos : pos + length]), pos + length
        if depth + 1 >= MAX_DEPTH:
            raise DecodeError(f"nesting deeper than {MAX_DEPTH}", field="tag", offset=start)
        children = self.objects(pos, pos + length, depth + 1)
        return Tlv(tag, children=tuple(children)), pos + length

    def tag(self, pos: int, end: int) -> tuple[int, int]:
        first = self.data[pos]
        if first in PADDING:
            raise DecodeError(f"{first:02X} is padding, not a tag", field="tag", offset=pos)
        tag, pos = first, pos + 1
        if first & 0x1F != 0x1F:
            return tag, pos
        for _ in range(MAX_TAG_BYTES - 1):
            if pos >= end:
                raise DecodeError("truncated tag", field="tag", offset=pos)
            byte = self.data[pos]
            tag, pos = tag << 8 | byte, pos + 1
            if not byte & 0x80:
                return tag, pos
        raise DecodeError(f"tag longer than {MAX_TAG_BYTES} bytes", field="tag", offset=pos - 1)

    def length(self, pos: int, end: int, tag: int) -> tuple[int, int]:
        if pos >= end:
            raise DecodeError(f"{tag_hex(tag)} has no length", field="length", offset=pos)
        first = self.data[pos]
        if first < 0x80:
            return first, pos + 1
        if first == 0x80:
            raise DecodeError("indefinite length (80)", field="length", offset=pos)
        size = first & 0x7F
        if size > MAX_LENGTH_BYTES:
            raise DecodeError(f"length-of-length byte {first:02X}", field="length", offset=pos)
        if end - pos - 1 < size:
            raise DecodeError(f"truncated {first:02X} length", field="length", offset=pos)
        length = int.from_bytes(self.data[pos + 1 : pos + 1 + size], "big")
        if len(encode_length(length)) != 1 + size:
            raise DecodeError(f"non-minimal length {first:02X}", field="length", offset=pos)
        return length, pos + 1 + size


# pytlv's table, minus its placeholders, then ours: profile tags and context-specific meanings.
_NAMES: dict[int, str] = {
    int(k, 16): str(v) for k, v in _PYTLV_EMV_TAGS.items() if v != "Unknown Tag"
}
_NAMES.update(
    {
        0x61: "Application Template",
        0x62: "Common Data Template",
        0x63: "Application Specific Transparent Template",
        0x64: "Common Data Transparent Template",
        0x6F: "File Control Information (FCI) Template",
        0x70: "Record Template",
        0x84: "Dedicated File (DF) Name",
        0x85: "Payload Format Indicator",
        0x88: "Short File Identifier (SFI)",
        0x9F02: "Amount, Authorised (Numeric)",
        0x9F08: "Application Version Number",
        0xA5: "File Control Information (FCI) Proprietary Template",
        0xDF01: "Station ID",
        0xDF02: "Pump Number",
    }
)


def tag_name(tag: int) -> str | None:
    return _NAMES.get(tag)


def pretty(tlvs: Tlv | Iterable[Tlv], indent: str = "  ") -> str:
    """An indented dump: one line per object, `TAG name (length) value`, children below."""
    lines: list[str] = []

    def emit(t: Tlv, depth: int) -> None:
        head = f"{indent * depth}{t.tag_hex} {t.name or '?'} ({len(t.value)})"
        if t.children is None:
            text = t.value.hex().upper()
            if t.value and all(0x20 <= b < 0x7F for b in t.value):
                text += f' "{t.value.decode("ascii")}"'
            lines.append(f"{head} {text}".rstrip())
        else:
            lines.append(head)
            for child in t.children:
                emit(child, depth + 1)

    for t in [tlvs] if isinstance(tlvs, Tlv) else tlvs:
        emit(t, 0)
    return "\n".join(lines)
