//! What `switchboard bench report` writes: the markdown report and its PNG charts. Pure functions of
//! the measured [`Report`], so the shape of the report is tested without measuring anything.
//!
//! The charts use plotters' bitmap backend with ab_glyph text rendering, so no system font library is
//! linked; the font itself is read at run time from the usual places (DejaVu Sans on Debian, or
//! `$SWITCHBOARD_CHART_FONT`). Without one, the charts are skipped and the report says so.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::Context;
use plotters::prelude::*;

use super::bench_calls::{CallStages, percentile};
use super::bench_report::{INSTALL_PEERS, Peer, Report};

/// Targets the report checks, from the issue that asked for it.
const STT_RATIO_TARGET: f64 = 0.25;
const DECODE_RATIO_TARGET: f64 = 1.0;
const TTFT_CACHED_TARGET_MS: f64 = 150.0;
const V2V_P50_TARGET_MS: f64 = 600.0;
const V2V_P95_TARGET_MS: f64 = 1000.0;
const CAPACITY_TARGET: usize = 4;
const RSS_TARGET_MIB: f64 = 1024.0;
const RSS_PER_CALL_TARGET_MIB: f64 = 20.0;

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "**missed**" }
}

fn peer_note<T>(peer: &Peer<T>) -> Option<String> {
    match peer {
        Peer::Measured(_) => None,
        Peer::Missing(why) => Some(format!("skipped: {why}")),
        Peer::Failed(why) => Some(format!("failed: {why}")),
    }
}

/// The utterance closest to 3 s, which the speech-to-text target is about.
fn three_second_row(report: &Report) -> Option<&super::bench_report::SttRow> {
    report
        .stt
        .as_ref()?
        .rows
        .iter()
        .min_by(|a, b| (a.seconds - 3.0).abs().total_cmp(&(b.seconds - 3.0).abs()))
}

