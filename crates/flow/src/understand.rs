//! Deterministic understanding: the matchers the engine tries before it ever asks a language model.
//!
//! Every matcher is a pure function of the caller's words, returns `None` when it cannot decide, and never
//! guesses between two readings: "an ambiguous answer is a question for the model (or a re-prompt), not a
//! coin toss". Phrases match on word boundaries of a normalized text (lower case, punctuation removed),
//! so "no" never matches inside "know" and "agent" never inside "agents'".

/// Lower case, `a.m.` → `am`, `3pm` → `3 pm`, punctuation → spaces (apostrophes, `:` between digits
/// and a leading `+` are kept), single spaces.
pub fn normalize(s: &str) -> String {
    let lower = s
        .to_lowercase()
        .replace(['’', '‘'], "'")
        .replace("a.m.", " am ")
        .replace("p.m.", " pm ");
    let chars: Vec<char> = lower.chars().collect();
    let mut out = String::with_capacity(lower.len());
    for (i, &c) in chars.iter().enumerate() {
        let prev = if i > 0 { chars[i - 1] } else { ' ' };
        let next = chars.get(i + 1).copied().unwrap_or(' ');
        let keep = c.is_alphanumeric()
            || (c == '\'' && prev.is_alphabetic() && next.is_alphabetic())
            || (c == ':' && prev.is_ascii_digit() && next.is_ascii_digit())
            || (c == '+' && next.is_ascii_digit());
        if c.is_alphabetic() && prev.is_ascii_digit() {
            // "3pm" → "3 pm", but keep ordinals ("3rd") whole.
            let rest: String = chars[i..].iter().take_while(|c| c.is_alphabetic()).collect();
            if rest == "am" || rest == "pm" {
                out.push(' ');
            }
        }
        out.push(if keep { c } else { ' ' });
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn words(norm: &str) -> Vec<&str> {
    norm.split(' ').filter(|w| !w.is_empty()).collect()
}

/// Word positions (start, length) where `phrase` (already normalized) occurs in `ws`.
fn find_phrase(ws: &[&str], phrase: &str) -> Vec<(usize, usize)> {
    let p = words(phrase);
    if p.is_empty() || p.len() > ws.len() {
        return Vec::new();
    }
    (0..=ws.len() - p.len())
        .filter(|&i| ws[i..i + p.len()] == p[..])
        .map(|i| (i, p.len()))
        .collect()
}

/// True when `phrase` occurs in the normalized text on word boundaries.
pub fn contains_phrase(norm: &str, phrase: &str) -> bool {
    !find_phrase(&words(norm), &normalize(phrase)).is_empty()
}

/// Phrases that mean "let me talk to a person".
pub const HUMAN_PHRASES: &[&str] = &[
    "talk to a person",
    "speak to a person",
    "speak with a person",
    "talk to someone",
    "speak to someone",
    "speak with someone",
    "talk with someone",
    "talk to somebody",
    "speak to somebody",
    "talk to a human",
    "speak to a human",
    "a real person",
    "real person",
    "live person",
    "human being",
    "an agent",
    "agent",
    "representative",
    "operator",
    "a human",
    "transfer me",
    "customer service",
];

/// Phrases that mean "do not call me again".
pub const OPT_OUT_PHRASES: &[&str] = &[
    "stop calling",
    "take me off your list",
    "take me off the list",
    "take me off your calling list",
    "off your list",
    "do not call",
    "don't call",
    "dont call",
    "never call",
    "remove my number",
    "remove me from",
    "unsubscribe",
    "stop contacting",
    "don't contact me",
];

/// An intent that works from any step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GlobalIntent {
    OptOut,
    Human,
}

/// Opt-out wins over "a person": "stop calling me, and no I don't want an agent" is an opt-out.
pub fn global_intent(norm: &str, opt_out: &[String], human: &[String]) -> Option<GlobalIntent> {
    let hit = |list: &[String]| list.iter().any(|p| contains_phrase(norm, p));
    if hit(opt_out) {
        Some(GlobalIntent::OptOut)
    } else if hit(human) {
        Some(GlobalIntent::Human)
    } else {
        None
    }
}

const YES: &[&str] = &[
    "yes",
    "yeah",
    "yea",
    "yep",
    "yup",
    "ya",
    "sure",
    "correct",
    "that's correct",
    "that is correct",
    "right",
    "that's right",
    "that is right",
    "absolutely",
    "of course",
    "definitely",
    "ok",
    "okay",
    "sounds good",
    "affirmative",
    "certainly",
    "please do",
    "uh huh",
    "mm hm",
    "mm hmm",
    "mhm",
    "go ahead",
    "yes please",
    "that works",
    "works for me",
    // Not a bare "fine": "no, I'm fine" declines.
    "that's fine",
    "that is fine",
    "it is",
    "i do",
    "i will",
    "exactly",
    "confirm",
];

const NO: &[&str] = &[
    "no",
    "nope",
    "nah",
    "not really",
    "negative",
    "no thanks",
    "no thank you",
    "i don't",
    "i do not",
    "i won't",
    "i will not",
    "not right",
    "not correct",
    "that's wrong",
    "wrong",
    "incorrect",
    "it's not",
    "it is not",
    "that's not it",
    "not at all",
    "don't",
    "doesn't work",
    "does not work",
    "won't work",
];

/// Longest phrases first; a matched span is consumed so "not right" does not also count as "right".
fn spans_of(ws: &[&str], lists: &[(&[&str], usize)]) -> Vec<usize> {
    let mut phrases: Vec<(Vec<&str>, usize)> = lists
        .iter()
        .flat_map(|(list, id)| list.iter().map(move |p| (p.split(' ').collect::<Vec<_>>(), *id)))
        .collect();
    phrases.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
    let mut used = vec![false; ws.len()];
    let mut found = Vec::new();
    for (p, id) in &phrases {
        if p.len() > ws.len() {
            continue;
        }
        for i in 0..=ws.len() - p.len() {
            if ws[i..i + p.len()] == p[..] && !used[i..i + p.len()].iter().any(|&u| u) {
                used[i..i + p.len()].iter_mut().for_each(|u| *u = true);
                found.push(*id);
            }
        }
    }
    found
}

/// yes / no, or `None` when the words say neither or both.
pub fn yes_no(norm: &str) -> Option<bool> {
    let ws = words(norm);
    let found = spans_of(&ws, &[(YES, 1), (NO, 0)]);
    let yes = found.contains(&1);
    let no = found.contains(&0);
    match (yes, no) {
        (true, false) => Some(true),
        (false, true) => Some(false),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Atom<'a> {
    Digits(&'a str),
    Unit(u8),
    Teen(u8),
    Tens(u8),
    Hundred,
    Thousand,
    Double,
    Triple,
    Oh,
}

/// The number one word stands for: digits, or a number word ("seven", "fifteen", "forty"). Grounding,
/// the numbers an utterance holds and small numbers in times all read single words this way.
fn word_value(w: &str) -> Option<i64> {
    match atom(w)? {
        Atom::Digits(d) => d.parse().ok(),
        Atom::Unit(u) => Some(i64::from(u)),
        Atom::Teen(t) | Atom::Tens(t) => Some(i64::from(t)),
        _ => None,
    }
}

fn atom(w: &str) -> Option<Atom<'_>> {
    if !w.is_empty() && w.chars().all(|c| c.is_ascii_digit()) {
        return Some(Atom::Digits(w));
    }
    const UNITS: [&str; 10] = [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    ];
    const TEENS: [&str; 10] = [
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
    if let Some(i) = UNITS.iter().position(|&u| u == w) {
        return Some(Atom::Unit(i as u8));
    }
    if let Some(i) = TEENS.iter().position(|&u| u == w) {
        return Some(Atom::Teen(10 + i as u8));
    }
    if let Some(i) = TENS.iter().position(|&u| u == w) {
        return Some(Atom::Tens(20 + 10 * i as u8));
    }
    match w {
        "hundred" => Some(Atom::Hundred),
        "thousand" => Some(Atom::Thousand),
        "double" => Some(Atom::Double),
        "triple" => Some(Atom::Triple),
        "oh" | "o" => Some(Atom::Oh),
        "for" | "to" | "too" => None,
        _ => None,
    }
}

/// Runs of number words/digits, with their word span. "and" inside a run ("one hundred and five") is kept.
fn number_groups<'a>(ws: &[&'a str]) -> Vec<(usize, usize, Vec<Atom<'a>>)> {
    let mut groups = Vec::new();
    let mut i = 0;
    while i < ws.len() {
        if atom(ws[i]).is_none() {
            i += 1;
            continue;
        }
        let start = i;
        let mut atoms = Vec::new();
        while i < ws.len() {
            if let Some(a) = atom(ws[i]) {
                atoms.push(a);
                i += 1;
            } else if ws[i] == "and"
                && matches!(atoms.last(), Some(Atom::Hundred | Atom::Thousand))
                && ws.get(i + 1).and_then(|w| atom(w)).is_some()
            {
                i += 1;
            } else {
                break;
            }
        }
        // "oh" alone ("oh, yes") and "double"/"triple" alone are not numbers.
        if atoms
            .iter()
            .any(|a| !matches!(a, Atom::Oh | Atom::Double | Atom::Triple))
        {
            groups.push((start, i - start, atoms));
        }
    }
    groups
}

fn unit_digit(a: &Atom<'_>) -> Option<u8> {
    match a {
        Atom::Unit(u) => Some(*u),
        Atom::Oh => Some(0),
        _ => None,
    }
}

/// Digit-by-digit reading: "five five five one two" → "55512", "double five" → "55", "thirty four" → "34".
fn group_digits(atoms: &[Atom<'_>]) -> Option<String> {
    if atoms.iter().any(|a| matches!(a, Atom::Hundred | Atom::Thousand)) {
        return compose(atoms).map(|n| n.to_string());
    }
    let mut out = String::new();
    let mut i = 0;
    while i < atoms.len() {
        match atoms[i] {
            Atom::Digits(d) => out.push_str(d),
            Atom::Unit(u) => out.push(char::from(b'0' + u)),
            Atom::Oh => out.push('0'),
            Atom::Teen(t) => out.push_str(&t.to_string()),
            Atom::Tens(t) => match atoms.get(i + 1).and_then(unit_digit) {
                Some(u) if u > 0 => {
                    out.push_str(&(t + u).to_string());
                    i += 1;
                }
                _ => out.push_str(&t.to_string()),
            },
            Atom::Double | Atom::Triple => {
                let times = if atoms[i] == Atom::Double { 2 } else { 3 };
                let d = atoms.get(i + 1).and_then(unit_digit)?;
                for _ in 0..times {
                    out.push(char::from(b'0' + d));
                }
                i += 1;
            }
            Atom::Hundred | Atom::Thousand => return None,
        }
        i += 1;
    }
    (!out.is_empty()).then_some(out)
}

/// Number words read as a quantity: "forty two" → 42, "one hundred and five" → 105,
/// "twelve thousand three hundred" → 12300. `None` when the words are not in that grammar.
fn compose(atoms: &[Atom<'_>]) -> Option<i64> {
    let mut total: i64 = 0;
    let mut current: i64 = 0;
    let mut last: Option<Atom<'_>> = None;
    for a in atoms {
        match *a {
            Atom::Digits(d) => {
                if last.is_some() && !matches!(last, Some(Atom::Thousand)) {
                    return None;
                }
                current = d.parse().ok()?;
            }
            Atom::Unit(u) => {
                if !matches!(last, None | Some(Atom::Tens(_) | Atom::Hundred | Atom::Thousand)) {
                    return None;
                }
                current += i64::from(u);
            }
            Atom::Teen(t) => {
                if !matches!(last, None | Some(Atom::Hundred | Atom::Thousand)) {
                    return None;
                }
                current += i64::from(t);
            }
            Atom::Tens(t) => {
                if !matches!(last, None | Some(Atom::Hundred | Atom::Thousand)) {
                    return None;
                }
                current += i64::from(t);
            }
            Atom::Hundred => {
                if current >= 100 {
                    return None;
                }
                current = current.max(1) * 100;
            }
            Atom::Thousand => {
                total += current.max(1) * 1000;
                current = 0;
            }
            Atom::Oh | Atom::Double | Atom::Triple => return None,
        }
        last = Some(*a);
    }
    Some(total + current)
}

fn group_number(atoms: &[Atom<'_>]) -> Option<i64> {
    let digit_like = atoms
        .iter()
        .all(|a| matches!(a, Atom::Digits(_) | Atom::Unit(_) | Atom::Oh));
    if digit_like {
        return group_digits(atoms)?.parse().ok();
    }
    compose(atoms).or_else(|| group_digits(atoms)?.parse().ok())
}

/// Every number the words could mean: each number word or digit string on its own ("twenty" and
/// "five" in "twenty five"), each run of them read as a quantity and digit by digit (25), each day of
/// the month ("3rd", "third"), and the numbers behind "noon", "midnight", "half" and "quarter".
fn numbers_said(ws: &[&str]) -> Vec<i64> {
    let mut out = Vec::new();
    for (i, w) in ws.iter().enumerate() {
        out.extend(word_value(w));
        if let Some((d, _)) = day_of_month(ws, i) {
            out.push(i64::from(d));
        }
        match *w {
            "noon" | "midday" | "midnight" => out.push(12),
            "half" => out.push(30),
            "quarter" => out.extend([15, 45]),
            _ => {}
        }
    }
    for (_, _, atoms) in number_groups(ws) {
        out.extend(group_number(&atoms));
        out.extend(group_digits(&atoms).and_then(|d| d.parse::<i64>().ok()));
    }
    out
}

/// Whether a value the model read out of the caller's words (`answer`, normalized) rests on them: every
/// day or month name in it the caller said, and every number in it (digits or words) the caller said
/// too. Reading is the model's job here, inventing is not: asked for "the day and time, like \"Tuesday
/// at 3 pm\"", SmolLM2 answered a plain "yes" with "Tuesday at 3 pm", and taking that books a time
/// nobody asked for. Zero passes (":00"), and so does an hour 12 above one said ("3 pm" → "15:00").
pub fn grounded(answer: &str, utterance: &str) -> bool {
    let said = words(utterance);
    let numbers = numbers_said(&said);
    let number_said = |n: i64| n == 0 || numbers.contains(&n) || (n > 12 && numbers.contains(&(n - 12)));
    words(answer).into_iter().all(|w| {
        if WEEKDAYS.contains(&w) || MONTHS.contains(&w) || w == "today" || w == "tomorrow" {
            return said.contains(&w);
        }
        let pieces: Vec<&str> = w.split(':').collect();
        if pieces.len() > 1 {
            return pieces.iter().all(|p| p.parse::<i64>().is_ok_and(number_said));
        }
        match (atom(w), word_value(w), day_of_month(&[w], 0)) {
            (_, Some(n), _) => number_said(n),
            // Digits too long for a number are not grounded in anything.
            (Some(Atom::Digits(_)), None, _) => false,
            (_, None, Some((d, _))) => number_said(i64::from(d)),
            _ => true,
        }
    })
}

/// Drops "out of five" / "out of 10" so "4 out of 5" is the number 4.
fn without_out_of<'a>(ws: &[&'a str]) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < ws.len() {
        if ws[i] == "out" && ws.get(i + 1) == Some(&"of") && ws.get(i + 2).and_then(|w| atom(w)).is_some() {
            i += 3;
            continue;
        }
        out.push(ws[i]);
        i += 1;
    }
    out
}

/// A single number in the utterance: digits, spoken digits ("one two three four" → 1234) or number
/// words ("forty two" → 42). Two separate numbers ("3 or 4") are not decided.
pub fn number(norm: &str) -> Option<i64> {
    let ws = words(norm);
    let ws = without_out_of(&ws);
    let groups = number_groups(&ws);
    match groups.as_slice() {
        [(_, _, atoms)] => group_number(atoms),
        _ => None,
    }
}

/// A phone number: all digits said, in any grouping, `+` or "plus" kept in front. 7 to 15 digits.
pub fn phone(norm: &str) -> Option<String> {
    let ws = words(norm);
    let plus = ws.iter().any(|w| *w == "plus" || w.starts_with('+'));
    let cleaned: Vec<&str> = ws.iter().map(|w| w.trim_start_matches('+')).collect();
    let groups = number_groups(&cleaned);
    if groups.is_empty() {
        return None;
    }
    let mut digits = String::new();
    for (_, _, atoms) in &groups {
        digits.push_str(&group_digits(atoms)?);
    }
    if !(7..=15).contains(&digits.len()) {
        return None;
    }
    Some(if plus { format!("+{digits}") } else { digits })
}

/// The synonym that makes a label the catch-all for questions (see [`is_question`]): it never matches
/// words; the engine picks such a label only when nothing else understood the question.
pub const QUESTION_SYNONYM: &str = "$question";

/// Words that open a question ("can I …", "do you …", "where …").
const QUESTION_OPENERS: &[&str] = &[
    "what", "what's", "whats", "where", "where's", "when", "why", "how", "how's", "who", "which", "can",
    "could", "do", "does", "did", "is", "are", "will", "would", "should", "may", "have", "has",
];

/// Whether the caller asked a question: the text ends with a question mark (speech-to-text writes
/// them), or it opens with a question word and says something after it ("how much is a cake", not a
/// bare "what?", which asks for a repeat).
pub fn is_question(text: &str) -> bool {
    let norm = normalize(text);
    let ws = words(&norm);
    ws.len() >= 3 && (text.trim_end().ends_with('?') || QUESTION_OPENERS.contains(&ws[0]))
}

/// The label whose synonyms occur in the utterance. When synonyms of two labels match, the one whose
/// match contains the other's wins ("no show" over "no"); otherwise it is undecided.
/// Synonyms `$yes` / `$no` stand for the built-in yes/no phrase lists; `$question` matches no words.
pub fn one_of(norm: &str, options: &[(String, Vec<String>)]) -> Option<String> {
    let ws = words(norm);
    let mut hits: Vec<(usize, usize, usize)> = Vec::new(); // (label index, start, len)
    for (li, (_, synonyms)) in options.iter().enumerate() {
        for syn in synonyms {
            match syn.as_str() {
                "$yes" | "$no" => {
                    let want = syn == "$yes";
                    if yes_no(norm) == Some(want) {
                        let list = if want { YES } else { NO };
                        for p in list {
                            hits.extend(find_phrase(&ws, p).into_iter().map(|(s, l)| (li, s, l)));
                        }
                    }
                }
                QUESTION_SYNONYM => {}
                _ => hits.extend(
                    find_phrase(&ws, &normalize(syn))
                        .into_iter()
                        .map(|(s, l)| (li, s, l)),
                ),
            }
        }
    }
    let kept: Vec<usize> = hits
        .iter()
        .filter(|(li, s, l)| {
            !hits
                .iter()
                .any(|(lj, t, m)| lj != li && *t <= *s && s + l <= t + m && m > l)
        })
        .map(|(li, _, _)| *li)
        .collect();
    let first = *kept.first()?;
    kept.iter().all(|&l| l == first).then(|| options[first].0.clone())
}

/// A date and/or time said in a simple form, normalized without a clock: "Tuesday 15:00",
/// "next Monday 10:00", "March 3 14:30", "tomorrow", "15:00".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateTime {
    pub day: Option<String>,
    pub time: Option<(u8, u8)>,
}

