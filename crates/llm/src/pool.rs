//! [`Helpers`]: threads that help the calling thread through a job's units when they are free, and
//! that the caller never waits for when they are not.
//!
//! Why not candle's barrier pool for decode steps: a step is about 150 small jobs (tens of
//! microseconds each), and a barrier waits for every worker to take part in every job. When another
//! process holds a core — a build, speech recognition, speech synthesis; this runtime shares its two
//! cores — a worker that is not scheduled stalls the caller for the rest of the kernel's time slice,
//! and decoding fell from 70 to 5 tokens/s. Here the caller claims chunks of units from the same
//! cursor as the helpers and only waits for chunks a helper has actually started, so a busy core
//! slows a job down to one thread's speed and no further.
//!
//! The only unsafe code: the helpers call the job's closure, which lives on the caller's stack,
//! through a pointer (see [`Helpers::run`] for why that is sound), and
//! [`Helpers::for_each_chunk`] hands disjoint pieces of the caller's buffers to the threads.
#![allow(unsafe_code)]

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, TryLockError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long an idle helper spins for the next job before it sleeps: longer than the gaps between
/// the jobs of a decode step and between tokens, so it sleeps only when decoding has stopped.
const SPIN: Duration = Duration::from_micros(500);

/// The cursor packs `[generation: 24 bits][units: 20][next unit: 20]` into one atomic, so that a
/// claim checks in one compare-and-swap that the job is still the one it read and not exhausted.
const FIELD: u64 = 20;
const MASK: u64 = (1 << FIELD) - 1;
/// Most units one round of a job can have.
const MAX_UNITS: usize = MASK as usize;

fn pack(generation: u64, units: usize, next: usize) -> u64 {
    (generation << (2 * FIELD)) | ((units as u64) << FIELD) | next as u64
}

fn unpack(v: u64) -> (u64, usize, usize) {
    (
        v >> (2 * FIELD),
        ((v >> FIELD) & MASK) as usize,
        (v & MASK) as usize,
    )
}

type Job<'a> = &'a (dyn Fn(Range<usize>) + Sync);

#[derive(Debug)]
struct Shared {
    cursor: AtomicU64,
    /// Address of the current job's `Job` (a fat reference on the caller's stack).
    job: AtomicUsize,
    /// Units of the current job finished by helpers.
    helped: AtomicUsize,
    threads: usize,
    panicked: AtomicBool,
    stop: AtomicBool,
}

impl Shared {
    /// Units are handed out in chunks: a few per thread, so one that falls behind is made up for by
    /// the others without a compare-and-swap per unit.
    fn chunk(&self, units: usize) -> usize {
        units.div_ceil(self.threads * 4).max(1)
    }

    /// The next chunk of job `generation`, if it has one left.
    fn claim(&self, generation: u64) -> Option<Range<usize>> {
        let mut v = self.cursor.load(Ordering::Acquire);
        loop {
            let (g, units, next) = unpack(v);
            if g != generation || next >= units {
                return None;
            }
            let end = (next + self.chunk(units)).min(units);
            match self.cursor.compare_exchange_weak(
                v,
                pack(g, units, end),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(next..end),
                Err(now) => v = now,
            }
        }
    }
}

/// The helper threads of one model; they stop when it is dropped.
#[derive(Debug)]
pub struct Helpers {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    /// Held while a job runs: one job at a time has the helpers (see [`Helpers::run`]).
    busy: Mutex<()>,
}

