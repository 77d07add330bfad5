//! End-of-turn detection on real speech: espeak-ng synthesizes English at test time, the test
//! places it at known positions (with silence, noise and the telephone line), and checks the
//! events against where the speech really is.

use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use switchboard_audio::{MulawDecoder16k, TurnDetector, TurnEvent, VadConfig, phone_line, read_wav_16k};

const RATE: usize = 16_000;

fn ms(n: usize) -> usize {
    n * RATE / 1000
}

fn secs(samples: usize) -> f64 {
    samples as f64 / RATE as f64
}

/// Speech from espeak-ng, resampled to 16 kHz, trimmed to where the voice really is (espeak pads
/// its output with near-silence).
fn espeak(text: &str) -> Vec<f32> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("speech.wav");
    let status = Command::new("espeak-ng")
        .arg("-w")
        .arg(&path)
        .arg(text)
        .status()
        .expect("espeak-ng must be installed (the Makefile installs it)");
    assert!(status.success(), "espeak-ng failed");
    let audio = read_wav_16k(&path).expect("read espeak output");
    let loud = |x: &f32| x.abs() > 0.01;
    let first = audio.iter().position(loud).expect("espeak produced silence");
    let last = audio.iter().rposition(loud).expect("espeak produced silence");
    audio[first..=last].to_vec()
}

fn sentence_a() -> &'static [f32] {
    static A: OnceLock<Vec<f32>> = OnceLock::new();
    A.get_or_init(|| espeak("Hello, I would like to check the status of my order please."))
}

fn sentence_b() -> &'static [f32] {
    static B: OnceLock<Vec<f32>> = OnceLock::new();
    B.get_or_init(|| espeak("Yes, my account number is four five six seven."))
}

/// Deterministic noise.
struct XorShift(u64);

impl XorShift {
    fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        // Uniform in [-1, 1).
        (self.0 >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    fn white(&mut self, len: usize, rms: f32) -> Vec<f32> {
        // A uniform variable on [-1, 1) has RMS 1/sqrt(3).
        (0..len).map(|_| self.next_f32() * rms * 3f32.sqrt()).collect()
    }

    /// Pink (1/f) noise, Paul Kellett's economy filter, scaled to `rms`.
    fn pink(&mut self, len: usize, rms: f32) -> Vec<f32> {
        let (mut b0, mut b1, mut b2) = (0.0f32, 0.0f32, 0.0f32);
        let raw: Vec<f32> = (0..len)
            .map(|_| {
                let w = self.next_f32();
                b0 = 0.99765 * b0 + w * 0.0990460;
                b1 = 0.96300 * b1 + w * 0.2965164;
                b2 = 0.57000 * b2 + w * 1.0526913;
                b0 + b1 + b2 + w * 0.1848
            })
            .collect();
        let scale = rms / rms_of(&raw);
        raw.iter().map(|x| x * scale).collect()
    }
}

fn rms_of(x: &[f32]) -> f32 {
    (x.iter().map(|v| v * v).sum::<f32>() / x.len().max(1) as f32).sqrt()
}

/// Where a clip was placed: true speech start and end, in samples.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: usize,
    end: usize,
}

/// Lays clips out with the given silences before each, then a tail of silence.
fn layout(parts: &[(usize, &[f32])], tail: usize) -> (Vec<f32>, Vec<Span>) {
    let mut out = Vec::new();
    let mut spans = Vec::new();
    for (gap, clip) in parts {
        out.extend(std::iter::repeat_n(0.0, *gap));
        spans.push(Span {
            start: out.len(),
            end: out.len() + clip.len(),
        });
        out.extend_from_slice(clip);
    }
    out.extend(std::iter::repeat_n(0.0, tail));
    (out, spans)
}

fn run(audio: &[f32], chunk: usize) -> Vec<TurnEvent> {
    let mut vad = TurnDetector::new(VadConfig::default());
    let mut events = Vec::new();
    for c in audio.chunks(chunk) {
        events.extend(vad.push(c));
    }
    events.extend(vad.finish());
    events
}

fn turns(events: &[TurnEvent]) -> Vec<(f64, f64, usize)> {
    events
        .iter()
        .filter_map(|e| match e {
            TurnEvent::TurnEnded {
                utterance,
                start,
                end,
            } => Some((start.as_secs_f64(), end.as_secs_f64(), utterance.len())),
            _ => None,
        })
        .collect()
}