impl DateTime {
    pub fn normalized(&self) -> String {
        let time = self.time.map(|(h, m)| format!("{h:02}:{m:02}"));
        [self.day.clone(), time]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ")
    }
}

const WEEKDAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];
const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];
const ORDINALS: [&str; 31] = [
    "first",
    "second",
    "third",
    "fourth",
    "fifth",
    "sixth",
    "seventh",
    "eighth",
    "ninth",
    "tenth",
    "eleventh",
    "twelfth",
    "thirteenth",
    "fourteenth",
    "fifteenth",
    "sixteenth",
    "seventeenth",
    "eighteenth",
    "nineteenth",
    "twentieth",
    "twenty first",
    "twenty second",
    "twenty third",
    "twenty fourth",
    "twenty fifth",
    "twenty sixth",
    "twenty seventh",
    "twenty eighth",
    "twenty ninth",
    "thirtieth",
    "thirty first",
];

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// Day of month at `ws[i..]`: "3rd", "3", "third", "twenty first". Returns (day, words used).
fn day_of_month(ws: &[&str], i: usize) -> Option<(u8, usize)> {
    let w = *ws.get(i)?;
    let digits: String = w.chars().take_while(|c| c.is_ascii_digit()).collect();
    if !digits.is_empty() {
        let suffix = &w[digits.len()..];
        if matches!(suffix, "" | "st" | "nd" | "rd" | "th") {
            let d: u8 = digits.parse().ok()?;
            return (1..=31).contains(&d).then_some((d, 1));
        }
        return None;
    }
    for (n, o) in ORDINALS.iter().enumerate().rev() {
        let ow: Vec<&str> = o.split(' ').collect();
        if ws.len() >= i + ow.len() && ws[i..i + ow.len()] == ow[..] {
            return Some((n as u8 + 1, ow.len()));
        }
    }
    None
}

