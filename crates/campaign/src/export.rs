//! A campaign's results as CSV: one row per contact, with every attempt.

use std::io::Write;

use switchboard_store::{ContactResult, format_time};

/// Writes `name, phone, time_zone, consent, state, final_outcome, attempts, first_attempt_at,
/// last_attempt_at, history, slots`: `history` lists each attempt as `number:status@time`
/// (`;`-separated, times UTC); `slots` is the JSON of the last attempt that filled any.
pub fn write_results_csv(results: &[ContactResult], out: impl Write) -> Result<(), csv::Error> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record([
        "name",
        "phone",
        "time_zone",
        "consent",
        "state",
        "final_outcome",
        "attempts",
        "first_attempt_at",
        "last_attempt_at",
        "history",
        "slots",
    ])?;
    for r in results {
        let c = &r.contact;
        let history = r
            .attempts
            .iter()
            .map(|a| {
                let at = a.dialed_at.unwrap_or(a.claimed_at);
                match &a.outcome {
                    Some(o) => format!("{}:{}/{}@{}", a.number, a.status, o, format_time(at)),
                    None => format!("{}:{}@{}", a.number, a.status, format_time(at)),
                }
            })
            .collect::<Vec<_>>()
            .join("; ");
        let slots = r
            .attempts
            .iter()
            .rev()
            .find(|a| !a.slots.is_empty())
            .map(|a| serde_json::Value::Object(a.slots.clone()).to_string())
            .unwrap_or_default();
        let when = |a: Option<&switchboard_store::Attempt>| {
            a.map(|a| format_time(a.dialed_at.unwrap_or(a.claimed_at)))
                .unwrap_or_default()
        };
        w.write_record([
            c.name.as_str(),
            c.phone.as_str(),
            c.time_zone.as_deref().unwrap_or(""),
            if c.consent { "yes" } else { "no" },
            c.state.as_str(),
            c.final_outcome.as_deref().unwrap_or(""),
            &r.attempts.len().to_string(),
            &when(r.attempts.first()),
            &when(r.attempts.last()),
            &history,
            &slots,
        ])?;
    }
    w.flush()?;
    Ok(())
}