fn describe(events: &[TurnEvent]) -> String {
    events
        .iter()
        .map(|e| match e {
            TurnEvent::SpeechStarted { at } => format!("start@{:.3}", at.as_secs_f64()),
            TurnEvent::SpeechPaused { at } => format!("pause@{:.3}", at.as_secs_f64()),
            TurnEvent::SpeechResumed { at } => format!("resume@{:.3}", at.as_secs_f64()),
            TurnEvent::TurnEnded { start, end, .. } => {
                format!("TURN[{:.3}..{:.3}]", start.as_secs_f64(), end.as_secs_f64())
            }
            TurnEvent::Discarded { at, length } => {
                format!("discard@{:.3}+{:.3}", at.as_secs_f64(), length.as_secs_f64())
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Asserts one turn per span, each boundary within `tolerance` seconds; returns the worst error.
fn assert_turns_match(events: &[TurnEvent], spans: &[Span], tolerance: f64, label: &str) -> f64 {
    let found = turns(events);
    assert_eq!(
        found.len(),
        spans.len(),
        "{label}: expected {} turns, got {}",
        spans.len(),
        describe(events)
    );
    let mut worst = 0.0f64;
    for ((start, end, _), span) in found.iter().zip(spans) {
        let (ds, de) = (start - secs(span.start), end - secs(span.end));
        eprintln!("{label}: start error {:+.3} s, end error {:+.3} s", ds, de);
        assert!(
            ds.abs() <= tolerance,
            "{label}: start {start:.3} vs true {:.3}",
            secs(span.start)
        );
        assert!(
            de.abs() <= tolerance,
            "{label}: end {end:.3} vs true {:.3}",
            secs(span.end)
        );
        worst = worst.max(ds.abs()).max(de.abs());
    }
    worst
}

fn two_sentences() -> (Vec<f32>, Vec<Span>) {
    layout(&[(ms(500), sentence_a()), (ms(1000), sentence_b())], ms(1000))
}

#[test]
fn speech_silence_speech_gives_two_turns_at_the_true_boundaries() {
    let (audio, spans) = two_sentences();
    let events = run(&audio, 320);
    eprintln!("clean: {}", describe(&events));
    let worst = assert_turns_match(&events, &spans, 0.120, "clean");
    eprintln!("clean: worst boundary error {worst:.3} s");
    // The utterance carries pre-roll, so it is longer than the detected speech.
    for (start, end, len) in turns(&events) {
        assert!(
            secs(len) > end - start,
            "utterance shorter than the speech it holds"
        );
    }
}

#[test]
fn noisy_phone_line_still_gives_two_turns() {
    let (clean, spans) = two_sentences();
    let speech_rms = {
        let voiced: Vec<f32> = spans
            .iter()
            .flat_map(|s| clean[s.start..s.end].iter().copied())
            .collect();
        rms_of(&voiced)
    };
    let noise_rms = speech_rms / 10f32.powf(15.0 / 20.0);
    for (kind, seed) in [("white", 1u64), ("pink", 2)] {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15 ^ seed);
        let noise = if kind == "white" {
            rng.white(clean.len(), noise_rms)
        } else {
            rng.pink(clean.len(), noise_rms)
        };
        let mixed: Vec<f32> = clean.iter().zip(&noise).map(|(s, n)| s + n).collect();
        let line = phone_line(&mixed);
        let events = run(&line, 320);
        eprintln!("{kind} 15 dB + phone line: {}", describe(&events));
        let worst = assert_turns_match(&events, &spans, 0.200, kind);
        eprintln!("{kind}: worst boundary error {worst:.3} s");
    }
}

#[test]
fn line_noise_and_mulaw_silence_give_no_turn() {
    let mut rng = XorShift(0xDEAD_BEEF_1234_5678);
    let ten_s = 10 * RATE;
    let mut cases: Vec<(&str, Vec<f32>)> = Vec::new();
    for (label, rms) in [("quiet", 0.003f32), ("loud", 0.03), ("very loud", 0.1)] {
        cases.push((label, phone_line(&rng.white(ten_s, rms))));
        let pink = rng.pink(ten_s, rms);
        // Mains hum rides on many analog lines.
        let hummed: Vec<f32> = pink
            .iter()
            .enumerate()
            .map(|(n, x)| x + rms * (2.0 * std::f32::consts::PI * 60.0 * n as f32 / RATE as f32).sin())
            .collect();
        cases.push((label, phone_line(&hummed)));
    }
    let mut decoder = MulawDecoder16k::new();
    let mut silence = Vec::new();
    for _ in 0..500 {
        decoder.decode(&[0xFF; 160], &mut silence);
    }
    cases.push(("mu-law 0xFF", silence));
    for (label, audio) in &cases {
        let events = run(audio, 320);
        assert!(
            turns(&events).is_empty(),
            "{label} noise produced a turn: {}",
            describe(&events)
        );
        let starts = events
            .iter()
            .filter(|e| matches!(e, TurnEvent::SpeechStarted { .. }))
            .count();
        eprintln!("{label}: {} events, {starts} false starts", events.len());
        assert_eq!(starts, 0, "{label} noise triggered speech: {}", describe(&events));
    }
}

/// Known limitation, pinned so it cannot get worse: when a line goes from digital silence to
/// noise, the noise floor needs up to a second to catch up, and earshot alone takes noise for
/// speech. At most one false turn may come out of it, inside that second; after it, nothing.
#[test]
fn noise_onset_after_digital_silence_recovers_within_a_second() {
    let mut rng = XorShift(0x0123_4567_89AB_CDEF);
    for rms in [0.003f32, 0.03] {
        let mut audio = vec![0.0; 2 * RATE];
        audio.extend(phone_line(&rng.pink(8 * RATE, rms)));
        let events = run(&audio, 320);
        eprintln!("onset at 2 s, noise rms {rms}: {}", describe(&events));
        let found = turns(&events);
        assert!(found.len() <= 1, "{}", describe(&events));
        assert!(
            found.iter().all(|(_, end, _)| *end <= 3.2),
            "{}",
            describe(&events)
        );
        let late_start = events
            .iter()
            .any(|e| matches!(e, TurnEvent::SpeechStarted { at } if at.as_secs_f64() > 3.2));
        assert!(!late_start, "{}", describe(&events));
    }
}

#[test]
fn short_burst_is_discarded_not_a_turn() {
    // 150 ms cut from the middle of real speech: speech-like enough to start, too short for a turn.
    let a = sentence_a();
    let mid = a.len() / 2;
    let burst = &a[mid..mid + ms(150)];
    let (audio, _) = layout(&[(ms(500), burst)], ms(1000));
    let events = run(&audio, 320);
    eprintln!("speech burst: {}", describe(&events));
    assert!(
        turns(&events).is_empty(),
        "a 150 ms burst became a turn: {}",
        describe(&events)
    );
    assert!(
        events.iter().any(
            |e| matches!(e, TurnEvent::Discarded { length, .. } if *length < Duration::from_millis(250))
        ),
        "expected Discarded: {}",
        describe(&events)
    );
    // A click of noise and a tone blip are not turns either.
    let mut rng = XorShift(42);
    let click = rng.white(ms(150), 0.3);
    let tone: Vec<f32> = (0..ms(150))
        .map(|n| 0.3 * (2.0 * std::f32::consts::PI * 440.0 * n as f32 / RATE as f32).sin())
        .collect();
    for (label, clip) in [("click", &click), ("tone", &tone)] {
        let (audio, _) = layout(&[(ms(500), clip)], ms(1000));
        let events = run(&audio, 320);
        eprintln!("{label}: {}", describe(&events));
        assert!(
            turns(&events).is_empty(),
            "{label} became a turn: {}",
            describe(&events)
        );
    }
}

#[test]
fn pause_shorter_than_end_of_turn_does_not_split_the_turn() {
    let (audio, spans) = layout(&[(ms(500), sentence_a()), (ms(300), sentence_b())], ms(1000));
    let events = run(&audio, 320);
    eprintln!("300 ms pause: {}", describe(&events));
    let whole = [Span {
        start: spans[0].start,
        end: spans[1].end,
    }];
    assert_turns_match(&events, &whole, 0.120, "pause");
    assert!(events.iter().any(|e| matches!(e, TurnEvent::SpeechPaused { .. })));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, TurnEvent::SpeechResumed { .. }))
    );
}