/// Hour or minute number at `ws[i]` (digits or a word); returns (value, words used).
fn small_number(ws: &[&str], i: usize) -> Option<(u32, usize)> {
    let w = *ws.get(i)?;
    if matches!(atom(w)?, Atom::Digits(d) if d.len() > 2) {
        return None;
    }
    let n = u32::try_from(word_value(w)?).ok()?;
    match (atom(w), ws.get(i + 1).and_then(|w| atom(w))) {
        (Some(Atom::Tens(_)), Some(Atom::Unit(u))) if u > 0 => Some((n + u32::from(u), 2)),
        _ => Some((n, 1)),
    }
}

/// Parses a time starting at `ws[i]`: "3", "3 pm", "3:30 pm", "three thirty", "10 o'clock", "noon".
/// `strong` says the context already marks it as a time ("at", after a day); otherwise am/pm, `:` or
/// "o'clock" must be there. Returns ((hour, minute), words used).
fn time_at(ws: &[&str], i: usize, strong: bool) -> Option<((u8, u8), usize)> {
    let w = *ws.get(i)?;
    if w == "noon" || w == "midday" {
        return Some(((12, 0), 1));
    }
    if w == "midnight" {
        return Some(((0, 0), 1));
    }
    let (mut hour, mut minute, mut used, mut marked) = if let Some((h, m)) = w.split_once(':') {
        let h: u32 = h.parse().ok()?;
        let m: u32 = m.parse().ok()?;
        (h, m, 1, true)
    } else {
        let (h, n) = small_number(ws, i)?;
        let mut minute = 0;
        let mut used = n;
        // "three thirty", "10 15", "two oh five"
        if ws.get(i + used) == Some(&"oh") {
            if let Some((m, k)) = small_number(ws, i + used + 1).filter(|(m, _)| *m < 10) {
                minute = m;
                used += 1 + k;
            }
        } else if let Some((m, k)) = small_number(ws, i + used).filter(|(m, _)| (10..60).contains(m)) {
            minute = m;
            used += k;
        }
        (h, minute, used, false)
    };
    let mut pm: Option<bool> = None;
    match ws.get(i + used).copied() {
        Some("am") => {
            pm = Some(false);
            used += 1;
        }
        Some("pm") => {
            pm = Some(true);
            used += 1;
        }
        Some("o'clock") | Some("oclock") => {
            marked = true;
            used += 1;
        }
        _ => {}
    }
    let tail: Vec<&str> = ws.iter().skip(i + used).take(3).copied().collect();
    if tail.starts_with(&["in", "the", "morning"]) {
        pm = Some(false);
        used += 3;
    } else if tail.starts_with(&["in", "the", "afternoon"]) || tail.starts_with(&["in", "the", "evening"]) {
        pm = Some(true);
        used += 3;
    } else if tail.first() == Some(&"tonight") {
        pm = Some(true);
    }
    if pm.is_none() && !marked && !strong {
        return None;
    }
    if minute >= 60 || hour > 23 {
        return None;
    }
    match pm {
        Some(true) if hour < 12 => hour += 12,
        Some(false) if hour == 12 => hour = 0,
        Some(_) if hour > 12 => return None,
        Some(_) => {}
        // Without am/pm, 1 to 7 o'clock are afternoon hours: a business does not book at 3 in the night.
        None if (1..=7).contains(&hour) => hour += 12,
        None => {}
    }
    if hour == 0 && pm.is_none() && !marked {
        return None;
    }
    minute = minute.min(59);
    Some(((hour as u8, minute as u8), used))
}