pub fn markdown(report: &Report, charts: &[anyhow::Result<PathBuf>]) -> String {
    let mut md = String::new();
    let chart = |name: &str| {
        charts
            .iter()
            .flatten()
            .find(|p| p.file_name().is_some_and(|f| f == name))
            .map(|_| format!("\n![{name}]({name})\n"))
            .unwrap_or_default()
    };
    let _ = writeln!(md, "# switchboard against its peers\n");
    if let Some(m) = &report.machine {
        let _ = writeln!(md, "| | |\n|---|---|");
        let _ = writeln!(md, "| date | {} |", m.date);
        let _ = writeln!(md, "| machine | {} cores (`nproc`), {} |", m.cores, m.cpu);
        let _ = writeln!(md, "| commit | {} |", m.commit);
        let load = |l: Option<f64>| l.map_or("?".into(), |l| format!("{l:.2}"));
        let _ = writeln!(
            md,
            "| load average (1 min), start → end | {} → {} |",
            load(m.load.0),
            load(m.load.1)
        );
        let _ = writeln!(md, "| command | `{}` |\n", m.command);
    }
    let _ = writeln!(
        md,
        "Peers are built from source by `{INSTALL_PEERS}` (Release, `-DGGML_NATIVE=ON`) and run on the \
same model files, audio, prompt sizes and thread count as ours. Times are medians; absolute numbers move \
by tens of percent between runs on shared machines, ratios measured in one run less so.\n"
    );
    for p in &report.peers {
        let _ = writeln!(md, "- {p}");
    }
    if !report.peers.is_empty() {
        md.push('\n');
    }

    targets(report, &mut md);

    if let Some(s) = &report.stt {
        let _ = writeln!(
            md,
            "## Speech-to-text: end of utterance → final transcript\n\n{}, {} threads, median of {} runs; \
utterances spoken by flite through 8 kHz mu-law and back to 16 kHz. Ours: the time from handing the \
utterance to the engine to its transcript, model loaded and warmed up once; \"adaptive\" sizes whisper's \
encoder window to the utterance, \"full\" is whisper's 30 s window. whisper.cpp: `whisper-cli -t {} -l en \
-nt -bs 1 -bo 1 -sns` (greedy, no timestamps, like ours), a fresh process per run; its time is the sum of \
its own stage timings (mel + sample + encode + decode + batchd + prompt from `whisper_print_timings`), \
which leaves out model load, state allocation and reading the WAV (its first-use allocations stay in; ours \
are made by a warm-up at load).\n",
            s.model, s.threads, s.runs, s.threads
        );
        let _ = writeln!(
            md,
            "| utterance | ours, adaptive window | ours, full window | whisper.cpp | ours / whisper.cpp | whisper.cpp load (excluded) |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|");
        for r in &s.rows {
            let (peer, ratio, load) = match r.peer.measured() {
                Some(p) => (
                    format!("{:.0} ms", p.compute_ms),
                    format!("{:.2}", r.ours_ms / p.compute_ms),
                    format!("{:.0} ms", p.load_ms),
                ),
                None => ("—".into(), "—".into(), "—".into()),
            };
            let _ = writeln!(
                md,
                "| {:.1} s | {:.0} ms (window {}) | {:.0} ms | {peer} | {ratio} | {load} |",
                r.seconds, r.ours_ms, r.ours_window, r.ours_full_ms
            );
        }
        if let Some(note) = s.rows.first().and_then(|r| peer_note(&r.peer)) {
            let _ = writeln!(md, "\nwhisper.cpp {note}");
        }
        let _ = writeln!(md, "\nTranscripts (last run):\n");
        for r in &s.rows {
            let peer = r.peer.measured().map_or("—", |p| p.text.as_str());
            let _ = writeln!(
                md,
                "- {:.1} s — ours: \"{}\"; whisper.cpp: \"{}\"",
                r.seconds, r.ours_text, peer
            );
        }
        md.push_str(&chart("stt.png"));
        md.push('\n');
    }

    if let Some(l) = &report.llm {
        let o = &l.ours;
        let _ = writeln!(
            md,
            "## Language model\n\n`{}`, {} threads, median of {} runs. The prompt is a receptionist's \
system prompt and a 20-word caller turn in the model's chat template: {} tokens, of which {} (the system \
prompt) are cached in the \"cached\" case. Ours: candle, through the engine the server uses (tokenizing and \
sampling included). llama.cpp: `llama-bench -t {} -r {} -o json` with `-p {}` (prompt from an empty cache), \
`-p {} -d {}` (the caller's part on top of {} tokens already in the cache; the depth is filled before the \
clock starts) and `-n {} -d {}` (decoding after the prompt); its time to first token is the prompt's \
processing time.\n",
            l.model,
            l.threads,
            l.runs,
            o.prompt_tokens,
            o.cached_tokens,
            l.threads,
            l.runs,
            o.prompt_tokens,
            o.prompt_tokens - o.cached_tokens.min(o.prompt_tokens.saturating_sub(1)),
            o.cached_tokens.min(o.prompt_tokens.saturating_sub(1)),
            o.cached_tokens.min(o.prompt_tokens.saturating_sub(1)),
            l.decode_tokens,
            o.prompt_tokens,
        );
        let _ = writeln!(md, "| | ours | llama.cpp | ours / llama.cpp |");
        let _ = writeln!(md, "|---|---|---|---|");
        let peer = l.peer.measured();
        let row = |md: &mut String, name: &str, ours: f64, theirs: Option<f64>, unit: &str, digits: usize| {
            let (t, r) = match theirs {
                Some(t) => (format!("{t:.digits$} {unit}"), format!("{:.2}", ours / t)),
                None => ("—".into(), "—".into()),
            };
            let _ = writeln!(md, "| {name} | {ours:.digits$} {unit} | {t} | {r} |");
        };
        row(
            &mut md,
            "prefill",
            o.prefill_tok_s,
            peer.map(|p| p.prefill_tok_s),
            "tok/s",
            0,
        );
        row(
            &mut md,
            "decode",
            o.decode_tok_s,
            peer.map(|p| p.decode_tok_s),
            "tok/s",
            1,
        );
        row(
            &mut md,
            "time to first token, uncached",
            ms(o.ttft_uncached),
            peer.map(|p| ms(p.ttft_uncached)),
            "ms",
            0,
        );
        row(
            &mut md,
            "time to first token, system prompt cached",
            ms(o.ttft_cached),
            peer.map(|p| ms(p.ttft_cached)),
            "ms",
            0,
        );
        match &l.peer {
            Peer::Measured(p) => {
                if !p.build.is_empty() {
                    let _ = writeln!(md, "\nllama.cpp {}.", p.build);
                }
                let _ = writeln!(md, "\nOur model load: {:.2} s.", o.load.as_secs_f64());
            }
            other => {
                if let Some(note) = peer_note(other) {
                    let _ = writeln!(md, "\nllama.cpp {note}");
                }
            }
        }
        md.push_str(&chart("llm.png"));
        md.push('\n');
    }

    if let Some(c) = &report.calls {
        let _ = writeln!(
            md,
            "## Voice-to-voice\n\n{} simulated calls one at a time through the real server on loopback (signed \
webhook, media stream, real-time caller audio), default models; each caller asks one question (Saturday \
hours, the address, delivery, parking) that the inbound flow answers from its facts, so the language model is \
not on these turns' path. {} answered turns, {} failed calls.\n",
            c.calls,
            c.stages.voice_to_voice.len(),
            c.stages.failed
        );
        stage_table(&mut md, &c.stages);
    }

    if let Some(c) = &report.model_calls {
        let _ = writeln!(
            md,
            "### With the language model on the path\n\nThe same, {} calls, but each caller asks something no \
keyword of the flow catches (a dog, coffee, vegan cookies, …; up to 12 different questions, so that \
12 calls repeat none), so the language model scores the menu's labels (with a calibration prior it \
remembers between calls) and, when it picks `other`, streams a free answer from the facts; \"flow + speech \
synthesis\" holds that model time. {} answered \
turns, {} failed calls.\n",
            c.calls,
            c.stages.voice_to_voice.len(),
            c.stages.failed
        );
        stage_table(&mut md, &c.stages);
    }

    if let Some(cap) = &report.capacity {
        let _ = writeln!(
            md,
            "## Capacity\n\nSimulated calls at rising concurrency (twice as many calls as the level, at least 4), \
until voice-to-voice p95 exceeds {:.0} ms or a call fails. CPU and memory are this process's (`/proc/self`): \
the server runs in it, and so do the simulated callers (their WebSocket client and real-time pacing, a small \
part). Memory per call is the level's peak above the idle server, divided by the calls in progress. Idle, \
with the default models loaded: {:.0} MiB.\n",
            cap.p95_limit_ms, cap.idle_rss_mib
        );
        let _ = writeln!(
            md,
            "| calls at once | calls | answered turns | failed | voice-to-voice p50 | p95 | CPU per call | CPU busy | peak RSS | RSS per call |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|");
        for l in &cap.levels {
            let busy = l.usage.cpu.as_secs_f64()
                / (l.usage.wall.as_secs_f64() * report.machine.as_ref().map_or(1, |m| m.cores).max(1) as f64);
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {:.0} ms | {:.0} ms | {:.2} s | {:.0} % | {:.0} MiB | {:.1} MiB |",
                l.concurrency,
                l.calls,
                l.stages.voice_to_voice.len(),
                l.stages.failed,
                l.p50(),
                l.p95(),
                l.cpu_s_per_call(),
                busy * 100.0,
                l.usage.peak_rss_mib,
                l.rss_mib_per_call(),
            );
        }
        let _ = writeln!(
            md,
            "\nMost calls at once within p95 ≤ {:.0} ms: **{}**.",
            cap.p95_limit_ms,
            cap.max_within().map_or("none".to_string(), |n| n.to_string())
        );
        md.push_str(&chart("capacity.png"));
        md.push('\n');
    }

    if let Some(w) = &report.webhook {
        let _ = writeln!(
            md,
            "## Webhook throughput\n\n`POST /twilio/voice` with its `X-Twilio-Signature` checked on every request \
(one signed request sent again and again: the signature covers only the URL and the form), answered with \
TwiML `<Connect><Stream>`; the load generator runs on the same machine.\n"
        );
        let _ = writeln!(
            md,
            "| load generator | connections | duration | requests/s | p50 | p99 | errors |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|");
        let opt = |v: Option<f64>| v.map_or("—".into(), |x| format!("{x:.2} ms"));
        let _ = writeln!(
            md,
            "| {} | {} | {} s | {:.0} | {} | {} | {} |\n",
            w.tool,
            w.connections,
            w.seconds,
            w.requests_per_s,
            opt(w.p50_ms),
            opt(w.p99_ms),
            w.errors
        );
    }

    let chart_errors: Vec<String> = charts
        .iter()
        .filter_map(|c| c.as_ref().err().map(|e| format!("{e:#}")))
        .collect();
    if !report.skipped.is_empty() || !chart_errors.is_empty() {
        let _ = writeln!(md, "## Not measured\n");
        for s in report.skipped.iter().chain(&chart_errors) {
            let _ = writeln!(md, "- {s}");
        }
    }
    md
}

