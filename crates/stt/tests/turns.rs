//! Speculative transcription around end of turn, on real (synthesized) speech through the phone path.

use std::time::Duration;

use switchboard_audio::VadConfig;
use switchboard_audio::telephone::phone_line;
use switchboard_stt::testset::{CLEAR_VOICES, synthesize};
use switchboard_stt::turns::{SpeculativeTurns, TurnAction};

/// Speech trimmed to where the voice is (flite pads its output with silence), so the pauses a test
/// places are the pauses the detector hears.
fn speech(text: &str) -> Vec<f32> {
    let audio = synthesize(text, CLEAR_VOICES[0]).expect("flite synthesizes");
    let loud = |x: &f32| x.abs() > 0.01;
    let first = audio.iter().position(loud).expect("not silent");
    let last = audio.iter().rposition(loud).expect("not silent");
    audio[first..=last].to_vec()
}

/// Actions without their audio, for failure messages.
fn describe(actions: &[TurnAction]) -> String {
    let short: Vec<String> = actions
        .iter()
        .map(|a| match a {
            TurnAction::Speculate { id, samples } => format!("Speculate#{id}({} samples)", samples.len()),
            TurnAction::TurnEnded {
                start,
                end,
                speculation,
                ..
            } => {
                format!("TurnEnded({start:?}..{end:?}, speculation {speculation:?})")
            }
            other => format!("{other:?}"),
        })
        .collect();
    short.join(", ")
}

fn silence(ms: usize) -> Vec<f32> {
    vec![0.0; ms * 16]
}

fn run(audio: &[f32]) -> Vec<TurnAction> {
    let mut turns = SpeculativeTurns::new(VadConfig::default(), Duration::from_millis(200));
    let mut actions = Vec::new();
    for frame in audio.chunks(320) {
        actions.extend(turns.push(frame));
    }
    actions.extend(turns.finish());
    actions
}

#[test]
fn a_speculation_on_the_final_pause_becomes_the_turns_transcript() {
    let audio = phone_line(
        &[
            silence(300),
            speech("I want to check the status of my order."),
            silence(1200),
        ]
        .concat(),
    );
    let actions = run(&audio);
    let speculated: Vec<(u64, &Vec<f32>)> = actions
        .iter()
        .filter_map(|a| match a {
            TurnAction::Speculate { id, samples } => Some((*id, samples)),
            _ => None,
        })
        .collect();
    let ended: Vec<(&Vec<f32>, Option<u64>)> = actions
        .iter()
        .filter_map(|a| match a {
            TurnAction::TurnEnded {
                samples, speculation, ..
            } => Some((samples, *speculation)),
            _ => None,
        })
        .collect();
    assert_eq!(ended.len(), 1, "{}", describe(&actions));
    let (samples, speculation) = ended[0];
    let id = speculation.expect("the last speculation is reused");
    let (last_id, last_samples) = *speculated.last().expect("speculated");
    assert_eq!(id, last_id);
    assert_eq!(last_samples, samples, "speculative audio is the turn's audio");
    // Every earlier speculation (pauses inside the sentence) was abandoned.
    let abandoned = actions
        .iter()
        .filter(|a| matches!(a, TurnAction::Abandon { .. }))
        .count();
    assert_eq!(abandoned, speculated.len() - 1, "{}", describe(&actions));
}

#[test]
fn speaking_again_abandons_the_speculation() {
    // A 400 ms pause: long enough to speculate, too short to end the turn.
    let audio = phone_line(
        &[
            silence(300),
            speech("Yes, that works."),
            silence(400),
            speech("But only in the afternoon."),
            silence(1200),
        ]
        .concat(),
    );
    let actions = run(&audio);
    let first_spec = actions
        .iter()
        .find_map(|a| match a {
            TurnAction::Speculate { id, .. } => Some(*id),
            _ => None,
        })
        .expect("the pause started a speculation");
    assert!(
        actions.contains(&TurnAction::Abandon { id: first_spec }),
        "resuming abandons it: {}",
        describe(&actions)
    );
    let ended: Vec<Option<u64>> = actions
        .iter()
        .filter_map(|a| match a {
            TurnAction::TurnEnded { speculation, .. } => Some(*speculation),
            _ => None,
        })
        .collect();
    assert_eq!(ended.len(), 1, "one turn: {}", describe(&actions));
    assert!(
        ended[0].is_some_and(|id| id != first_spec),
        "{}",
        describe(&actions)
    );
}

#[test]
fn silence_and_line_noise_never_speculate() {
    let actions = run(&phone_line(&silence(3000)));
    assert!(actions.is_empty(), "{}", describe(&actions));
}
