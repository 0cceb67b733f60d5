"""The SSE decoder: events come out whole however the bytes were cut."""

from ai_hub import SSEDecoder

BODY = (
    ": a comment\n"
    'data: {"text": "héllo wörld ✓"}\n\n'
    "event: note\r\n"
    "data: line one\r\n"
    "data: line two\r\n\r\n"
    "data: third\r\r"
    "data: [DONE]\n\n"
).encode()


def decode(pieces):
    decoder = SSEDecoder()
    events = []
    for piece in pieces:
        events.extend(decoder.feed(piece))
    events.extend(decoder.close())
    return [(e.event, e.data) for e in events]


EXPECTED = [
    (None, '{"text": "héllo wörld ✓"}'),
    ("note", "line one\nline two"),
    (None, "third"),
    (None, "[DONE]"),
]


def test_whole_body_gives_every_event():
    assert decode([BODY]) == EXPECTED


def test_events_survive_every_cut_into_two_reads():
    for cut in range(len(BODY) + 1):
        assert decode([BODY[:cut], BODY[cut:]]) == EXPECTED, f"cut at byte {cut}"


def test_events_survive_one_byte_reads():
    # Splits every multi-byte character and every \r\n across reads.
    assert decode([BODY[i : i + 1] for i in range(len(BODY))]) == EXPECTED


def test_a_last_event_without_its_blank_line_is_kept_at_the_end():
    assert decode([b"data: a\n\ndata: b"]) == [(None, "a"), (None, "b")]


def test_a_field_without_space_and_a_leading_bom():
    assert decode(["\ufeffdata:x\n\n".encode()]) == [(None, "x")]
