"""Reading a feed as a stream: gzip expanded on the fly under a cap, HTML entities repaired on the way.

A Merchant feed can expand from a few MB of gzip to hundreds of MB. Nothing here holds the expanded
feed: ``open_feed`` returns a file object that decompresses as the XML parser reads, and refuses to
expand past ``max_decompressed_bytes``; ``EntityRepair`` rewrites HTML named entities (``&ecirc;``)
that XML does not define into numeric references (``&#234;``) as they pass, and counts them so the
import can say what it repaired.
"""

from __future__ import annotations

import html.entities
import io
import re
import zlib
from collections import Counter
from typing import BinaryIO

from .records import GZIP_MAGIC, FeedError

READ_SIZE = 1 << 16
# The five entities XML defines; any other name must be declared in a DTD (and DTDs are refused).
XML_ENTITIES = {"amp", "lt", "gt", "quot", "apos"}
_NAMED_ENTITY = re.compile(rb"&([A-Za-z][A-Za-z0-9]{1,31});")
_LONGEST_ENTITY = 34  # "&" + 32 characters + ";"


class CappedGunzip(io.RawIOBase):
    """The expanded bytes of gzip ``data`` (one or more members), read on demand; ``FeedError`` once
    more than ``max_decompressed_bytes`` would come out, or when the stream is corrupt."""

    def __init__(self, data: bytes, *, max_decompressed_bytes: int) -> None:
        self._data = memoryview(data)
        self._offset = 0
        self._max = max_decompressed_bytes
        self._total = 0
        self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        wanted = len(buffer)
        while not self._pending:
            if self._inflater.eof:
                rest = self._inflater.unused_data + bytes(self._data[self._offset :])
                if not rest.startswith(GZIP_MAGIC):
                    return 0  # the end (trailing garbage after the last member is ignored, as gzip does)
                self._data, self._offset = memoryview(rest), 0
                self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            chunk = self._data[self._offset : self._offset + READ_SIZE]
            self._offset += len(chunk)
            try:
                # max_length bounds what one call can produce, so a bomb never sits in memory whole.
                self._pending = self._inflater.decompress(
                    self._inflater.unconsumed_tail + bytes(chunk), READ_SIZE
                )
            except zlib.error as error:
                raise FeedError(f"gzip data is corrupt: {error}") from None
            if not chunk and not self._pending and not self._inflater.eof:
                if self._inflater.unconsumed_tail:
                    continue
                raise FeedError("gzip data is truncated")
        out, self._pending = self._pending[:wanted], self._pending[wanted:]
        self._total += len(out)
        if self._total > self._max:
            raise FeedError(
                f"the gzip feed expands to more than {self._max:,} bytes "
                "(SCRAPER['MAX_FEED_BYTES'] × 10); refused"
            )
        buffer[: len(out)] = out
        return len(out)


def open_feed(data: bytes, *, max_decompressed_bytes: int) -> BinaryIO:
    """A stream over the feed's bytes, expanded on the fly when they are gzip (by magic bytes)."""
    if data.startswith(GZIP_MAGIC):
        return io.BufferedReader(CappedGunzip(data, max_decompressed_bytes=max_decompressed_bytes))
    return io.BytesIO(data)


class EntityRepair(io.RawIOBase):
    """Passes XML through, rewriting HTML named entities XML lacks (``&ecirc;`` → ``&#234;``).

    ``repaired`` counts the names rewritten. Names that are neither XML's nor HTML's are left alone, so
    the parser still reports them (and entity declarations are still refused).
    """

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._pending = b""
        self._carry = b""
        self.repaired: Counter[str] = Counter()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            chunk = self._stream.read(READ_SIZE)
            if not chunk:
                self._pending, self._carry = self._carry, b""
                if not self._pending:
                    return 0
                break
            text = self._carry + chunk
            # An entity cut by the chunk's end waits for the next chunk.
            cut = text.rfind(b"&", max(0, len(text) - _LONGEST_ENTITY))
            if cut >= 0 and b";" not in text[cut:]:
                text, self._carry = text[:cut], text[cut:]
            else:
                self._carry = b""
            self._pending = _NAMED_ENTITY.sub(self._replace, text)
        out, self._pending = self._pending[: len(buffer)], self._pending[len(buffer) :]
        buffer[: len(out)] = out
        return len(out)

    def _replace(self, match: re.Match[bytes]) -> bytes:
        name = match.group(1).decode("ascii")
        if name in XML_ENTITIES:
            return match.group(0)
        characters = html.entities.html5.get(name + ";")
        if characters is None:
            return match.group(0)
        self.repaired[name] += 1
        return "".join(f"&#{ord(character)};" for character in characters).encode("ascii")

    def warning(self) -> str:
        """What was repaired, for the job's warnings; "" when nothing was."""
        if not self.repaired:
            return ""
        names = ", ".join(f"&{name}; ({count:,}×)" for name, count in self.repaired.most_common(8))
        more = f" and {len(self.repaired) - 8} more" if len(self.repaired) > 8 else ""
        return (
            f"the feed uses HTML entities that XML does not define: {names}{more}. They were read as the "
            "characters they stand for. To fix the feed, write the characters themselves (UTF-8) or "
            "numeric references such as &#234;."
        )
