//! Splitting a streamed reply into phrases for speech synthesis.
//!
//! Synthesis starts on the first complete phrase, so the split decides how soon the caller hears the
//! bot: a sentence end always closes a phrase; a comma, colon or semicolon closes one only once the
//! phrase is long enough to sound natural on its own (short clauses spoken alone sound choppy).

/// Words a phrase needs before a clause break (`,` `;` `:`) may end it.
const MIN_CLAUSE_WORDS: usize = 6;

/// Accumulates text deltas and hands out complete phrases.
#[derive(Debug, Default)]
pub struct PhraseSplitter {
    pending: String,
}

fn is_sentence_end(c: char) -> bool {
    matches!(c, '.' | '!' | '?')
}

fn is_clause_end(c: char) -> bool {
    matches!(c, ',' | ';' | ':')
}

impl PhraseSplitter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a delta; returns the phrases it completed, trimmed, in order.
    pub fn push(&mut self, delta: &str) -> Vec<String> {
        self.pending.push_str(delta);
        let mut out = Vec::new();
        while let Some(cut) = self.next_cut() {
            let phrase: String = self.pending.drain(..cut).collect();
            let phrase = phrase.trim();
            if !phrase.is_empty() {
                out.push(phrase.to_string());
            }
        }
        out
    }

    /// The rest of the text, if any, once the reply is complete.
    pub fn finish(&mut self) -> Option<String> {
        let rest = std::mem::take(&mut self.pending);
        let rest = rest.trim();
        (!rest.is_empty()).then(|| rest.to_string())
    }

    /// Byte index just after a phrase end that is followed by whitespace (so "3.5" or "e.g." inside a
    /// word does not split, and a trailing "." waits for the next delta to confirm it).
    fn next_cut(&self) -> Option<usize> {
        let mut words = 0;
        let mut prev_space = true;
        let mut chars = self.pending.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if c.is_whitespace() {
                prev_space = true;
                continue;
            }
            if prev_space {
                words += 1;
            }
            prev_space = false;
            let followed_by_space = chars.peek().is_some_and(|(_, n)| n.is_whitespace());
            if followed_by_space && (is_sentence_end(c) || (is_clause_end(c) && words >= MIN_CLAUSE_WORDS)) {
                return Some(i + c.len_utf8());
            }
        }
        None
    }
}

/// Splits a complete text (a scripted line) into phrases.
pub fn split(text: &str) -> Vec<String> {
    let mut s = PhraseSplitter::new();
    let mut out = s.push(text);
    out.extend(s.finish());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_split_as_they_complete() {
        let mut s = PhraseSplitter::new();
        assert!(s.push("We're open ").is_empty());
        assert!(
            s.push("until 6 pm.").is_empty(),
            "a final period waits for what follows"
        );
        assert_eq!(s.push(" Anything"), vec!["We're open until 6 pm."]);
        assert!(s.push(" else?").is_empty());
        assert_eq!(s.finish().as_deref(), Some("Anything else?"));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn numbers_and_short_clauses_do_not_split() {
        assert_eq!(
            split("It costs 3.50 dollars, thanks."),
            vec!["It costs 3.50 dollars, thanks."]
        );
        assert_eq!(
            split("If you bring the receipt with your order number, we can look it up right away."),
            vec![
                "If you bring the receipt with your order number,",
                "we can look it up right away."
            ]
        );
        assert_eq!(split("Yes! Sure."), vec!["Yes!", "Sure."]);
        assert!(split("   ").is_empty());
    }
}
