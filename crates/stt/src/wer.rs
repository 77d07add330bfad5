//! Word error rate: how we judge every speed setting of the recognizer (a faster setting that garbles
//! words is no gain).
//!
//! Both texts are normalized the same way before comparing, so that a transcript is not penalized for
//! formatting that carries no meaning: case, punctuation, "p.m." vs "pm", and small numbers written as
//! digits vs words ("3" vs "three", "21" vs "twenty one").

/// Lower-cased words with punctuation removed and number words turned into digits.
pub fn normalize(text: &str) -> Vec<String> {
    let mut cleaned = String::with_capacity(text.len());
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_alphanumeric() {
            cleaned.extend(c.to_lowercase());
        } else if (c == '\'' || c == '.')
            && i > 0
            && chars[i - 1].is_alphanumeric()
            && chars.get(i + 1).is_some_and(|n| n.is_alphanumeric())
        {
            // inside a word: "don't" → "dont", "p.m" → "pm"
        } else {
            cleaned.push(' ');
        }
    }
    let words: Vec<&str> = cleaned.split_whitespace().collect();
    let mut out: Vec<String> = Vec::with_capacity(words.len());
    let mut i = 0;
    while i < words.len() {
        match number_word(words[i]) {
            Some(tens) if tens >= 20 && tens % 10 == 0 => {
                // "twenty one" → 21
                match words.get(i + 1).and_then(|w| number_word(w)) {
                    Some(unit) if (1..=9).contains(&unit) => {
                        out.push((tens + unit).to_string());
                        i += 2;
                    }
                    _ => {
                        out.push(tens.to_string());
                        i += 1;
                    }
                }
            }
            Some(n) => {
                out.push(n.to_string());
                i += 1;
            }
            None => {
                out.push(words[i].to_owned());
                i += 1;
            }
        }
    }
    out
}

fn number_word(w: &str) -> Option<u32> {
    const SMALL: [&str; 20] = [
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
    ];
    const TENS: [&str; 8] = [
        "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
    ];
    if let Some(n) = SMALL.iter().position(|&s| s == w) {
        return u32::try_from(n).ok();
    }
    TENS.iter()
        .position(|&s| s == w)
        .and_then(|n| u32::try_from(n * 10 + 20).ok())
}

/// Word-level edit distance (substitutions + deletions + insertions) between normalized texts.
pub fn word_errors(reference: &str, hypothesis: &str) -> (usize, usize) {
    let r = normalize(reference);
    let h = normalize(hypothesis);
    // Levenshtein over words, one row at a time.
    let mut prev: Vec<usize> = (0..=h.len()).collect();
    let mut cur = vec![0; h.len() + 1];
    for (i, rw) in r.iter().enumerate() {
        cur[0] = i + 1;
        for (j, hw) in h.iter().enumerate() {
            let sub = prev[j] + usize::from(rw != hw);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    (prev[h.len()], r.len())
}

/// Word error rate of `hypothesis` against `reference`: errors / reference words (can exceed 1).
pub fn word_error_rate(reference: &str, hypothesis: &str) -> f64 {
    let (errors, words) = word_errors(reference, hypothesis);
    if words == 0 {
        return if errors == 0 { 0.0 } else { 1.0 };
    }
    errors as f64 / words as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_after_normalization() {
        assert_eq!(word_error_rate("Hello, World!", "hello world"), 0.0);
        assert_eq!(word_error_rate("We open at 9 a.m.", "we open at nine am"), 0.0);
        assert_eq!(word_error_rate("I don't know", "I dont know."), 0.0);
        assert_eq!(word_error_rate("twenty one pilots", "21 pilots"), 0.0);
    }

    #[test]
    fn counts_each_kind_of_error() {
        // one substitution
        assert_eq!(word_errors("the cat sat", "the hat sat"), (1, 3));
        // one deletion
        assert_eq!(word_errors("the cat sat", "the sat"), (1, 3));
        // one insertion
        assert_eq!(word_errors("the cat sat", "the fat cat sat"), (1, 3));
        assert!((word_error_rate("a b c d", "a x c") - 0.5).abs() < 1e-9);
    }

    #[test]
    fn repetition_loops_score_above_one() {
        let wer = word_error_rate("thank you", "thank you thank you thank you thank you");
        assert!(wer > 2.5, "{wer}");
    }

    #[test]
    fn empty_texts() {
        assert_eq!(word_error_rate("", ""), 0.0);
        assert_eq!(word_error_rate("", "noise"), 1.0);
        assert_eq!(word_error_rate("hello", ""), 1.0);
    }
}
