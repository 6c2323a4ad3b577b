//! A constrained tool call streamed as it is generated, the way OpenAI-compatible servers
//! stream one: a first delta with the call's id, the tool's name and the start of the
//! arguments, then the rest of the arguments' JSON text in fragments as tokens decode.
//!
//! The grammar writes a call as the envelope `{"name": "<tool>", "arguments": <args>}`. Only
//! `<args>` is streamed: the envelope's head is never sent, and a `}` at the end of the text
//! so far is held back, because it may be the one that closes the envelope rather than part
//! of the arguments. So the fragments add up to exactly the arguments' text, never more.
//!
//! The call starts on the stream with its first certain character of arguments, a few tokens
//! after the name is complete (the rest of the head is fixed text): so a call cut off by
//! `max_tokens` always has some arguments text, which for an object is never complete JSON —
//! never the empty arguments a consumer would read as `{}`.

use std::sync::atomic::{AtomicU64, Ordering};

use any_core::ToolCallDelta;

/// What the grammar writes before the tool's name.
const NAME_OPENS: &str = "{\"name\": \"";
/// What the grammar writes between the tool's name and its arguments.
const ARGUMENTS_OPEN: &str = "\", \"arguments\": ";

/// One call's text as it is generated, and how much of it has gone out.
#[derive(Debug, Default)]
pub(crate) struct StreamedCall {
    text: String,
    /// The tool's name and where the arguments begin in `text`, once the envelope's head is
    /// complete.
    head: Option<(String, usize)>,
    /// Whether the first delta (id and name) has gone out.
    started: bool,
    /// How much of `text` has been sent as arguments.
    sent: usize,
}

impl StreamedCall {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Whether the call has started on the stream (its id and name were sent).
    pub(crate) fn started(&self) -> bool {
        self.started
    }

    /// Everything generated, for a call cut off before it started.
    pub(crate) fn into_text(self) -> String {
        self.text
    }

    /// Adds decoded text; returns what to send now: the arguments' text that is certain to
    /// be arguments, with the call's id and the tool's name the first time.
    pub(crate) fn push(&mut self, piece: &str) -> Option<ToolCallDelta> {
        self.text.push_str(piece);
        if self.head.is_none() {
            let name = self.text.strip_prefix(NAME_OPENS)?.split('"').next()?;
            let after_name = NAME_OPENS.len() + name.len();
            if !self.text[after_name..].starts_with(ARGUMENTS_OPEN) {
                return None;
            }
            self.sent = after_name + ARGUMENTS_OPEN.len();
            self.head = Some((name.to_owned(), self.sent));
        }
        // A `}` at the very end may close the envelope: it waits for what follows.
        let certain = self.text.len() - usize::from(self.text.ends_with('}'));
        (certain > self.sent).then(|| self.delta(certain))
    }

    /// The delta that sends `text[sent..to]`, starting the call if it has not started.
    fn delta(&mut self, to: usize) -> ToolCallDelta {
        let arguments = self.text[self.sent..to].to_owned();
        self.sent = to;
        let start = !std::mem::replace(&mut self.started, true);
        let name = self.head.as_ref().map(|(name, _)| name.clone());
        ToolCallDelta {
            index: 0,
            id: start.then(next_call_id),
            name: name.filter(|_| start),
            arguments,
        }
    }

    /// Ends a call whose text is complete: checks that the text is the whole envelope, and
    /// returns the rest of the arguments (the fragments sent plus this one are exactly the
    /// envelope's `arguments` text).
    ///
    /// # Errors
    /// What is wrong with the text when it is not one whole call: cut off, or not in the
    /// envelope the grammar writes.
    pub(crate) fn finish(&mut self) -> Result<ToolCallDelta, String> {
        let Some((name, from)) = self.head.clone() else {
            return Err(format!("no tool name and arguments in {:?}", self.text));
        };
        let value: serde_json::Value =
            serde_json::from_str(&self.text).map_err(|e| format!("{e} in {:?}", self.text))?;
        if value.get("name").and_then(|n| n.as_str()) != Some(name.as_str()) {
            return Err(format!("the name is not `{name}` in {:?}", self.text));
        }
        let end = self.text.len() - 1;
        let parsed: Option<serde_json::Value> = serde_json::from_str(&self.text[from..end]).ok();
        if !self.text.ends_with('}') || parsed.as_ref() != value.get("arguments") {
            return Err(format!(
                "the arguments are not the text between the head and the last `}}` in {:?}",
                self.text
            ));
        }
        Ok(self.delta(end))
    }
}