/// Dates and times in simple spoken forms. See [`DateTime`].
pub fn datetime(norm: &str) -> Option<DateTime> {
    let ws = words(norm);
    let mut day: Option<String> = None;
    let mut time: Option<(u8, u8)> = None;
    let mut day_end: Option<usize> = None;
    let mut i = 0;
    while i < ws.len() {
        let w = ws[i];
        if day.is_none() {
            if let Some(d) = WEEKDAYS.iter().find(|&&d| d == w) {
                let prefix = match i.checked_sub(1).map(|p| ws[p]) {
                    Some("next") => "next ",
                    _ => "",
                };
                day = Some(format!("{prefix}{}", capitalize(d)));
                i += 1;
                day_end = Some(i);
                continue;
            }
            if w == "today" || w == "tomorrow" {
                day = Some(w.to_string());
                i += 1;
                day_end = Some(i);
                continue;
            }
            if w == "day" && ws.get(i + 1) == Some(&"after") && ws.get(i + 2) == Some(&"tomorrow") {
                day = Some("the day after tomorrow".to_string());
                i += 3;
                day_end = Some(i);
                continue;
            }
            if let Some(m) = MONTHS.iter().position(|&m| m == w) {
                // "march 3rd" / "march the 3rd"
                let j = if ws.get(i + 1) == Some(&"the") {
                    i + 2
                } else {
                    i + 1
                };
                if let Some((d, n)) = day_of_month(&ws, j) {
                    day = Some(format!("{} {d}", capitalize(MONTHS[m])));
                    i = j + n;
                    day_end = Some(i);
                    continue;
                }
            }
            // "the 3rd of march"
            if let Some((d, n)) = day_of_month(&ws, i).filter(|_| ws.get(i + 1).is_some())
                && ws.get(i + n) == Some(&"of")
                && let Some(m) = ws.get(i + n + 1).and_then(|w| MONTHS.iter().position(|m| m == w))
            {
                day = Some(format!("{} {d}", capitalize(MONTHS[m])));
                i += n + 2;
                day_end = Some(i);
                continue;
            }
        }
        if time.is_none() {
            let after_at = i > 0 && (ws[i - 1] == "at" || ws[i - 1] == "around");
            let after_day = day_end == Some(i);
            if let Some((t, n)) = time_at(&ws, i, after_at || after_day) {
                time = Some(t);
                i += n;
                continue;
            }
        }
        i += 1;
    }
    if day.is_none() && time.is_none() {
        return None;
    }
    Some(DateTime { day, time })
}