impl Helpers {
    /// One helper per core besides the caller's.
    pub fn new() -> std::io::Result<Self> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::with_threads(cores - 1)
    }

    pub fn with_threads(n: usize) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            cursor: AtomicU64::new(0),
            job: AtomicUsize::new(0),
            helped: AtomicUsize::new(0),
            threads: n + 1,
            panicked: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let threads = (0..n)
            .map(|i| {
                let shared = shared.clone();
                std::thread::Builder::new()
                    .name(format!("llm-helper-{i}"))
                    .spawn(move || help(&shared))
            })
            .collect::<std::io::Result<_>>()?;
        Ok(Self {
            shared,
            threads,
            busy: Mutex::new(()),
        })
    }

    /// Calls `f` on disjoint ranges covering `0..units`, on this thread and on whichever helpers are
    /// free, and returns when all are done. A job started while another runs (from another thread,
    /// or from inside `f`) runs on the calling thread alone.
    pub fn run(&self, units: usize, f: &(dyn Fn(Range<usize>) + Sync)) {
        if units > MAX_UNITS {
            for start in (0..units).step_by(MAX_UNITS) {
                let n = MAX_UNITS.min(units - start);
                self.run(n, &|r: Range<usize>| f(r.start + start..r.end + start));
            }
            return;
        }
        let _busy = match self.busy.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => {
                f(0..units);
                return;
            }
        };
        if self.threads.is_empty() || units <= 1 {
            if units > 0 {
                f(0..units);
            }
            return;
        }
        let s = &*self.shared;
        // `busy` makes this the only thread starting jobs, so the generation is ours to advance.
        let (previous, _, _) = unpack(s.cursor.load(Ordering::Relaxed));
        let generation = (previous + 1) & ((1 << (64 - 2 * FIELD)) - 1);
        let job: Job<'_> = f;
        s.helped.store(0, Ordering::Relaxed);
        s.job.store(&job as *const Job<'_> as usize, Ordering::Relaxed);
        s.cursor.store(pack(generation, units, 0), Ordering::Release);
        for t in &self.threads {
            t.thread().unpark();
        }
        // SOUNDNESS: a helper calls `job` only after claiming a chunk of this generation, and until
        // every claimed chunk is reported done `Finish` does not let this function return, so `f`
        // and `job` outlive every call — also when `f` panics on this thread.
        let mut finish = Finish {
            shared: s,
            generation,
            units,
            mine: 0,
        };
        while let Some(range) = s.claim(generation) {
            finish.mine += range.len();
            f(range);
        }
    }
}

impl Helpers {
    /// Calls `f(o, c, chunk)` for every chunk `c` of `chunk_len` elements (the last one may be shorter)
    /// of every output `o`, spread over this thread and the free helpers: the parallel form of
    /// `outputs[o].chunks_mut(chunk_len).enumerate()` for each `o`.
    pub fn for_each_chunk<T: Send>(
        &self,
        outputs: &mut [&mut [T]],
        chunk_len: usize,
        f: &(dyn Fn(usize, usize, &mut [T]) + Sync),
    ) {
        let chunk_len = chunk_len.max(1);
        let mut units = 0;
        let parts: Vec<(usize, usize, usize)> = outputs
            .iter_mut()
            .map(|o| {
                let first = units;
                units += o.len().div_ceil(chunk_len);
                (first, o.as_mut_ptr() as usize, o.len())
            })
            .collect();
        self.run(units, &|range: Range<usize>| {
            for unit in range {
                let Some(o) = parts.iter().rposition(|&(first, _, _)| first <= unit) else {
                    continue;
                };
                let (first, ptr, len) = parts[o];
                let c = unit - first;
                let start = c * chunk_len;
                let n = chunk_len.min(len - start);
                // SAFETY: the outputs are disjoint and borrowed mutably for this whole call, and
                // `run` hands out every unit exactly once, so this is the only reference to these
                // elements while `f` runs (`T: Send` lets it be on another thread).
                let chunk = unsafe { std::slice::from_raw_parts_mut((ptr as *mut T).add(start), n) };
                f(o, c, chunk);
            }
        });
    }
}

/// Waits, when a job ends (normally or by a panic), for the chunks helpers have claimed.
struct Finish<'a> {
    shared: &'a Shared,
    generation: u64,
    units: usize,
    mine: usize,
}