fn targets(report: &Report, md: &mut String) {
    let mut rows: Vec<(String, String, String)> = Vec::new();
    if let Some(r) = three_second_row(report) {
        rows.push(match r.peer.measured() {
            Some(p) => {
                let ratio = r.ours_ms / p.compute_ms;
                (
                    format!(
                        "speech-to-text ≤ {STT_RATIO_TARGET} × whisper.cpp ({:.1} s utterance)",
                        r.seconds
                    ),
                    format!("{ratio:.2} × ({:.0} / {:.0} ms)", r.ours_ms, p.compute_ms),
                    verdict(ratio <= STT_RATIO_TARGET).into(),
                )
            }
            None => (
                format!("speech-to-text ≤ {STT_RATIO_TARGET} × whisper.cpp"),
                "whisper.cpp not measured".into(),
                "—".into(),
            ),
        });
    }
    if let Some(l) = &report.llm {
        rows.push(match l.peer.measured() {
            Some(p) => {
                let ratio = l.ours.decode_tok_s / p.decode_tok_s;
                (
                    format!("decode ≥ {DECODE_RATIO_TARGET} × llama.cpp"),
                    format!(
                        "{ratio:.2} × ({:.1} / {:.1} tok/s)",
                        l.ours.decode_tok_s, p.decode_tok_s
                    ),
                    verdict(ratio >= DECODE_RATIO_TARGET).into(),
                )
            }
            None => (
                format!("decode ≥ {DECODE_RATIO_TARGET} × llama.cpp"),
                "llama.cpp not measured".into(),
                "—".into(),
            ),
        });
        let t = ms(l.ours.ttft_cached);
        rows.push((
            format!("time to first token, system prompt cached ≤ {TTFT_CACHED_TARGET_MS:.0} ms"),
            format!("{t:.0} ms"),
            verdict(t <= TTFT_CACHED_TARGET_MS).into(),
        ));
    }
    if let Some(c) = &report.calls {
        let (p50, p95) = (c.p50(), c.p95());
        rows.push((
            format!("voice-to-voice p50 ≤ {V2V_P50_TARGET_MS:.0} ms"),
            format!("{p50:.0} ms"),
            verdict(p50 <= V2V_P50_TARGET_MS).into(),
        ));
        rows.push((
            format!("voice-to-voice p95 ≤ {V2V_P95_TARGET_MS:.0} ms"),
            format!("{p95:.0} ms"),
            verdict(p95 <= V2V_P95_TARGET_MS).into(),
        ));
    }
    if let Some(cap) = &report.capacity {
        let n = cap.max_within();
        let tried = cap.levels.last().map_or(0, |l| l.concurrency);
        rows.push((
            format!(
                "≥ {CAPACITY_TARGET} calls at once within p95 ≤ {:.0} ms",
                cap.p95_limit_ms
            ),
            match n {
                Some(n) if n == tried => format!("{n} (the most tried)"),
                Some(n) => n.to_string(),
                None => "none".into(),
            },
            verdict(n.is_some_and(|n| n >= CAPACITY_TARGET)).into(),
        ));
        rows.push((
            format!("resident memory ≤ {RSS_TARGET_MIB:.0} MiB with the default models"),
            format!(
                "{:.0} MiB idle, {:.0} MiB at the busiest level",
                cap.idle_rss_mib,
                cap.levels
                    .iter()
                    .map(|l| l.usage.peak_rss_mib)
                    .fold(0.0, f64::max)
            ),
            verdict(
                cap.levels
                    .iter()
                    .map(|l| l.usage.peak_rss_mib)
                    .fold(cap.idle_rss_mib, f64::max)
                    <= RSS_TARGET_MIB,
            )
            .into(),
        ));
        let per_call = cap
            .levels
            .iter()
            .filter(|l| l.concurrency > 1)
            .map(|l| l.rss_mib_per_call())
            .fold(f64::NAN, f64::max);
        if per_call.is_finite() {
            rows.push((
                format!("≤ {RSS_PER_CALL_TARGET_MIB:.0} MiB per call"),
                format!("{per_call:.1} MiB (worst level)"),
                verdict(per_call <= RSS_PER_CALL_TARGET_MIB).into(),
            ));
        }
    }
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(md, "## Targets\n\n| target | measured | |\n|---|---|---|");
    for (t, m, v) in rows {
        let _ = writeln!(md, "| {t} | {m} | {v} |");
    }
    md.push('\n');
}