/// "Tuesday 15:00" → "Tuesday at 3 PM"; "15:30" → "3:30 PM".
pub fn spoken_datetime(normalized: &str) -> String {
    let (day, time) = match normalized.rsplit_once(' ') {
        Some((d, t)) if t.contains(':') => (Some(d), t),
        _ if normalized.contains(':') && !normalized.contains(' ') => (None, normalized),
        _ => return normalized.to_string(),
    };
    let Some((h, m)) = time.split_once(':') else {
        return normalized.to_string();
    };
    let (Ok(h), Ok(m)) = (h.parse::<u32>(), m.parse::<u32>()) else {
        return normalized.to_string();
    };
    let t = match (h, m) {
        (12, 0) => "noon".to_string(),
        (0, 0) => "midnight".to_string(),
        _ => {
            let suffix = if h >= 12 { "PM" } else { "AM" };
            let h12 = if h % 12 == 0 { 12 } else { h % 12 };
            if m == 0 {
                format!("{h12} {suffix}")
            } else {
                format!("{h12}:{m:02} {suffix}")
            }
        }
    };
    match day {
        Some(d) => format!("{d} at {t}"),
        None => t,
    }
}

const CORRECTION_PREFIXES: &[&str] = &[
    "no",
    "nope",
    "sorry",
    "actually",
    "i said",
    "i mean",
    "i meant",
    "make it",
    "make that",
    "change it to",
    "it's",
    "it is",
    "wait",
    "oops",
    "rather",
    "how about",
    "let's say",
    "let's do",
    "instead",
];