impl Drop for Finish<'_> {
    fn drop(&mut self) {
        let s = self.shared;
        // Close the job: nothing more can be claimed, and everything claimed so far is known.
        let (_, _, claimed) = unpack(
            s.cursor
                .swap(pack(self.generation, self.units, self.units), Ordering::AcqRel),
        );
        let theirs = claimed - self.mine;
        let mut spins = 0u32;
        while s.helped.load(Ordering::Acquire) < theirs {
            spins += 1;
            if spins < 1 << 12 {
                std::hint::spin_loop();
            } else {
                // The helper holding the last chunk lost its core; let it have ours.
                std::thread::yield_now();
            }
        }
        if s.panicked.swap(false, Ordering::Relaxed) && !std::thread::panicking() {
            panic!("a helper thread panicked in a job");
        }
    }
}

impl Drop for Helpers {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        for t in self.threads.drain(..) {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

fn help(s: &Shared) {
    let mut seen = 0;
    loop {
        let mut idle_since = Instant::now();
        let generation = loop {
            if s.stop.load(Ordering::Acquire) {
                return;
            }
            let (g, _, _) = unpack(s.cursor.load(Ordering::Acquire));
            if g != seen {
                break g;
            }
            if idle_since.elapsed() < SPIN {
                for _ in 0..64 {
                    std::hint::spin_loop();
                }
            } else {
                // `run` unparks after publishing a job, and an unpark before this park makes it
                // return at once, so no job is missed.
                std::thread::park();
                idle_since = Instant::now();
            }
        };
        seen = generation;
        while let Some(range) = s.claim(generation) {
            // SAFETY: see `Helpers::run` — the claim keeps the job and its closure alive until
            // `helped` counts this chunk.
            let job = unsafe { *(s.job.load(Ordering::Acquire) as *const Job<'_>) };
            let n = range.len();
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(range))).is_err() {
                s.panicked.store(true, Ordering::Relaxed);
            }
            s.helped.fetch_add(n, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_runs_exactly_once() {
        let helpers = Helpers::with_threads(3).expect("threads");
        for units in [0, 1, 2, 7, 100, 6144, MAX_UNITS + 5] {
            let counts: Vec<AtomicUsize> = (0..units).map(|_| AtomicUsize::new(0)).collect();
            let rounds = if units > MAX_UNITS { 2 } else { 50 };
            for _ in 0..rounds {
                helpers.run(units, &|r: Range<usize>| {
                    for i in r {
                        counts[i].fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
            assert!(
                counts.iter().all(|c| c.load(Ordering::Relaxed) == rounds),
                "{units} units"
            );
        }
    }

    #[test]
    fn every_chunk_of_every_output_is_visited_once() {
        let helpers = Helpers::with_threads(1).expect("threads");
        let mut a = vec![0usize; 21];
        let mut b = vec![0usize; 8];
        let mut empty: Vec<usize> = Vec::new();
        helpers.for_each_chunk(&mut [&mut a, &mut empty, &mut b], 8, &|o, c, chunk| {
            for (i, x) in chunk.iter_mut().enumerate() {
                *x += 1000 * o + c * 8 + i + 1;
            }
        });
        assert_eq!(a, (1..=21).collect::<Vec<_>>());
        assert_eq!(b, (2001..=2008).collect::<Vec<_>>());
    }

    #[test]
    fn a_panic_in_a_job_reaches_the_caller_and_the_helpers_survive() {
        let helpers = Helpers::with_threads(1).expect("threads");
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            helpers.run(64, &|r: Range<usize>| {
                if r.contains(&63) {
                    panic!("unit 63");
                }
            })
        }));
        assert!(caught.is_err());
        let sum = AtomicUsize::new(0);
        helpers.run(64, &|r: Range<usize>| {
            sum.fetch_add(r.len(), Ordering::Relaxed);
        });
        assert_eq!(sum.load(Ordering::Relaxed), 64);
    }
}