// ---------------------------------------------------------------------------------------------
// Charts

const OURS: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const OURS_LIGHT: RGBColor = RGBColor(0x9e, 0xc5, 0xe8);
const PEER: RGBColor = RGBColor(0xe0, 0x6c, 0x1a);
const LIMIT: RGBColor = RGBColor(0xc0, 0x30, 0x30);

/// Registers a TrueType font as plotters' "sans-serif", once per process.
fn font() -> anyhow::Result<()> {
    static FONT: OnceLock<Result<(), String>> = OnceLock::new();
    FONT.get_or_init(|| {
        let candidates: Vec<PathBuf> = std::env::var_os("SWITCHBOARD_CHART_FONT")
            .map(PathBuf::from)
            .into_iter()
            .chain(
                [
                    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
                    "/usr/share/fonts/TTF/DejaVuSans.ttf",
                    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
                    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
                ]
                .map(PathBuf::from),
            )
            .collect();
        let path = candidates.iter().find(|p| p.is_file()).ok_or_else(|| {
            "no TrueType font found for the charts (install fonts-dejavu-core, or set SWITCHBOARD_CHART_FONT)"
                .to_string()
        })?;
        let bytes = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        // plotters keeps fonts for the life of the process; this runs once.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| format!("{} is not a font plotters can read", path.display()))
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

/// One chart per measured section; each is either written or the reason it was not.
pub fn charts(report: &Report, out: &Path) -> Vec<anyhow::Result<PathBuf>> {
    let mut done = Vec::new();
    if let Some(s) = &report.stt {
        let path = out.join("stt.png");
        let groups: Vec<String> = s
            .rows
            .iter()
            .map(|r| format!("{:.1} s utterance", r.seconds))
            .collect();
        let series: Vec<Series<'_>> = vec![
            (
                "ours, adaptive window",
                OURS,
                s.rows.iter().map(|r| Some(r.ours_ms)).collect(),
            ),
            (
                "ours, full window",
                OURS_LIGHT,
                s.rows.iter().map(|r| Some(r.ours_full_ms)).collect(),
            ),
            (
                "whisper.cpp (whisper-cli)",
                PEER,
                s.rows
                    .iter()
                    .map(|r| r.peer.measured().map(|p| p.compute_ms))
                    .collect(),
            ),
        ];
        done.push(
            font()
                .and_then(|()| {
                    let root = BitMapBackend::new(&path, (900, 480)).into_drawing_area();
                    root.fill(&WHITE)?;
                    bars(
                        &root,
                        &format!("Speech-to-text, end of utterance → transcript ({})", s.model),
                        "ms (lower is better)",
                        &groups,
                        &series,
                    )?;
                    root.present()?;
                    Ok(())
                })
                .map(|()| path)
                .context("stt.png"),
        );
    }
    if let Some(l) = &report.llm {
        let path = out.join("llm.png");
        let peer = l.peer.measured();
        done.push(
            font()
                .and_then(|()| {
                    let root = BitMapBackend::new(&path, (1000, 480)).into_drawing_area();
                    root.fill(&WHITE)?;
                    let (left, right) = root.split_horizontally(500);
                    bars(
                        &left,
                        &format!("{}: speed", l.model),
                        "tokens/s (higher is better)",
                        &["prefill".to_string(), "decode".to_string()],
                        &[
                            (
                                "ours (candle)",
                                OURS,
                                vec![Some(l.ours.prefill_tok_s), Some(l.ours.decode_tok_s)],
                            ),
                            (
                                "llama.cpp",
                                PEER,
                                vec![peer.map(|p| p.prefill_tok_s), peer.map(|p| p.decode_tok_s)],
                            ),
                        ],
                    )?;
                    bars(
                        &right,
                        "Time to first token",
                        "ms (lower is better)",
                        &["uncached".to_string(), "system prompt cached".to_string()],
                        &[
                            (
                                "ours (candle)",
                                OURS,
                                vec![Some(ms(l.ours.ttft_uncached)), Some(ms(l.ours.ttft_cached))],
                            ),
                            (
                                "llama.cpp",
                                PEER,
                                vec![peer.map(|p| ms(p.ttft_uncached)), peer.map(|p| ms(p.ttft_cached))],
                            ),
                        ],
                    )?;
                    root.present()?;
                    Ok(())
                })
                .map(|()| path)
                .context("llm.png"),
        );
    }
    if let Some(cap) = report.capacity.as_ref().filter(|c| !c.levels.is_empty()) {
        let path = out.join("capacity.png");
        done.push(
            font()
                .and_then(|()| capacity_chart(&path, cap))
                .map(|()| path)
                .context("capacity.png"),
        );
    }
    done
}

type Series<'a> = (&'a str, RGBColor, Vec<Option<f64>>);

/// Grouped bars: one group per label, one bar per series, the value written on each bar.
fn bars<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    y_desc: &str,
    groups: &[String],
    series: &[Series<'_>],
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let top = series
        .iter()
        .flat_map(|(_, _, v)| v.iter().flatten())
        .fold(0.0f64, |a, &b| a.max(b))
        .max(1.0);
    let n = groups.len() as f64;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(64)
        // Headroom above the tallest bar for the legend and the value labels.
        .build_cartesian_2d(-0.5f64..n - 0.5, 0f64..top * 1.45)?;
    let label = |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 1e-6 && i >= 0.0 {
            groups.get(i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(groups.len() + 1)
        .x_label_formatter(&label)
        .y_label_formatter(&|y| {
            if top >= 20.0 {
                format!("{y:.0}")
            } else {
                format!("{y:.1}")
            }
        })
        .y_desc(y_desc)
        .label_style(("sans-serif", 14))
        .draw()?;
    let width = 0.8 / series.len() as f64;
    for (j, (name, color, values)) in series.iter().enumerate() {
        let color = *color;
        let bars = values.iter().enumerate().filter_map(|(i, v)| {
            let x0 = i as f64 - 0.4 + j as f64 * width;
            v.map(|v| Rectangle::new([(x0, 0.0), (x0 + width * 0.92, v)], color.filled()))
        });
        chart
            .draw_series(bars)?
            .label(*name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 12, y + 6)], color.filled()));
        let texts = values.iter().enumerate().filter_map(|(i, v)| {
            let x = i as f64 - 0.4 + (j as f64 + 0.15) * width;
            v.map(|v| {
                let text = if v >= 100.0 {
                    format!("{v:.0}")
                } else {
                    format!("{v:.1}")
                };
                Text::new(
                    text,
                    (x, v + top * 0.02),
                    ("sans-serif", 13).into_font().color(&BLACK),
                )
            })
        });
        chart.draw_series(texts)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 14))
        .draw()?;
    Ok(())
}