/// Strips "no, actually, I said …" from the front. Returns whether anything was stripped and the rest.
pub fn strip_correction(norm: &str) -> (bool, String) {
    let mut ws = words(norm);
    let mut stripped = false;
    'outer: loop {
        for p in CORRECTION_PREFIXES {
            let pw: Vec<&str> = p.split(' ').collect();
            if ws.len() > pw.len() && ws[..pw.len()] == pw[..] {
                ws.drain(..pw.len());
                stripped = true;
                continue 'outer;
            }
        }
        break;
    }
    (stripped, ws.join(" "))
}

const SELF_CORRECTIONS: &[&str] = &[
    "no",
    "sorry",
    "actually",
    "i mean",
    "i meant",
    "make that",
    "make it",
    "rather",
    "wait",
    "no wait",
];

/// The words after the last self-correction inside an answer: "three, no, four" → "four",
/// "Tuesday, actually Wednesday" → "wednesday". `None` when there is no correction after the first word.
pub fn after_self_correction(norm: &str) -> Option<String> {
    let ws = words(norm);
    let mut best: Option<usize> = None;
    for p in SELF_CORRECTIONS {
        for (start, len) in find_phrase(&ws, p) {
            if start > 0 && start + len < ws.len() {
                best = Some(best.map_or(start + len, |b: usize| b.max(start + len)));
            }
        }
    }
    best.map(|i| ws[i..].join(" "))
}

const NAME_INTROS: &[&str] = &[
    "my name is",
    "my name's",
    "the name is",
    "name's",
    "this is",
    "it's",
    "it is",
    "i'm",
    "i am",
    "call me",
    "yes",
    "yeah",
    "sure",
    "hi",
    "hello",
];

