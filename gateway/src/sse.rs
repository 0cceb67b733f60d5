//! Server-sent events from an upstream's bytes, parsed incrementally as the WHATWG spec reads
//! them: lines end in `\n`, `\r\n` or `\r`, and are decoded only once whole. A network read can
//! end anywhere — inside a UTF-8 character, between `\r` and `\n` — without changing what comes
//! out. Only the `data` field matters to the gateway; comments and other fields are skipped.

/// The events seen so far of one stream. Pure: bytes in, complete `data` payloads out.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of the line not yet ended.
    pending: Vec<u8>,
    /// The last byte read was a `\r`: a `\n` starting the next read belongs to it.
    after_cr: bool,
    /// The `data` lines of the event being read.
    data: Vec<String>,
}

impl SseParser {
    /// Reads one network chunk; returns the `data` of every event it completes, in order.
    pub fn push(&mut self, mut bytes: &[u8]) -> Vec<String> {
        let mut events = Vec::new();
        if self.after_cr {
            self.after_cr = false;
            if let Some(rest) = bytes.strip_prefix(b"\n") {
                bytes = rest;
            }
        }
        while let Some(end) = bytes.iter().position(|b| *b == b'\n' || *b == b'\r') {
            self.pending.extend_from_slice(&bytes[..end]);
            let line = std::mem::take(&mut self.pending);
            self.line(&line, &mut events);
            let cr = bytes[end] == b'\r';
            bytes = &bytes[end + 1..];
            if cr {
                match bytes.first() {
                    Some(b'\n') => bytes = &bytes[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
        }
        self.pending.extend_from_slice(bytes);
        events
    }

    /// The stream ended: an event cut off before its blank line still counts.
    pub fn finish(&mut self) -> Option<String> {
        let mut events = Vec::new();
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            self.line(&line, &mut events);
        }
        self.line(b"", &mut events);
        events.pop()
    }

    fn line(&mut self, line: &[u8], events: &mut Vec<String>) {
        if line.is_empty() {
            if !self.data.is_empty() {
                events.push(std::mem::take(&mut self.data).join("\n"));
            }
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (field, value) = match line.iter().position(|b| *b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        if field == b"data" {
            self.data.push(String::from_utf8_lossy(value).into_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every event of `bytes` when the network cuts it at `cuts`.
    fn parse(bytes: &[u8], cuts: &[usize]) -> Vec<String> {
        let mut parser = SseParser::default();
        let mut events = Vec::new();
        let mut from = 0;
        for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
            events.extend(parser.push(&bytes[from..cut]));
            from = cut;
        }
        events.extend(parser.finish());
        events
    }

    fn stream(texts: &[&str], newline: &str) -> (Vec<u8>, Vec<String>) {
        let mut bytes = String::new();
        let mut want = Vec::new();
        for text in texts {
            let data = format!("{{\"content\":\"{text}\"}}");
            bytes.push_str(&format!("data: {data}{newline}{newline}"));
            want.push(data);
        }
        bytes.push_str(&format!(
            ": keep-alive{newline}{newline}data: [DONE]{newline}{newline}"
        ));
        want.push("[DONE]".into());
        (bytes.into_bytes(), want)
    }

    #[test]
    fn every_split_point_of_chinese_emoji_and_crlf_streams_reads_the_same() {
        for newline in ["\n", "\r\n", "\r"] {
            let (bytes, want) = stream(&["你好，", "世界。", "👋🏽 مرحبا", "é"], newline);
            for cut in 0..=bytes.len() {
                assert_eq!(
                    parse(&bytes, &[cut]),
                    want,
                    "newline {newline:?}, cut at {cut}"
                );
            }
            for a in 0..bytes.len() {
                for b in a..bytes.len() {
                    assert_eq!(
                        parse(&bytes, &[a, b]),
                        want,
                        "{newline:?} cut at {a} and {b}"
                    );
                }
            }
            let every_byte: Vec<usize> = (1..bytes.len()).collect();
            assert_eq!(parse(&bytes, &every_byte), want, "one byte per read");
        }
    }

    #[test]
    fn fields_and_lines_follow_the_spec() {
        let bytes = b"event: x\ndata:a\ndata: b\nid: 1\nretry: 5\n\ndata\n\ndata: tail";
        assert_eq!(parse(bytes, &[]), ["a\nb", "", "tail"]);
        assert!(parse(b": only a comment\n\n", &[]).is_empty());
    }
}