/// A call id unique within the process: `call_local_<n>`.
fn next_call_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("call_local_{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pushes `pieces`, returning the deltas and the call.
    fn stream(pieces: &[&str]) -> (Vec<ToolCallDelta>, StreamedCall) {
        let mut call = StreamedCall::new();
        let deltas = pieces.iter().filter_map(|p| call.push(p)).collect();
        (deltas, call)
    }

    fn arguments(deltas: &[ToolCallDelta]) -> String {
        deltas.iter().map(|d| d.arguments.as_str()).collect()
    }

    #[test]
    fn the_call_starts_with_its_arguments_then_streams_them_in_fragments() {
        let (deltas, mut call) = stream(&[
            "{\"",
            "name",
            "\": \"",
            "add",
            "\",",
            " \"arguments\": {\"",
            "a\": 1",
            "2, \"b\": {\"c\": 3}",
            "}",
            "}",
        ]);
        assert_eq!(deltas[0].name.as_deref(), Some("add"));
        assert!(deltas[0].id.as_deref().unwrap().starts_with("call_local_"));
        assert_eq!(deltas[0].arguments, "{\"");
        assert!(
            deltas[1..]
                .iter()
                .all(|d| d.id.is_none() && d.name.is_none())
        );
        let last = call.finish().unwrap();
        assert!(last.id.is_none() && last.name.is_none());
        let mut all = deltas.clone();
        all.push(last);
        assert_eq!(arguments(&all), r#"{"a": 12, "b": {"c": 3}}"#);
        // Each fragment went out as soon as it was certain: the `}` closing `c`'s object
        // only once the next `}` came.
        assert_eq!(deltas.last().unwrap().arguments, "}");
    }

    #[test]
    fn a_token_may_end_the_name_and_start_the_arguments() {
        let (deltas, mut call) = stream(&["{\"name\": \"f\", \"arguments\": {\"x\"", ": \"}\"}}"]);
        assert_eq!(deltas.len(), 2);
        assert_eq!(deltas[0].name.as_deref(), Some("f"));
        assert_eq!(deltas[0].arguments, "{\"x\"");
        // A `}` inside a string goes out with the rest; only the one at the end waits.
        assert_eq!(deltas[1].arguments, ": \"}\"}");
        assert_eq!(call.finish().unwrap().arguments, "");
    }

    #[test]
    fn a_call_cut_off_is_not_a_call_and_never_sends_what_may_be_the_envelope() {
        // Cut after the arguments' own `}`: what went out is not complete JSON.
        let (deltas, mut call) = stream(&["{\"name\": \"f\", \"arguments\": {\"x\": 1}"]);
        assert_eq!(arguments(&deltas), "{\"x\": 1");
        assert!(call.started() && call.finish().is_err());
        // Cut after the name, or inside it: nothing went out.
        for cut in ["{\"name\": \"f\", \"arguments\": ", "{\"name\": \"we"] {
            let (deltas, call) = stream(&[cut]);
            assert!(deltas.is_empty() && !call.started());
            assert_eq!(call.into_text(), cut);
        }
    }

    #[test]
    fn a_whole_call_in_one_piece_is_one_delta() {
        let (deltas, mut call) = stream(&["{\"name\": \"f\", \"arguments\": {}}"]);
        assert_eq!(deltas.len(), 1);
        assert_eq!(deltas[0].name.as_deref(), Some("f"));
        assert_eq!(deltas[0].arguments, "{}");
        assert_eq!(call.finish().unwrap().arguments, "");
    }

    #[test]
    fn text_that_is_not_the_envelope_is_an_error_at_the_end() {
        let (_, mut call) = stream(&["{\"name\": \"f\", \"arguments\": {}, \"x\": 1}"]);
        assert!(call.finish().is_err());
        let (deltas, mut call) = stream(&["{\"tool\": \"f\"}"]);
        assert!(deltas.is_empty());
        assert!(call.finish().is_err());
    }
}
