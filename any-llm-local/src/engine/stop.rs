//! Stop sequences over streamed text: emit what can no longer be part of a stop string, hold
//! back the rest, and cut exactly where a stop string begins.

/// Text held back while it may still turn into a stop sequence.
#[derive(Debug, Default)]
pub(crate) struct StopMatcher {
    stops: Vec<String>,
    pending: String,
}

/// What [`StopMatcher::push`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum StopScan {
    /// This text is safe to emit; keep going.
    Emit(String),
    /// A stop sequence was reached: emit this text (what came before it) and end.
    Stopped(String),
}

impl StopMatcher {
    pub(crate) fn new(stops: &[String]) -> Self {
        StopMatcher {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            pending: String::new(),
        }
    }

    /// Adds newly decoded text.
    pub(crate) fn push(&mut self, text: &str) -> StopScan {
        self.pending.push_str(text);
        if self.stops.is_empty() {
            return StopScan::Emit(std::mem::take(&mut self.pending));
        }
        let first_stop = self
            .stops
            .iter()
            .filter_map(|s| self.pending.find(s.as_str()))
            .min();
        if let Some(at) = first_stop {
            let out = self.pending[..at].to_owned();
            self.pending.clear();
            return StopScan::Stopped(out);
        }
        // Hold back the longest tail that is a proper prefix of some stop string.
        let hold = self
            .pending
            .char_indices()
            .map(|(i, _)| i)
            .find(|&i| self.stops.iter().any(|s| s.starts_with(&self.pending[i..])))
            .unwrap_or(self.pending.len());
        let out = self.pending[..hold].to_owned();
        self.pending.drain(..hold);
        StopScan::Emit(out)
    }

    /// The end of generation: whatever was held back is text after all.
    pub(crate) fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut m = StopMatcher::new(&stops);
        let mut out = String::new();
        for p in pieces {
            match m.push(p) {
                StopScan::Emit(t) => out.push_str(&t),
                StopScan::Stopped(t) => {
                    out.push_str(&t);
                    return (out, true);
                }
            }
        }
        out.push_str(&m.finish());
        (out, false)
    }

    #[test]
    fn a_stop_split_across_pieces_is_cut_exactly() {
        assert_eq!(
            run(&["END"], &["hello E", "N", "D more"]),
            ("hello ".into(), true)
        );
        assert_eq!(run(&["\n\n"], &["a\n", "\nb"]), ("a".into(), true));
    }

    #[test]
    fn near_misses_are_released() {
        assert_eq!(run(&["END"], &["EN", "d", "!"]), ("ENd!".into(), false));
        assert_eq!(run(&["stop"], &["sto"]), ("sto".into(), false));
        assert_eq!(run(&[], &["a", "b"]), ("ab".into(), false));
    }

    #[test]
    fn earliest_stop_wins_and_multibyte_text_is_respected() {
        assert_eq!(run(&["ü!", "x"], &["aü", "!x"]), ("a".into(), true));
        assert_eq!(
            run(&["日本"], &["今日", "は日", "本"]),
            ("今日は".into(), true)
        );
    }
}
