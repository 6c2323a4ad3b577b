//! Server-Sent Events: an incremental decoder (bytes in, events out) and a [`Stream`]
//! adapter over a byte stream.
//!
//! Both HTTP providers stream their answers as Server-Sent Events, and a network delivers
//! them in chunks split anywhere: inside a field name, between a CR and its LF, in the middle
//! of a multi-byte UTF-8 character. [`SseDecoder`] keeps whatever is incomplete until the
//! next chunk completes it, so the events are the same however the bytes were split.
//!
//! It follows the WHATWG event-stream grammar: lines end with CRLF, LF or CR; a leading
//! byte-order mark is skipped; lines starting with `:` are comments; `data` lines of one
//! event are joined with `"\n"`; `event`, `id` and `retry` set the event's type, the last
//! event id and the reconnection time; unknown fields are ignored; a blank line dispatches
//! the event, and an event with no `data` line is not dispatched. One departure: at the end
//! of the stream, an event that was never closed by a blank line is dispatched rather than
//! dropped ([`SseDecoder::finish`]), so a server that forgets the last blank line loses
//! nothing.
//!
//! ```
//! use any_llm::http::sse::SseDecoder;
//!
//! let mut decoder = SseDecoder::new();
//! let mut events = decoder.feed(b"event: ping\ndata: {\"a\":");
//! assert!(events.is_empty()); // the event is not complete yet
//! events = decoder.feed(b"1}\n\ndata: [DONE]\n\n");
//! assert_eq!(events[0].event, "ping");
//! assert_eq!(events[0].data, "{\"a\":1}");
//! assert_eq!(events[1].event, "message");
//! assert_eq!(events[1].data, "[DONE]");
//! ```

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The event type: the last `event` field, or `"message"` when there was none.
    pub event: String,
    /// The `data` lines, joined with `"\n"`.
    pub data: String,
    /// The last event id seen on the stream so far (it carries over to later events, as the
    /// standard says), if any.
    pub id: Option<String>,
    /// The reconnection time, if this event set one.
    pub retry: Option<Duration>,
}

/// The incremental decoder: feed it chunks with [`SseDecoder::feed`], and call
/// [`SseDecoder::finish`] when the bytes end.
#[derive(Debug, Default)]
pub struct SseDecoder {
    /// The current line, not yet ended (bytes, so a split UTF-8 sequence waits whole).
    line: Vec<u8>,
    /// The previous chunk ended with CR: an LF that starts the next one belongs to it.
    after_cr: bool,
    /// Whether the start of the stream (and a possible BOM) has been passed.
    started: bool,
    /// BOM bytes seen so far at the start, when the first chunks split it.
    bom_seen: usize,
    data: String,
    has_data: bool,
    event: Option<String>,
    last_id: Option<String>,
    retry: Option<Duration>,
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

impl SseDecoder {
    /// A decoder at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes the next chunk and returns the events it completed, in order.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        let mut events = Vec::new();
        self.feed_into(chunk, &mut events);
        events
    }

    /// Like [`SseDecoder::feed`], appending to `events` instead of allocating.
    pub fn feed_into(&mut self, mut chunk: &[u8], events: &mut Vec<SseEvent>) {
        if !self.started {
            chunk = self.skip_bom(chunk);
            if !self.started {
                return;
            }
        }
        if self.after_cr && !chunk.is_empty() {
            self.after_cr = false;
            if chunk[0] == b'\n' {
                chunk = &chunk[1..];
            }
        }
        while let Some(end) = chunk.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.line.extend_from_slice(&chunk[..end]);
            let line = std::mem::take(&mut self.line);
            self.process_line(&line, events);
            // Keep the allocation for the next line.
            self.line = line;
            self.line.clear();
            let rest = &chunk[end + 1..];
            if chunk[end] == b'\r' {
                match rest.first() {
                    Some(b'\n') => chunk = &rest[1..],
                    Some(_) => chunk = rest,
                    None => {
                        self.after_cr = true;
                        chunk = rest;
                    }
                }
            } else {
                chunk = rest;
            }
        }
        self.line.extend_from_slice(chunk);
    }

    /// Ends the stream: a last line without its line end is processed, and an event that
    /// was never closed by a blank line is dispatched if it has data.
    pub fn finish(&mut self) -> Option<SseEvent> {
        let mut events = Vec::new();
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.process_line(&line, &mut events);
        }
        self.process_line(b"", &mut events);
        self.after_cr = false;
        events.pop()
    }

    /// Skips a byte-order mark at the very start, possibly split across chunks; returns what
    /// follows it. Leaves `started` false while the chunk is a prefix of the mark.
    fn skip_bom<'a>(&mut self, chunk: &'a [u8]) -> &'a [u8] {
        let mut i = 0;
        while self.bom_seen < BOM.len() && i < chunk.len() {
            if chunk[i] != BOM[self.bom_seen] {
                // Not a BOM after all: what was taken for its start is data. A stream's
                // first bytes cannot be a partial BOM followed by something else in valid
                // UTF-8, so keep them as they were (decoded lossily with the line).
                self.line.extend_from_slice(&BOM[..self.bom_seen]);
                self.started = true;
                return &chunk[i..];
            }
            self.bom_seen += 1;
            i += 1;
        }
        if self.bom_seen == BOM.len() {
            self.started = true;
        }
        &chunk[i..]
    }

    fn process_line(&mut self, line: &[u8], events: &mut Vec<SseEvent>) {
        if line.is_empty() {
            if self.has_data {
                let mut data = std::mem::take(&mut self.data);
                if data.ends_with('\n') {
                    data.pop();
                }
                events.push(SseEvent {
                    event: self
                        .event
                        .take()
                        .filter(|e| !e.is_empty())
                        .unwrap_or_else(|| "message".to_owned()),
                    data,
                    id: self.last_id.clone(),
                    retry: self.retry.take(),
                });
            }
            self.data.clear();
            self.has_data = false;
            self.event = None;
            return;
        }
        if line[0] == b':' {
            return;
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.find(':') {
            Some(i) => {
                let value = &line[i + 1..];
                (&line[..i], value.strip_prefix(' ').unwrap_or(value))
            }
            None => (&line[..], ""),
        };
        match field {
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
                self.has_data = true;
            }
            "event" => self.event = Some(value.to_owned()),
            "id" if !value.contains('\0') => self.last_id = Some(value.to_owned()),
            "retry" => {
                if !value.is_empty()
                    && value.bytes().all(|b| b.is_ascii_digit())
                    && let Ok(ms) = value.parse::<u64>()
                {
                    self.retry = Some(Duration::from_millis(ms));
                }
            }
            _ => {}
        }
    }
}

