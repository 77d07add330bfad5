//! Call statistics over a time range.
//!
//! Only plain aggregates run in SQL (COUNT, and SUM cast back to BIGINT: PostgreSQL's SUM of a
//! BIGINT is NUMERIC, which the `Any` driver cannot decode). Naming days and taking percentiles
//! happen here, so both databases give the same answer without their differing date and
//! percentile functions.

use sqlx::Row;

use crate::sql::Conditions;
use crate::time::{MS_PER_DAY, day_name};
use crate::{DayCount, LatencyStats, Millis, NoMatch, OutcomeCount, Stats, Store, StoreError};

/// The most recent no-match events [`Store::no_matches`] reads: the report is about what callers say
/// now, and its cost stays bounded however long the log is kept.
pub const NO_MATCH_SCAN: i64 = 10_000;

/// Words compared without case or punctuation: "Thursday's bad." and "thursday's bad" count together.
fn words_key(heard: &str) -> String {
    heard
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

impl Store {
    /// What callers said that `flow` (every flow when `None`) could not place, in calls that started in
    /// `since..until`: the same words at the same step counted together, most frequent first (then
    /// most recent), at most `limit` groups, from the [`NO_MATCH_SCAN`] most recent no-matches. These
    /// are the phrases to add to a flow's options.
    pub async fn no_matches(
        &self,
        flow: Option<&str>,
        since: Option<Millis>,
        until: Option<Millis>,
        limit: usize,
    ) -> Result<Vec<NoMatch>, StoreError> {
        let mut c = Conditions::default();
        c.eq("kind", "no_match");
        if let Some(flow) = flow {
            c.eq("flow", flow);
        }
        c.range("started_at", since, until);
        let scan = c.param(NO_MATCH_SCAN);
        let sql = format!(
            "SELECT flow, id, started_at + at_ms AS said_at, detail FROM events \
             JOIN calls ON calls.id = events.call_id {} ORDER BY said_at DESC, id DESC LIMIT {scan}",
            c.where_clause()
        );
        // Newest first, so the first row of a group names its latest spelling, time and call.
        let mut groups: Vec<NoMatch> = Vec::new();
        let mut index: std::collections::HashMap<(String, String, String), usize> = Default::default();
        for row in c.bind(sqlx::query(&sql)).fetch_all(&self.pool).await? {
            let detail: Option<String> = row.try_get("detail")?;
            let Some((step, heard)) = detail.as_deref().and_then(|d| d.split_once(": ")) else {
                continue;
            };
            let flow: String = row.try_get("flow")?;
            let key = (flow.clone(), step.to_string(), words_key(heard));
            match index.get(&key) {
                Some(&i) => groups[i].count += 1,
                None => {
                    index.insert(key, groups.len());
                    groups.push(NoMatch {
                        flow,
                        step: step.to_string(),
                        heard: heard.to_string(),
                        count: 1,
                        last_at: row.try_get("said_at")?,
                        call_id: row.try_get("id")?,
                    });
                }
            }
        }
        // Stable: equal counts stay newest first.
        groups.sort_by_key(|g| std::cmp::Reverse(g.count));
        groups.truncate(limit);
        Ok(groups)
    }

    /// Statistics of the calls that started in `since..until` (either end open when `None`).
    ///
    /// An "ended" call is one with an end time (finished, or marked interrupted). Containment is
    /// the share of ended calls the bot handled alone: outcome not `transferred` and no transfer
    /// target. Latency is the voice-to-voice time of the turns that measured it, nearest-rank.
    pub async fn stats(&self, since: Option<Millis>, until: Option<Millis>) -> Result<Stats, StoreError> {
        let mut range = Conditions::default();
        range.range("started_at", since, until);
        let filter = range.where_clause();

        let sql = format!(
            "SELECT started_at / {MS_PER_DAY} AS day, COUNT(*) AS calls FROM calls {filter} \
             GROUP BY 1 ORDER BY 1"
        );
        let mut calls_per_day = Vec::new();
        for row in range.bind(sqlx::query(&sql)).fetch_all(&self.pool).await? {
            let day: i64 = row.try_get("day")?;
            calls_per_day.push(DayCount {
                day: day_name(day).ok_or_else(|| StoreError::corrupt(format!("call start day {day}")))?,
                calls: row.try_get("calls")?,
            });
        }
        let total_calls = calls_per_day.iter().map(|d| d.calls).sum();

        let sql = format!("SELECT outcome, COUNT(*) AS calls FROM calls {filter} GROUP BY outcome");
        let mut outcomes = range
            .bind(sqlx::query(&sql))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| {
                Ok(OutcomeCount {
                    outcome: row.try_get("outcome")?,
                    calls: row.try_get("calls")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        // Most frequent first; ties by name, "no outcome" last (the databases order NULLs
        // differently, so this is done here).
        outcomes.sort_by(|a, b| {
            b.calls
                .cmp(&a.calls)
                .then_with(|| a.outcome.is_none().cmp(&b.outcome.is_none()))
                .then_with(|| a.outcome.cmp(&b.outcome))
        });

        let mut ended = Conditions::default();
        ended.and("ended_at IS NOT NULL");
        ended.range("started_at", since, until);
        let sql = format!(
            "SELECT COUNT(*) AS ended, COUNT(duration_ms) AS timed, \
             CAST(SUM(duration_ms) AS BIGINT) AS total_ms, \
             COUNT(CASE WHEN (outcome IS NULL OR outcome <> 'transferred') \
                   AND transferred_to IS NULL THEN 1 END) AS contained \
             FROM calls {}",
            ended.where_clause()
        );
        let row = ended.bind(sqlx::query(&sql)).fetch_one(&self.pool).await?;
        let ended_calls: i64 = row.try_get("ended")?;
        let timed: i64 = row.try_get("timed")?;
        let total_ms: Option<i64> = row.try_get("total_ms")?;
        let contained: i64 = row.try_get("contained")?;
        let average_handle_time_ms = match (total_ms, timed) {
            (Some(total), n) if n > 0 => Some((total as f64 / n as f64).round() as i64),
            _ => None,
        };
        let containment_rate = (ended_calls > 0).then(|| contained as f64 / ended_calls as f64);

        let mut turns = Conditions::default();
        turns.and("t.voice_to_voice_ms IS NOT NULL");
        turns.range("c.started_at", since, until);
        let sql = format!(
            "SELECT t.voice_to_voice_ms AS ms FROM turns t JOIN calls c ON c.id = t.call_id {} \
             ORDER BY t.voice_to_voice_ms",
            turns.where_clause()
        );
        let latencies = turns
            .bind(sqlx::query(&sql))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| row.try_get::<i64, _>("ms"))
            .collect::<Result<Vec<_>, _>>()?;

        Ok(Stats {
            total_calls,
            calls_per_day,
            outcomes,
            average_handle_time_ms,
            containment_rate,
            latency: LatencyStats {
                turns: latencies.len() as i64,
                p50_ms: percentile(&latencies, 50),
                p95_ms: percentile(&latencies, 95),
                p99_ms: percentile(&latencies, 99),
            },
        })
    }
}

/// Nearest-rank percentile of ascending `sorted`: the smallest value with at least `p` percent of
/// the values at or below it. Always one of the values (no interpolation); `None` when empty.
pub(crate) fn percentile(sorted: &[i64], p: u32) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let p = p.clamp(1, 100) as usize;
    let rank = (p * sorted.len()).div_ceil(100);
    sorted.get(rank.max(1) - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank() {
        let v: Vec<i64> = (1..=20).map(|i| i * 10).collect(); // 10, 20, …, 200
        assert_eq!(percentile(&v, 50), Some(100)); // rank 10
        assert_eq!(percentile(&v, 95), Some(190)); // rank 19
        assert_eq!(percentile(&v, 99), Some(200)); // rank ceil(19.8) = 20
        assert_eq!(percentile(&v, 100), Some(200));
        assert_eq!(percentile(&v, 1), Some(10));
    }

    #[test]
    fn small_samples() {
        assert_eq!(percentile(&[], 50), None);
        assert_eq!(percentile(&[7], 50), Some(7));
        assert_eq!(percentile(&[7], 99), Some(7));
        assert_eq!(percentile(&[1, 2, 3, 4], 50), Some(2)); // rank 2, not the mean 2.5
        assert_eq!(percentile(&[1, 2, 3, 4], 51), Some(3));
        assert_eq!(percentile(&[100, 200, 300], 95), Some(300));
    }
}
