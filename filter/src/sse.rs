//! `text/event-stream`: its lines, their fields, the data of an event, and
//! the events of a stream read as it comes or of a body that the filter's
//! own upstream calls return whole (a proxy-wasm callout is buffered).
//! Streams relayed to clients are cut into lines by [`Lines`] as they pass,
//! and their events' data gathered by [`push_data`] (see `relay`). It knows
//! nothing of JSON-RPC.

/// The data of each complete event in `body`, in order.
pub fn events(body: &str) -> Vec<String> {
    // A stream cut without its final blank line still delivered its event.
    let mut whole = format!("{body}\n\n").into_bytes();
    take_events(&mut whole).into_iter().filter_map(|e| e.data).collect()
}

/// A line's field and value: `data: x` is `("data", "x")` (the one space
/// after the colon is not the value's); a line without a colon is a field
/// with an empty value.
pub fn field(line: &str) -> (&str, &str) {
    match line.split_once(':') {
        Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
        None => (line, ""),
    }
}

/// Adds the value of a `data` line to an event's data: its lines are joined
/// by newlines.
pub fn push_data(data: &mut Option<String>, value: &str) {
    match data {
        Some(d) => {
            d.push('\n');
            d.push_str(value);
        }
        None => *data = Some(value.to_string()),
    }
}

/// One event of a stream read as it comes (see [`take_events`]).
#[derive(Debug, Default, PartialEq)]
pub struct Event {
    /// The `event` field (`None` means `message`).
    pub kind: Option<String>,
    pub data: Option<String>,
    pub id: Option<String>,
}

/// Removes the complete events at the front of `buf` and returns them.
pub fn take_events(buf: &mut Vec<u8>) -> Vec<Event> {
    let mut out = Vec::new();
    let mut current = Event::default();
    let mut used = 0;
    for line in Lines::new(buf) {
        if line.is_blank() {
            used = line.next;
            if current.data.is_some() || current.kind.is_some() {
                out.push(std::mem::take(&mut current));
            }
            continue;
        }
        let text = String::from_utf8_lossy(line.content);
        match field(&text) {
            ("event", value) => current.kind = Some(value.to_string()),
            ("id", value) => current.id = Some(value.to_string()),
            ("data", value) => push_data(&mut current.data, value),
            _ => {}
        }
    }
    buf.drain(..used.min(buf.len()));
    out
}

/// How far the search for complete events in a growing buffer got, so that
/// each byte is looked at once however the stream is cut into chunks: a
/// rescan from the start at every chunk made an event that never ends cost
/// quadratic time. Also measures each event against a bound.
#[derive(Debug, Default, Clone)]
pub struct Scan {
    /// Where the line being read starts.
    line_start: usize,
    /// Where the search for its end resumes.
    at: usize,
    /// Where the event being read starts.
    event_start: usize,
}

impl Scan {
    /// Reads what was added to `buf` since the last call. Returns the end of
    /// the last blank line found (complete events end there), and where the
    /// first event longer than `max` bytes (complete or not) starts, if any.
    pub fn advance(&mut self, buf: &[u8], max: usize) -> (Option<usize>, Option<usize>) {
        let mut cut = None;
        let mut over = None;
        while let Some(rest) = buf.get(self.at..) {
            let Some(len) = rest.iter().position(|b| *b == b'\n' || *b == b'\r') else {
                self.at = buf.len();
                break;
            };
            let end = self.at + len;
            let next = match (buf.get(end), buf.get(end + 1)) {
                (Some(b'\r'), Some(b'\n')) => end + 2,
                // A CR as the last byte may be half of a CRLF: wait for the next.
                (Some(b'\r'), None) => {
                    self.at = end;
                    break;
                }
                _ => end + 1,
            };
            if end == self.line_start {
                if over.is_none() && next - self.event_start > max {
                    over = Some(self.event_start);
                }
                cut = Some(next);
                self.event_start = next;
            }
            self.line_start = next;
            self.at = next;
        }
        if over.is_none() && buf.len().saturating_sub(self.event_start) > max {
            over = Some(self.event_start);
        }
        (cut, over)
    }

    /// The first `cut` bytes of the buffer went: positions move back.
    pub fn consumed(&mut self, cut: usize) {
        self.line_start = self.line_start.saturating_sub(cut);
        self.at = self.at.saturating_sub(cut);
        self.event_start = self.event_start.saturating_sub(cut);
    }
}

/// A line of an SSE stream: its content and where the next one starts.
pub struct Line<'a> {
    pub content: &'a [u8],
    pub next: usize,
}

impl Line<'_> {
    pub fn is_blank(&self) -> bool {
        self.content.is_empty()
    }
}

/// The complete lines of `buf` (ended by CRLF, LF or CR). A CR as the last
/// byte may be half of a CRLF, so its line is not complete yet.
pub struct Lines<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Lines<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Lines { buf, at: 0 }
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = Line<'a>;

    fn next(&mut self) -> Option<Line<'a>> {
        let rest = self.buf.get(self.at..)?;
        let len = rest.iter().position(|b| *b == b'\n' || *b == b'\r')?;
        let after = match (rest.get(len), rest.get(len + 1)) {
            (Some(b'\r'), Some(b'\n')) => len + 2,
            (Some(b'\r'), None) => return None,
            _ => len + 1,
        };
        let content = rest.get(..len)?;
        self.at += after;
        Some(Line { content, next: self.at })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_data_lines() {
        assert_eq!(field("data: {\"a\":1}"), ("data", "{\"a\":1}"));
        assert_eq!(field("data:x"), ("data", "x"));
        assert_eq!(field("data:  two"), ("data", " two"), "one space only is the separator's");
        assert_eq!(field("data"), ("data", ""));
        assert_eq!(field(": comment"), ("", "comment"));
        let mut data = None;
        for value in ["a", "", "b"] {
            push_data(&mut data, value);
        }
        assert_eq!(data.as_deref(), Some("a\n\nb"));
    }

    #[test]
    fn splits_events() {
        assert_eq!(events("event: message\ndata: {\"a\":1}\n\n"), vec!["{\"a\":1}"]);
        assert_eq!(events("id: 1\r\ndata: a\r\ndata: b\r\n\r\n: comment\n\ndata:c\n"), vec!["a\nb", "c"]);
        assert_eq!(events("retry: 100\n\n"), Vec::<String>::new());
        assert_eq!(events(""), Vec::<String>::new());
    }

    #[test]
    fn takes_complete_events_as_they_come() {
        let mut buf = b"event: endpoint\ndata: /messages?s=1\n\nevent: message\ndata: {\"a\"".to_vec();
        let first = take_events(&mut buf);
        assert_eq!(first, vec![Event { kind: Some("endpoint".into()), data: Some("/messages?s=1".into()), id: None }]);
        buf.extend_from_slice(b":1}\r\n\r\n: ping\n\n");
        let second = take_events(&mut buf);
        assert_eq!(second, vec![Event { kind: Some("message".into()), data: Some("{\"a\":1}".into()), id: None }]);
        assert!(buf.is_empty());
    }
}