pin_project_lite::pin_project! {
    /// The events of a byte stream: wraps any `Stream<Item = Result<Bytes, E>>` (an HTTP
    /// body) and yields `Result<SseEvent, E>`. A byte-stream error is passed through and
    /// ends the stream.
    ///
    /// ```
    /// use any_llm::http::sse::SseStream;
    /// use futures_util::StreamExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let chunks = ["data: he", "llo\n", "\ndata: [DONE]\n\n"];
    /// let bytes = futures_util::stream::iter(
    ///     chunks.map(|c| Ok::<_, std::io::Error>(bytes::Bytes::from(c))),
    /// );
    /// let events: Vec<_> = SseStream::new(bytes).map(|e| e.unwrap().data).collect().await;
    /// assert_eq!(events, ["hello", "[DONE]"]);
    /// # }
    /// ```
    #[derive(Debug)]
    pub struct SseStream<S> {
        #[pin]
        bytes: S,
        decoder: SseDecoder,
        ready: std::collections::VecDeque<SseEvent>,
        done: bool,
    }
}

impl<S> SseStream<S> {
    /// Decodes the events of `bytes`.
    pub fn new(bytes: S) -> Self {
        SseStream {
            bytes,
            decoder: SseDecoder::new(),
            ready: Default::default(),
            done: false,
        }
    }
}

impl<S, B, E> Stream for SseStream<S>
where
    S: Stream<Item = Result<B, E>>,
    B: AsRef<[u8]>,
{
    type Item = Result<SseEvent, E>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        loop {
            if let Some(event) = this.ready.pop_front() {
                return Poll::Ready(Some(Ok(event)));
            }
            if *this.done {
                return Poll::Ready(None);
            }
            match this.bytes.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => {
                    let mut events = Vec::new();
                    this.decoder.feed_into(chunk.as_ref(), &mut events);
                    this.ready.extend(events);
                }
                Poll::Ready(Some(Err(e))) => {
                    *this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => {
                    *this.done = true;
                    if let Some(event) = this.decoder.finish() {
                        this.ready.push_back(event);
                    }
                }
            }
        }
    }
}

