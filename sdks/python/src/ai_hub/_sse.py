"""Server-sent events, parsed as the WHATWG spec reads them, from bytes that arrive in any cut.

A network read can end anywhere: inside a line, between the ``\\r`` and ``\\n`` of a line ending,
or inside a multi-byte UTF-8 character. The decoder keeps what it has not yet seen end and hands
out an event only once its blank line has arrived.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, List, Optional


@dataclass
class ServerSentEvent:
    data: str
    event: Optional[str] = None
    id: Optional[str] = None


class SSEDecoder:
    def __init__(self) -> None:
        self._buffer = b""
        self._data: List[str] = []
        self._event: Optional[str] = None
        self._id: Optional[str] = None
        self._started = False

    def feed(self, chunk: bytes) -> Iterator[ServerSentEvent]:
        """The events that ``chunk`` completes, in order."""
        self._buffer += chunk
        while True:
            line, rest = self._take_line(self._buffer)
            if line is None:
                return
            self._buffer = rest
            event = self._line(line)
            if event is not None:
                yield event

    def close(self) -> Iterator[ServerSentEvent]:
        """What a final line without its ending completes (the stream ended)."""
        if self._buffer:
            line, self._buffer = self._buffer, b""
            event = self._line(line.rstrip(b"\r"))
            if event is not None:
                yield event
        event = self._line(b"")
        if event is not None:
            yield event

    @staticmethod
    def _take_line(buffer: bytes):
        ends = [i for i in (buffer.find(b"\n"), buffer.find(b"\r")) if i >= 0]
        if not ends:
            return None, buffer
        i = min(ends)
        if buffer[i] == 0x0A:
            return buffer[:i], buffer[i + 1 :]
        if i + 1 == len(buffer):
            return None, buffer  # a \r: its \n may come in the next read
        end = i + 2 if buffer[i + 1] == 0x0A else i + 1
        return buffer[:i], buffer[end:]

    def _line(self, raw: bytes) -> Optional[ServerSentEvent]:
        line = raw.decode("utf-8", errors="replace")
        if not self._started:
            self._started = True
            line = line.lstrip("\ufeff")
        if line == "":
            if not self._data and self._event is None:
                return None
            event = ServerSentEvent(data="\n".join(self._data), event=self._event, id=self._id)
            self._data, self._event = [], None
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        return None