#[test]
fn chunk_size_does_not_change_the_events() {
    let (audio, _) = two_sentences();
    let a = run(&audio, 320);
    let b = run(&audio, 97);
    let c = run(&audio, audio.len());
    assert!(!a.is_empty());
    assert_eq!(a, b);
    assert_eq!(a, c);
}

#[test]
fn max_utterance_forces_a_turn_end() {
    let (audio, _) = layout(&[(ms(200), sentence_a())], ms(1000));
    let config = VadConfig {
        max_utterance: Duration::from_millis(1000),
        ..VadConfig::default()
    };
    let mut vad = TurnDetector::new(config);
    let mut events = vad.push(&audio);
    events.extend(vad.finish());
    eprintln!("max 1 s: {}", describe(&events));
    let found = turns(&events);
    assert!(
        found.len() >= 2,
        "a {:.1} s sentence was not split: {}",
        secs(sentence_a().len()),
        describe(&events)
    );
    // The limit is checked once per 16 ms frame.
    assert!(
        found.iter().all(|(s, e, _)| e - s <= 1.0 + 0.016 + 1e-9),
        "{found:?}"
    );
}

#[test]
fn a_paused_utterance_is_what_the_turn_end_will_carry() {
    // Speculative transcription starts on `paused_utterance` once the pause is longer than the pre-roll;
    // if the caller does not resume, that audio must be exactly the turn's.
    let (audio, spans) = layout(&[(ms(300), sentence_a())], ms(1500));
    let config = VadConfig::default();
    let pre_roll = config.pre_roll;
    let mut vad = TurnDetector::new(config);
    let mut speculated = None;
    let mut ended = None;
    for c in audio.chunks(320) {
        for e in vad.push(c) {
            if let TurnEvent::TurnEnded {
                utterance,
                start,
                end,
            } = e
            {
                ended = Some((utterance, start, end));
            }
        }
        // A pause inside the sentence (a comma) may start a speculation that a later pause replaces.
        if let Some((u, start, end)) = vad.paused_utterance() {
            let newer = speculated.as_ref().is_none_or(|s: &(Vec<f32>, _, _)| s.2 != end);
            if newer && vad.position() >= end + pre_roll {
                speculated = Some((u, start, end));
            }
        }
    }
    let (u, start, end) = speculated.expect("a pause long enough to speculate on");
    let (tu, tstart, tend) = ended.expect("the turn ended");
    assert_eq!((start, end), (tstart, tend));
    assert_eq!(u, tu, "speculative audio differs from the turn's");
    assert!(
        (secs(spans[0].end) - end.as_secs_f64()).abs() < 0.12,
        "end {end:?}"
    );
    // Not paused any more: nothing to speculate on.
    assert!(vad.paused_utterance().is_none());
}