/// Decodes a whole byte slice at once (all its events, the unterminated last one included).
pub fn decode_all(bytes: &[u8]) -> Vec<SseEvent> {
    let mut decoder = SseDecoder::new();
    let mut events = decoder.feed(bytes);
    events.extend(decoder.finish());
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every way of cutting `input` into two and three pieces gives the events of the whole.
    fn check_every_split(input: &[u8]) -> Vec<SseEvent> {
        let whole = decode_all(input);
        for i in 0..=input.len() {
            let mut d = SseDecoder::new();
            let mut got = d.feed(&input[..i]);
            got.extend(d.feed(&input[i..]));
            got.extend(d.finish());
            assert_eq!(
                got,
                whole,
                "split at {i} of {:?}",
                String::from_utf8_lossy(input)
            );
        }
        // Byte by byte: every boundary at once.
        let mut d = SseDecoder::new();
        let mut got = Vec::new();
        for b in input {
            got.extend(d.feed(std::slice::from_ref(b)));
        }
        got.extend(d.finish());
        assert_eq!(got, whole, "byte by byte");
        for i in 0..=input.len() {
            for j in i..=input.len() {
                let mut d = SseDecoder::new();
                let mut got = d.feed(&input[..i]);
                got.extend(d.feed(&input[i..j]));
                got.extend(d.feed(&input[j..]));
                got.extend(d.finish());
                assert_eq!(got, whole, "split at {i} and {j}");
            }
        }
        whole
    }

    fn datas(events: &[SseEvent]) -> Vec<&str> {
        events.iter().map(|e| e.data.as_str()).collect()
    }

    #[test]
    fn openai_stream_with_done() {
        let input = concat!(
            "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
            "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hé\"}}]}\n\n",
            ": keep-alive\n\n",
            "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"llo 🌍\"},\"finish_reason\":\"stop\"}]}\n\n",
            "data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}}\n\n",
            "data: [DONE]\n\n",
        );
        let events = check_every_split(input.as_bytes());
        assert_eq!(events.len(), 5);
        assert!(events.iter().all(|e| e.event == "message"));
        assert!(events[1].data.contains("Hé"));
        assert!(events[2].data.contains("llo 🌍"));
        assert_eq!(events[4].data, "[DONE]");
    }

    #[test]
    fn anthropic_stream_with_crlf() {
        let input = concat!(
            "event: message_start\r\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"usage\":{\"input_tokens\":3}}}\r\n\r\n",
            "event: content_block_start\r\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\r\n\r\n",
            "event: ping\r\ndata: {\"type\": \"ping\"}\r\n\r\n",
            "event: content_block_delta\r\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"ça va\"}}\r\n\r\n",
            "event: content_block_stop\r\ndata: {\"type\":\"content_block_stop\",\"index\":0}\r\n\r\n",
            "event: message_delta\r\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":2}}\r\n\r\n",
            "event: message_stop\r\ndata: {\"type\":\"message_stop\"}\r\n\r\n",
        );
        let events = check_every_split(input.as_bytes());
        let kinds: Vec<_> = events.iter().map(|e| e.event.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "message_start",
                "content_block_start",
                "ping",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert!(events[3].data.contains("ça va"));
    }

    #[test]
    fn bare_cr_line_ends_multiline_data_bom_and_fields() {
        let input = "\u{FEFF}id: 7\rretry: 1500\revent: update\rdata: first\rdata:second\rdata\r\r:comment\rdata: x\r\r";
        let events = check_every_split(input.as_bytes());
        assert_eq!(datas(&events), ["first\nsecond\n", "x"]);
        assert_eq!(events[0].event, "update");
        assert_eq!(events[0].id.as_deref(), Some("7"));
        assert_eq!(events[0].retry, Some(Duration::from_millis(1500)));
        // The id carries over, the type and the retry do not.
        assert_eq!(events[1].id.as_deref(), Some("7"));
        assert_eq!(events[1].event, "message");
        assert_eq!(events[1].retry, None);
    }

    #[test]
    fn events_without_data_are_not_dispatched_and_unknown_fields_are_ignored() {
        let input = "event: nothing\n\nfoo: bar\nretry: soon\ndata:  two spaces\n\n";
        let events = check_every_split(input.as_bytes());
        assert_eq!(datas(&events), [" two spaces"]);
        assert_eq!(events[0].event, "message");
        assert_eq!(events[0].retry, None);
    }

    #[test]
    fn an_unterminated_last_event_is_kept() {
        let events = check_every_split(b"data: a\n\ndata: last");
        assert_eq!(datas(&events), ["a", "last"]);
        let events = check_every_split(b"data: a\r");
        assert_eq!(datas(&events), ["a"]);
    }

    #[test]
    fn a_split_utf8_sequence_and_invalid_bytes() {
        let events = check_every_split("data: 日本語\n\n".as_bytes());
        assert_eq!(datas(&events), ["日本語"]);
        let events = decode_all(b"data: \xff\n\n");
        assert_eq!(datas(&events), ["\u{FFFD}"]);
    }

    #[test]
    fn a_partial_bom_followed_by_other_bytes_is_data() {
        let events = check_every_split(b"\xEF\xBBdata: x\n\n");
        // Not a field named `data`: the line starts with the two stray bytes.
        assert!(events.is_empty());
        let events = check_every_split(b"\xEF\xBB\xBF\xEF\xBB\xBFdata: x\n\n");
        // Only one BOM is skipped: the second makes the field name unknown.
        assert!(events.is_empty());
    }

    #[tokio::test]
    async fn the_stream_adapter_passes_errors_through_and_flushes_at_the_end() {
        use futures_util::StreamExt;
        let items: Vec<Result<&[u8], &str>> = vec![Ok(b"data: 1\n"), Ok(b"\ndata: 2"), Err("cut")];
        let got: Vec<_> = SseStream::new(futures_util::stream::iter(items))
            .collect()
            .await;
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].as_ref().map(|e| e.data.as_str()), Ok("1"));
        assert_eq!(got[1].as_ref().map(|e| e.data.as_str()), Err(&"cut"));
        let items: Vec<Result<&[u8], &str>> = vec![Ok(b"data: 1\n"), Ok(b"\ndata: 2")];
        let got: Vec<_> = SseStream::new(futures_util::stream::iter(items))
            .map(|e| e.map(|e| e.data))
            .collect()
            .await;
        assert_eq!(got, [Ok("1".to_owned()), Ok("2".to_owned())]);
    }
}
