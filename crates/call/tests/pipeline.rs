//! The call pipeline driven through its channels with small fake engines: pacing and marks, the
//! greeting, keypad input, silence handling, barge-in, and the call's ending and report.
//! (The real engines are exercised end to end by the server's black-box tests.)

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use switchboard_call::fakes::{FakeLlm, FakeStt, FakeTts};
use switchboard_call::{
    CallCommand, CallEvent, CallLog, CallReport, CallSettings, EndReason, Engines, LogEntry, Speaker,
    run_call,
};
use switchboard_flow::{Contact, Flow, Outcome};
use tokio::sync::mpsc;

const FLOW: &str = r#"
name: test_line
direction: inbound
persona: A test line.
facts: { hours: nine to five }
slots:
  topic: { type: one_of, options: { hours: [hours, open], other: [] } }
global:
  silence: { timeout_ms: 3000, max: 2, goodbye: Nobody there. Goodbye. }
  human: { goto: staff, dtmf: "0" }
  misunderstanding: { max: 3, goto: staff }
start: menu
steps:
  menu:
    ask: topic
    prompt: Welcome. Press 1 or ask for our hours.
    dtmf: { "1": hours }
    routes: { hours: hours, other: bye }
    on_fail: staff
  hours:
    say: We are open {{facts.hours}}.
    next: bye
  bye:
    end: { outcome: resolved, say: Goodbye. }
  staff:
    transfer: { to: "+15550100" }
"#;

/// The provider's side: collects what the bot sends, confirms marks at once, and plays `script`
/// (each event after a delay counted from the start).
async fn call_with(script: Vec<(Duration, CallEvent)>, stt: Arc<FakeStt>) -> (CallReport, Vec<CallCommand>) {
    call_with_settings(script, stt, CallSettings::default()).await
}

async fn call_with_settings(
    script: Vec<(Duration, CallEvent)>,
    stt: Arc<FakeStt>,
    settings: CallSettings,
) -> (CallReport, Vec<CallCommand>) {
    let flow = Arc::new(Flow::parse(FLOW, "test_line.yaml", None).expect("flow"));
    let (ev_tx, ev_rx) = mpsc::channel(1024);
    let (cmd_tx, mut cmd_rx) = mpsc::channel(1024);
    let engines = Engines {
        stt,
        llm: Arc::new(FakeLlm),
        tts: Arc::new(FakeTts),
    };
    let call = tokio::spawn(run_call(
        flow,
        Contact::default(),
        engines,
        settings,
        ev_rx,
        cmd_tx,
    ));
    let marks = ev_tx.clone();
    let provider = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(c) = cmd_rx.recv().await {
            if let CallCommand::Mark(name) = &c {
                let _ = marks.send(CallEvent::Mark(name.clone())).await;
            }
            seen.push(c);
        }
        seen
    });
    let start = tokio::time::Instant::now();
    for (at, event) in script {
        tokio::time::sleep_until(start + at).await;
        if ev_tx.send(event).await.is_err() {
            break;
        }
    }
    let report = call.await.expect("call task");
    drop(ev_tx);
    let commands = provider.await.expect("provider task");
    (report, commands)
}

fn silence(ms: usize) -> CallEvent {
    CallEvent::Media(vec![0xFF; ms * 8])
}

fn frames(commands: &[CallCommand]) -> usize {
    commands
        .iter()
        .filter(|c| matches!(c, CallCommand::Media(_)))
        .count()
}

#[tokio::test(start_paused = true)]
async fn greeting_is_paced_with_marks_and_a_key_gets_the_hours() {
    let stt = Arc::new(FakeStt::new(""));
    let script = vec![(Duration::from_secs(4), CallEvent::Dtmf('1'))];
    let (report, commands) = call_with(script, stt).await;
    assert!(
        frames(&commands) > 50,
        "the greeting and the answer were sent as frames"
    );
    assert!(commands.iter().all(|c| match c {
        CallCommand::Media(f) => f.len() == 160,
        _ => true,
    }));
    let marks = commands
        .iter()
        .filter(|c| matches!(c, CallCommand::Mark(_)))
        .count();
    assert!(marks >= 4, "a mark after every phrase: {marks}");
    assert_eq!(commands.last(), Some(&CallCommand::Hangup));
    assert_eq!(report.outcome, Some(Outcome::Resolved));
    assert_eq!(report.ended_by, Some(EndReason::BotHungUp));
    let lines = report.bot_lines();
    assert!(lines.iter().any(|l| l.contains("nine to five")), "{lines:?}");
    assert!(
        report
            .events
            .iter()
            .any(|e| e.note == switchboard_call::CallNote::Dtmf { digit: '1' })
    );
}