#[test]
fn a_turn_ended_early_on_its_speculation_carries_the_same_audio_and_nothing_follows() {
    use switchboard_audio::turns::{SpeculativeTurns, TurnAction};
    let (audio, _) = layout(&[(ms(300), sentence_a())], ms(1500));
    // Once with the silence deciding, once ending the turn as soon as the speculation starts.
    let run = |early: bool| {
        let mut turns = SpeculativeTurns::new(VadConfig::default(), Duration::from_millis(200));
        let mut actions = Vec::new();
        let mut ended_at = None;
        for c in audio.chunks(320) {
            for a in turns.push(c) {
                if let TurnAction::Speculate { id, .. } = &a
                    && early
                {
                    let id = *id;
                    actions.push(a);
                    for b in turns.end_turn_early(id) {
                        ended_at.get_or_insert(turns.position());
                        actions.push(b);
                    }
                    continue;
                }
                if matches!(a, TurnAction::TurnEnded { .. }) {
                    ended_at.get_or_insert(turns.position());
                }
                actions.push(a);
            }
        }
        (actions, ended_at.expect("the turn ended"))
    };
    let (late, late_at) = run(false);
    let (early, early_at) = run(true);
    let ended = |actions: &[TurnAction]| {
        actions
            .iter()
            .filter_map(|a| match a {
                TurnAction::TurnEnded {
                    samples,
                    end,
                    speculation,
                    ..
                } => Some((samples.clone(), *end, *speculation)),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let (late_turns, early_turns) = (ended(&late), ended(&early));
    assert_eq!(early_turns.len(), 1, "one turn, not split: {}", early_turns.len());
    assert_eq!(late_turns.len(), 1);
    assert_eq!(early_turns[0].0, late_turns[0].0, "the same audio");
    assert_eq!(early_turns[0].1, late_turns[0].1, "the same end of speech");
    assert!(early_turns[0].2.is_some(), "the speculation is the transcript");
    // Ended at the speculation (200 ms into the pause) instead of after the 600 ms silence.
    let saved = late_at - early_at;
    assert!(
        saved >= Duration::from_millis(300),
        "early {early_at:?}, by the silence {late_at:?}"
    );
    // A stale id does nothing.
    let mut turns = SpeculativeTurns::new(VadConfig::default(), Duration::from_millis(200));
    assert!(turns.end_turn_early(42).is_empty());
}