fn capacity_chart(path: &Path, cap: &super::bench_report::CapacitySection) -> anyhow::Result<()> {
    let root = BitMapBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let max_x = cap.levels.iter().map(|l| l.concurrency).max().unwrap_or(1) as f64;
    let max_y = cap
        .levels
        .iter()
        .map(|l| l.p95())
        .filter(|v| v.is_finite())
        .fold(cap.p95_limit_ms, f64::max)
        * 1.15;
    let mut chart = ChartBuilder::on(&root)
        .caption("Voice-to-voice latency vs calls at once", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(0.5f64..max_x + 0.5, 0f64..max_y)?;
    chart
        .configure_mesh()
        .x_desc("calls at once")
        .y_desc("ms")
        .y_label_formatter(&|y| format!("{y:.0}"))
        .x_labels(cap.levels.len().max(2) * 2)
        .x_label_formatter(&|x| {
            if (x - x.round()).abs() < 1e-6 {
                format!("{x:.0}")
            } else {
                String::new()
            }
        })
        .label_style(("sans-serif", 14))
        .draw()?;
    let points = |f: fn(&super::bench_report::Level) -> f64| -> Vec<(f64, f64)> {
        cap.levels
            .iter()
            .map(|l| (l.concurrency as f64, f(l)))
            .filter(|(_, y)| y.is_finite())
            .collect()
    };
    for (name, color, pts) in [
        ("p50", OURS_LIGHT, points(super::bench_report::Level::p50)),
        ("p95", OURS, points(super::bench_report::Level::p95)),
    ] {
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(3)))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(3)));
        chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 4, color.filled())))?;
    }
    chart
        .draw_series(LineSeries::new(
            vec![(0.5, cap.p95_limit_ms), (max_x + 0.5, cap.p95_limit_ms)],
            LIMIT.stroke_width(2),
        ))?
        .label(format!("p95 limit {:.0} ms", cap.p95_limit_ms))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], LIMIT.stroke_width(2)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 14))
        .draw()?;
    root.present()?;
    Ok(())
}