#[tokio::test(start_paused = true)]
async fn silence_reprompts_then_says_goodbye_and_hangs_up() {
    let stt = Arc::new(FakeStt::new(""));
    // The caller's line stays open and silent.
    let script: Vec<_> = (0..1000)
        .map(|i| (Duration::from_millis(20 * i), silence(20)))
        .collect();
    let (report, commands) = call_with(script, stt.clone()).await;
    let lines = report.bot_lines().join(" | ");
    assert!(lines.contains("Nobody there"), "{lines}\n{report:#?}");
    assert_eq!(commands.last(), Some(&CallCommand::Hangup));
    assert_eq!(
        report.outcome,
        Some(Outcome::Abandoned),
        "inbound: the caller stayed silent"
    );
    assert_eq!(report.ended_by, Some(EndReason::BotHungUp));
    assert!(
        report
            .events
            .iter()
            .filter(|e| e.note == switchboard_call::CallNote::Silence)
            .count()
            >= 2
    );
    assert_eq!(
        stt.calls.load(Ordering::SeqCst),
        0,
        "nothing to transcribe in silence"
    );
}

#[tokio::test(start_paused = true)]
async fn a_key_while_the_bot_talks_interrupts_it() {
    let stt = Arc::new(FakeStt::new(""));
    // "Welcome." lasts about 0.5 s, the whole greeting about 2.3 s; press 1 during "Welcome.".
    let script = vec![(Duration::from_millis(250), CallEvent::Dtmf('1'))];
    let (report, commands) = call_with(script, stt).await;
    let clear_at = commands
        .iter()
        .position(|c| *c == CallCommand::Clear)
        .expect("clear sent");
    assert!(
        frames(&commands[..clear_at]) < 40,
        "cleared early in the greeting"
    );
    let greeting = report
        .turns
        .iter()
        .find(|t| t.speaker == Speaker::Bot)
        .expect("greeting line");
    assert!(greeting.interrupted, "{greeting:?}");
    assert_eq!(greeting.text, "Welcome.", "only what was heard is kept");
    assert!(report.bot_lines().iter().any(|l| l.contains("nine to five")));
}

#[tokio::test(start_paused = true)]
async fn the_caller_hanging_up_ends_the_call_as_abandoned() {
    let stt = Arc::new(FakeStt::new(""));
    let script = vec![(Duration::from_millis(300), CallEvent::Stop)];
    let (report, _) = call_with(script, stt).await;
    assert_eq!(report.ended_by, Some(EndReason::CallerHungUp));
    assert_eq!(report.outcome, Some(Outcome::Abandoned));
}

#[tokio::test(start_paused = true)]
async fn the_log_hears_of_turns_while_the_call_goes_on_and_ends_where_the_report_does() {
    let stt = Arc::new(FakeStt::new(""));
    let (log, mut entries) = CallLog::channel();
    let settings = CallSettings {
        log: Some(log),
        ..CallSettings::default()
    };
    // Interrupt the greeting with a key, so a line is rewritten (cut) after it was first logged.
    let script = vec![(Duration::from_millis(250), CallEvent::Dtmf('1'))];
    let call = tokio::spawn(call_with_settings(script, stt, settings));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let early = entries.try_recv().expect("the greeting is logged while it plays");
    assert!(
        matches!(&early, LogEntry::Turn(t) if t.speaker == Speaker::Bot && t.seq == 0),
        "{early:?}"
    );
    let (report, _) = call.await.expect("call");
    // Replay the log the way a store would: last write per seq wins, drops delete.
    let mut turns = std::collections::BTreeMap::new();
    let mut events = Vec::new();
    if let LogEntry::Turn(t) = early {
        turns.insert(t.seq, t);
    }
    while let Ok(entry) = entries.try_recv() {
        match entry {
            LogEntry::Turn(t) => {
                turns.insert(t.seq, t);
            }
            LogEntry::TurnDropped { seq } => {
                turns.remove(&seq);
            }
            LogEntry::Event(e) => events.push(e),
        }
    }
    let logged: Vec<_> = turns.into_values().collect();
    assert_eq!(logged, report.turns, "the log ends where the report does");
    assert_eq!(events, report.events);
    assert!(
        logged[0].interrupted && logged[0].text == "Welcome.",
        "{:?}",
        logged[0]
    );
}