/// A person's name as said: "Hi, my name is Ana Lopez." → "Ana Lopez". Case is kept.
pub fn person_name(utterance: &str) -> String {
    let mut s = utterance
        .trim()
        .trim_matches(|c: char| c.is_ascii_punctuation() || c.is_whitespace());
    loop {
        let lower = s.to_lowercase();
        let Some(p) = NAME_INTROS
            .iter()
            .find(|p| lower.starts_with(*p) && lower[p.len()..].starts_with([' ', ',']))
        else {
            break;
        };
        s = s[p.len()..].trim_start_matches([' ', ',']);
    }
    let s = s.strip_suffix(" speaking").unwrap_or(s);
    s.trim_matches(|c: char| c.is_ascii_punctuation() || c.is_whitespace())
        .to_string()
}

/// Index of the FAQ entry whose keywords match best (most keyword words matched); ties are undecided.
pub fn faq(norm: &str, keywords: &[Vec<String>]) -> Option<usize> {
    let ws = words(norm);
    let scores: Vec<usize> = keywords
        .iter()
        .map(|ks| {
            ks.iter()
                .filter(|k| !find_phrase(&ws, &normalize(k)).is_empty())
                .map(|k| k.split_whitespace().count())
                .sum()
        })
        .collect();
    let best = *scores.iter().max()?;
    if best == 0 || scores.iter().filter(|&&s| s == best).count() > 1 {
        return None;
    }
    scores.iter().position(|&s| s == best)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Option<i64> {
        number(&normalize(s))
    }

    #[test]
    fn normalizes_punctuation_and_times() {
        assert_eq!(normalize("Yes, that's RIGHT!"), "yes that's right");
        assert_eq!(normalize("at 3pm, or 3:30 p.m."), "at 3 pm or 3:30 pm");
        assert_eq!(normalize("+1 (555) 123-4567"), "+1 555 123 4567");
        assert_eq!(normalize("the 3rd"), "the 3rd");
    }

    #[test]
    fn numbers_in_digits_and_words() {
        assert_eq!(n("12345"), Some(12345));
        assert_eq!(n("it's 1 2 3 4 5"), Some(12345));
        assert_eq!(n("one two three four"), Some(1234));
        assert_eq!(n("forty two"), Some(42));
        assert_eq!(n("one hundred and five"), Some(105));
        assert_eq!(n("twelve thousand three hundred forty five"), Some(12345));
        assert_eq!(n("I'd give it a four out of five"), Some(4));
        assert_eq!(n("five"), Some(5));
        assert_eq!(n("no I said 4 5 6 7"), Some(4567));
        assert_eq!(n("three or four"), None);
        assert_eq!(n("I don't know"), None);
        assert_eq!(n("oh yes"), None);
    }

    #[test]
    fn yes_and_no() {
        let yn = |s: &str| yes_no(&normalize(s));
        for y in [
            "yes",
            "Yeah.",
            "yep",
            "sure",
            "that's right",
            "Correct",
            "absolutely",
            "yes please",
            "That's fine",
            "Mm-hm, go ahead",
            "works for me",
        ] {
            assert_eq!(yn(y), Some(true), "{y}");
        }
        for no in [
            "no",
            "Nope.",
            "not really",
            "that's not right",
            "no thanks",
            "that's wrong",
            // "works" inside "doesn't work" is not a yes.
            "That doesn't work for me",
            "it won't work",
        ] {
            assert_eq!(yn(no), Some(false), "{no}");
        }
        assert_eq!(yn("No, I'm fine"), Some(false));
        assert_eq!(yn("I know"), None);
        assert_eq!(yn("yes no"), None);
        assert_eq!(yn("maybe"), None);
    }

    #[test]
    fn phone_numbers() {
        let p = |s: &str| phone(&normalize(s));
        assert_eq!(p("555 123 4567"), Some("5551234567".to_string()));
        assert_eq!(p("it's +1 555-123-4567"), Some("+15551234567".to_string()));
        assert_eq!(
            p("five five five one two three four five six seven"),
            Some("5551234567".to_string())
        );
        assert_eq!(
            p("plus one five five five oh one two three"),
            Some("+15550123".to_string())
        );
        assert_eq!(
            p("double five five, one two three, four five six seven"),
            Some("5551234567".to_string())
        );
        assert_eq!(p("one two three"), None);
        assert_eq!(p("call me back"), None);
    }

    #[test]
    fn dates_and_times_without_a_clock() {
        let d = |s: &str| datetime(&normalize(s)).map(|d| d.normalized());
        assert_eq!(d("Tuesday at 3 pm"), Some("Tuesday 15:00".to_string()));
        assert_eq!(d("next Monday at 10"), Some("next Monday 10:00".to_string()));
        assert_eq!(d("March 3rd at 2:30 pm"), Some("March 3 14:30".to_string()));
        assert_eq!(d("the third of march at noon"), Some("March 3 12:00".to_string()));
        assert_eq!(d("tomorrow at three thirty"), Some("tomorrow 15:30".to_string()));
        assert_eq!(d("actually make it Wednesday"), Some("Wednesday".to_string()));
        assert_eq!(
            d("how about friday 10 in the morning"),
            Some("Friday 10:00".to_string())
        );
        assert_eq!(d("at 9am"), Some("09:00".to_string()));
        assert_eq!(d("I have 3 kids"), None);
        assert_eq!(d("no idea"), None);
        assert_eq!(spoken_datetime("Tuesday 15:00"), "Tuesday at 3 PM");
        assert_eq!(spoken_datetime("March 3 14:30"), "March 3 at 2:30 PM");
        assert_eq!(spoken_datetime("Wednesday"), "Wednesday");
    }

    #[test]
    fn synonyms_longest_wins_and_ambiguity_is_undecided() {
        let opts = vec![
            (
                "confirm".to_string(),
                vec!["$yes".to_string(), "i'll be there".to_string()],
            ),
            (
                "reschedule".to_string(),
                vec!["reschedule".to_string(), "another time".to_string()],
            ),
            ("cancel".to_string(), vec!["cancel".to_string()]),
            (
                "wrong_person".to_string(),
                vec!["wrong number".to_string(), "wrong person".to_string()],
            ),
            ("no_show".to_string(), vec!["no show".to_string()]),
        ];
        let o = |s: &str| one_of(&normalize(s), &opts);
        assert_eq!(o("Yes, I'll be there"), Some("confirm".to_string()));
        assert_eq!(o("I need to reschedule"), Some("reschedule".to_string()));
        assert_eq!(o("you have the wrong number"), Some("wrong_person".to_string()));
        assert_eq!(o("cancel or reschedule"), None);
        assert_eq!(o("no show"), Some("no_show".to_string()));
        assert_eq!(o("cancellation"), None, "word boundaries");
        assert_eq!(o("purple"), None);
    }

    #[test]
    fn global_intents_and_corrections() {
        let human: Vec<String> = HUMAN_PHRASES.iter().map(|s| s.to_string()).collect();
        let opt: Vec<String> = OPT_OUT_PHRASES.iter().map(|s| s.to_string()).collect();
        let g = |s: &str| global_intent(&normalize(s), &opt, &human);
        assert_eq!(g("Can I talk to a person please"), Some(GlobalIntent::Human));
        assert_eq!(g("operator"), Some(GlobalIntent::Human));
        assert_eq!(g("Stop calling me."), Some(GlobalIntent::OptOut));
        assert_eq!(g("please take me off your list"), Some(GlobalIntent::OptOut));
        assert_eq!(g("what are your hours"), None);
        assert_eq!(
            strip_correction("no i said 4 5 6 7"),
            (true, "4 5 6 7".to_string())
        );
        assert_eq!(
            strip_correction("actually make it wednesday"),
            (true, "wednesday".to_string())
        );
        assert_eq!(after_self_correction("three no four"), Some("four".to_string()));
        assert_eq!(
            after_self_correction("tuesday actually wednesday at 2"),
            Some("wednesday at 2".to_string())
        );
        assert_eq!(after_self_correction("no i need to reschedule"), None);
        assert_eq!(person_name("Hi, my name is Ana Lopez."), "Ana Lopez");
        assert_eq!(person_name("it's Tom"), "Tom");
        assert_eq!(person_name("Sam Lee"), "Sam Lee");
    }

    #[test]
    fn faq_keywords() {
        let kws = vec![
            vec!["deliver".to_string(), "delivery".to_string()],
            vec!["gluten".to_string(), "gluten free".to_string()],
        ];
        assert_eq!(faq(&normalize("Do you deliver?"), &kws), Some(0));
        assert_eq!(faq(&normalize("anything gluten free"), &kws), Some(1));
        assert_eq!(faq(&normalize("hello"), &kws), None);
    }

    #[test]
    fn questions_are_told_from_other_answers() {
        for q in [
            "Can I bring my dog inside?",
            "do you have vegan cupcakes",
            "How much is a birthday cake",
            "And the cookies, are they fresh?",
        ] {
            assert!(is_question(q), "{q:?}");
        }
        for not in [
            "what?",
            "huh?",
            "purple monkey dishwasher",
            "blah blah",
            "I want to leave a message",
            "",
        ] {
            assert!(!is_question(not), "{not:?}");
        }
    }

    #[test]
    fn the_question_synonym_matches_no_words() {
        let options = vec![
            ("hours".to_string(), vec!["open".to_string()]),
            ("other".to_string(), vec![QUESTION_SYNONYM.to_string()]),
        ];
        assert_eq!(one_of("question", &options), None);
        assert_eq!(one_of("are you open", &options), Some("hours".to_string()));
    }

    #[test]
    fn a_value_read_from_the_words_is_grounded_and_an_invented_one_is_not() {
        let g = |answer: &str, said: &str| grounded(&normalize(answer), &normalize(said));
        // SmolLM2's answer to "yes" when asked for the new day and time: copied from the prompt.
        assert!(!g("Tuesday at 3 pm", "yes"));
        assert!(!g("Friday", "next week sometime"));
        assert!(!g("42", "I don't know"));
        assert!(!g("Tuesday at 4 pm", "tuesday at three"));
        assert!(g("Saturday at 11 am", "saturday at eleven in the morning"));
        assert!(g("Friday 15:30", "friday, half past three"));
        assert!(g("March 5th at noon", "the fifth of march, around 12"));
        assert!(g("Tuesday 15:00", "tuesday at 3 pm"));
        assert!(g("5551234", "it's five five five, one two three four"));
        assert!(g("25", "twenty five"));
        assert!(g("tomorrow at 9", "uh tomorrow at nine please"));
    }
}