/// The per-stage p50/p95 table of a set of calls.
fn stage_table(md: &mut String, stages: &CallStages) {
    let _ = writeln!(md, "| stage | p50 | p95 |\n|---|---|---|");
    for (name, s) in CallStages::NAMES.iter().zip(stages.stages()) {
        let _ = writeln!(
            md,
            "| {name} | {:.0} ms | {:.0} ms |",
            percentile(s, 0.5),
            percentile(s, 0.95)
        );
    }
    md.push('\n');
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::bench_llm::LlmNumbers;
    use super::super::bench_report::{LlamaNumbers, LlmSection, Machine, SttRow, SttSection, WhisperCliRun};
    use super::*;

    fn llm(peer: Peer<LlamaNumbers>) -> LlmSection {
        LlmSection {
            model: "SmolLM2-135M-Instruct.Q4_1.gguf".into(),
            threads: 2,
            runs: 3,
            decode_tokens: 64,
            ours: LlmNumbers {
                name: "SmolLM2".into(),
                load: Duration::from_millis(900),
                prefill_tok_s: 229.0,
                decode_tok_s: 44.9,
                ttft_uncached: Duration::from_millis(589),
                ttft_cached: Duration::from_millis(131),
                prompt_tokens: 135,
                cached_tokens: 106,
                peak_rss_mib: None,
            },
            peer,
        }
    }

    /// Every table row has as many cells as its header.
    fn assert_tables_well_formed(md: &str) {
        let mut columns = None;
        for line in md.lines() {
            if !line.starts_with('|') {
                columns = None;
                continue;
            }
            let cells = line.matches('|').count();
            match columns {
                None => columns = Some(cells),
                Some(c) => assert_eq!(cells, c, "row with a different cell count: {line}\n{md}"),
            }
        }
    }

    #[test]
    fn a_missing_peer_is_reported_as_skipped_and_the_rest_still_renders() {
        let report = Report {
            machine: Some(Machine {
                date: "2026-11-24 10:00 UTC".into(),
                cores: 2,
                cpu: "AMD EPYC".into(),
                commit: "abc".into(),
                command: "switchboard bench report".into(),
                load: (Some(0.1), None),
            }),
            llm: Some(llm(Peer::Missing(format!(
                "llama-bench is not installed: run `{INSTALL_PEERS}`"
            )))),
            ..Report::default()
        };
        let md = markdown(&report, &[]);
        assert_tables_well_formed(&md);
        assert!(md.contains("| prefill | 229 tok/s | — | — |"), "{md}");
        assert!(md.contains(INSTALL_PEERS), "{md}");
        assert!(
            md.contains("| decode ≥ 1 × llama.cpp | llama.cpp not measured | — |"),
            "{md}"
        );
        // A target measured on our side alone is still judged.
        assert!(
            md.contains("| time to first token, system prompt cached ≤ 150 ms | 131 ms | met |"),
            "{md}"
        );
    }

    #[test]
    fn ratios_and_verdicts_come_from_the_numbers() {
        let peer = LlamaNumbers {
            prefill_tok_s: 458.0,
            decode_tok_s: 89.8,
            ttft_uncached: Duration::from_millis(295),
            ttft_cached: Duration::from_millis(60),
            build: "build 1 (x)".into(),
        };
        let stt = SttSection {
            model: "whisper-tiny.en".into(),
            threads: 2,
            runs: 1,
            rows: [(1.1, 500.0), (3.4, 300.0), (7.3, 600.0)]
                .into_iter()
                .map(|(seconds, ours_ms)| SttRow {
                    seconds,
                    ours_ms,
                    ours_window: 512,
                    ours_full_ms: 1400.0,
                    ours_text: "x".into(),
                    peer: Peer::Measured(WhisperCliRun {
                        compute_ms: 1500.0,
                        load_ms: 100.0,
                        text: "x".into(),
                    }),
                })
                .collect(),
        };
        let report = Report {
            stt: Some(stt),
            llm: Some(llm(Peer::Measured(peer))),
            ..Report::default()
        };
        let md = markdown(&report, &[]);
        assert_tables_well_formed(&md);
        assert!(md.contains("| decode | 44.9 tok/s | 89.8 tok/s | 0.50 |"), "{md}");
        assert!(md.contains("**missed**"), "{md}");
        // 300 / 1500 on the 3.4 s utterance, the one nearest 3 s.
        assert!(
            md.contains(
                "| speech-to-text ≤ 0.25 × whisper.cpp (3.4 s utterance) | 0.20 × (300 / 1500 ms) | met |"
            ),
            "{md}"
        );
    }
}