/// The bundled caller recording, as the provider would send it: 20 ms mu-law frames, each at its
/// time after `from`.
fn caller_speech(from: Duration) -> Vec<(Duration, CallEvent)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../samples/caller-hours.wav");
    let audio = switchboard_audio::wav::read_wav(path).expect("the sample reads");
    let mut encoder = switchboard_audio::MulawEncoder8k::new(audio.sample_rate).expect("encoder");
    let mut frames = encoder.push(&audio.samples);
    frames.extend(encoder.finish());
    // A second of quiet after the words, so the turn ends.
    frames.extend(std::iter::repeat_n([0xFF; 160], 50));
    frames
        .into_iter()
        .enumerate()
        .map(|(i, f)| (from + FRAME_MS * i as u32, CallEvent::Media(f.to_vec())))
        .collect()
}

const FRAME_MS: Duration = Duration::from_millis(20);

#[tokio::test(start_paused = true)]
async fn a_stopped_engine_ends_the_call_with_an_apology_instead_of_silence() {
    // The caller asks a question; recognition fails as when the engine crashed under the call.
    let (report, commands) = call_with(
        caller_speech(Duration::from_secs(4)),
        Arc::new(FakeStt::stopped()),
    )
    .await;
    let lines = report.bot_lines();
    assert_eq!(
        lines.last().copied(),
        Some(switchboard_call::ENGINE_FAILURE_APOLOGY),
        "{lines:?}"
    );
    assert_eq!(commands.last(), Some(&CallCommand::Hangup));
    assert_eq!(report.ended_by, Some(EndReason::BotHungUp));
    assert_eq!(report.outcome, Some(Outcome::Failed));
    assert!(
        report.events.iter().any(|e| matches!(
            &e.note,
            switchboard_call::CallNote::Error { message } if message.contains("speech-to-text")
        )),
        "{:?}",
        report.events
    );
}

#[test]
fn a_transcript_reads_finished_on_end_punctuation_unless_the_caller_trails_off() {
    use switchboard_call::reads_finished;
    for finished in [
        "What are your hours?",
        "Sounds good.",
        "Yes!",
        "I'd like to cancel my appointment.",
    ] {
        assert!(reads_finished(finished), "{finished}");
    }
    for goes_on in [
        "What are your",
        "My order number is 4 5.",
        "I'd like to, um.",
        "Can you tell me the...",
        "I was calling about my.",
        "Well, and",
        "",
        "   .",
    ] {
        assert!(!reads_finished(goes_on), "{goes_on}");
    }
}

/// Caller turn timings: (speech end → turn end) of the first caller turn.
fn end_of_turn_wait(report: &CallReport) -> Duration {
    let timings = report
        .turns
        .iter()
        .find(|t| t.speaker == Speaker::Caller)
        .and_then(|t| t.timings.clone())
        .unwrap_or_else(|| panic!("a caller turn with timings: {:?}", report.turns));
    timings.turn_end.saturating_sub(timings.speech_end)
}

#[tokio::test(start_paused = true)]
async fn a_finished_sounding_turn_ends_before_the_full_silence_and_an_unfinished_one_waits() {
    let mut script = caller_speech(Duration::from_secs(4));
    script.push((Duration::from_secs(12), CallEvent::Stop));
    let (finished, _) = call_with(script.clone(), Arc::new(FakeStt::new("What are your hours?"))).await;
    let (trailing, _) = call_with(script.clone(), Arc::new(FakeStt::new("What are your hours and"))).await;
    let settings = CallSettings {
        early_end_of_turn: None,
        ..CallSettings::default()
    };
    let (off, _) = call_with_settings(script, Arc::new(FakeStt::new("What are your hours?")), settings).await;

    let silence = switchboard_audio::VadConfig::default().end_of_turn_silence;
    let early = end_of_turn_wait(&finished);
    // 350 ms of pause (the setting), give or take a frame of audio and the pipeline's steps.
    assert!(
        early >= Duration::from_millis(340) && early <= Duration::from_millis(420),
        "finished: {early:?}"
    );
    for (label, report) in [("trailing off", &trailing), ("early end off", &off)] {
        let waited = end_of_turn_wait(report);
        assert!(waited >= silence, "{label}: {waited:?} < {silence:?}");
    }
    // Either way the flow got the same question and answered it.
    assert!(
        finished.bot_lines().iter().any(|l| l.contains("nine to five")),
        "{:?}",
        finished.bot_lines()
    );
    assert!(off.bot_lines().iter().any(|l| l.contains("nine to five")));
}
