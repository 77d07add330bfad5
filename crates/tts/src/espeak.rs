//! The only unsafe code in the crate: libespeak-ng through the raw `espeakng-sys` bindings.
//!
//! libespeak-ng keeps its whole state in C globals (the loaded voice, the speech parameters, the
//! synthesis callback, its output buffers), so every call into it goes through [`with_library`], which
//! holds one process-wide mutex. The engine calls it from its single synthesis thread; the mutex is
//! what keeps a second engine in the same process (tests start several) from interleaving with it.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_int, c_short, c_void};
use std::sync::Mutex;

use espeakng_sys as sys;

/// Voice settings as applied to the library. The library remembers the last ones applied, so a
/// synthesis only resets them when they differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VoiceSettings {
    pub voice: CString,
    pub rate: u32,
    pub pitch: u32,
    pub word_gap: u32,
}

/// The initialized library: exists only inside [`LIBRARY`].
pub(crate) struct Espeak {
    sample_rate: u32,
    applied: Option<VoiceSettings>,
}

/// `None` until the first use initializes the library. A mutex, not a `OnceLock`, because every call
/// into libespeak-ng (not only initialization) must be exclusive: its state is global.
static LIBRARY: Mutex<Option<Espeak>> = Mutex::new(None);

/// Runs `f` with exclusive use of the library, initializing it on first use.
pub(crate) fn with_library<R>(f: impl FnOnce(&mut Espeak) -> Result<R, String>) -> Result<R, String> {
    // A panic while the lock was held cannot have left the C library half-way through a call (the
    // callback does not panic), only our record of the applied voice stale: forget it and go on.
    let mut guard = LIBRARY.lock().unwrap_or_else(|poisoned| {
        let mut g = poisoned.into_inner();
        if let Some(lib) = g.as_mut() {
            lib.applied = None;
        }
        LIBRARY.clear_poison();
        g
    });
    if guard.is_none() {
        *guard = Some(Espeak::initialize()?);
    }
    match guard.as_mut() {
        Some(lib) => f(lib),
        None => Err("espeak-ng is not initialized".into()),
    }
}

impl Espeak {
    fn initialize() -> Result<Self, String> {
        // SAFETY: called once, under the LIBRARY lock, before any other espeak call. A null path means
        // the packaged data directory. DONT_EXIT makes the library return an error instead of calling
        // exit() when its data is missing. Synchronous mode runs synthesis and the callback on the
        // calling thread, inside `espeak_Synth`.
        let rate = unsafe {
            sys::espeak_Initialize(
                sys::espeak_AUDIO_OUTPUT_AUDIO_OUTPUT_SYNCHRONOUS,
                0,
                std::ptr::null(),
                sys::espeakINITIALIZE_DONT_EXIT as c_int,
            )
        };
        let sample_rate = u32::try_from(rate)
            .ok()
            .filter(|&r| r > 0)
            .ok_or_else(|| format!("espeak_Initialize failed ({rate}): is espeak-ng-data installed?"))?;
        // SAFETY: `collect` matches the callback signature and never unwinds; it stays valid for the
        // life of the process (a plain function).
        unsafe { sys::espeak_SetSynthCallback(Some(collect)) };
        Ok(Espeak {
            sample_rate,
            applied: None,
        })
    }

    /// The rate of everything the library synthesizes (22,050 Hz for espeak-ng's own voices).
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Selects the voice and speech parameters, unless they are already in force.
    pub fn apply(&mut self, settings: &VoiceSettings) -> Result<(), String> {
        if self.applied.as_ref() == Some(settings) {
            return Ok(());
        }
        self.applied = None;
        // SAFETY: the name is a valid NUL-terminated string that outlives the call; the library copies
        // what it needs.
        let found = unsafe { sys::espeak_SetVoiceByName(settings.voice.as_ptr()) };
        if found != sys::espeak_ERROR_EE_OK {
            return Err(format!(
                "espeak-ng has no voice {:?} (see `espeak-ng --voices`)",
                settings.voice
            ));
        }
        // The voice sets its own defaults, so the parameters go after it.
        for (param, value, name) in [
            (sys::espeak_PARAMETER_espeakRATE, settings.rate, "rate"),
            (sys::espeak_PARAMETER_espeakPITCH, settings.pitch, "pitch"),
            (sys::espeak_PARAMETER_espeakWORDGAP, settings.word_gap, "word gap"),
        ] {
            let value = c_int::try_from(value).map_err(|_| format!("{name} {value} is out of range"))?;
            // SAFETY: plain integer parameters; the library range-checks them.
            let status = unsafe { sys::espeak_SetParameter(param, value, 0) };
            if status != sys::espeak_ERROR_EE_OK {
                return Err(format!("espeak-ng refused {name} {value} ({status})"));
            }
        }
        self.applied = Some(settings.clone());
        Ok(())
    }

    /// Synthesizes `text` (UTF-8, plain text: no SSML, no phoneme input) and appends the samples to `out`.
    pub fn synthesize(&mut self, text: &CStr, out: &mut Vec<i16>) -> Result<(), String> {
        let bytes = text.to_bytes_with_nul();
        let out_ptr: *mut Vec<i16> = out;
        // SAFETY: `text` is NUL-terminated and `size` counts its bytes with the NUL. In synchronous mode
        // `espeak_Synth` returns only when the text is spoken, and the library calls `collect` only
        // during it, on this thread, with `user_data` = `out_ptr` in every event list: so the pointer
        // is used while `out` is exclusively borrowed here and alive, and never after.
        let status = unsafe {
            sys::espeak_Synth(
                bytes.as_ptr().cast::<c_void>(),
                bytes.len(),
                0,
                sys::espeak_POSITION_TYPE_POS_CHARACTER,
                0,
                sys::espeakCHARS_UTF8,
                std::ptr::null_mut(),
                out_ptr.cast::<c_void>(),
            )
        };
        if status != sys::espeak_ERROR_EE_OK {
            return Err(format!("espeak_Synth failed ({status})"));
        }
        Ok(())
    }
}

/// The synthesis callback: appends each block of samples to the `Vec<i16>` passed as user data.
/// Returns 0 to continue. Must not unwind into C (it cannot panic: no indexing, no unwrap).
unsafe extern "C" fn collect(wav: *mut c_short, count: c_int, events: *mut sys::espeak_EVENT) -> c_int {
    if wav.is_null() || events.is_null() {
        return 0; // null samples mark the end of the message
    }
    let Ok(count) = usize::try_from(count) else {
        return 0;
    };
    // SAFETY: `events` is non-null and points to the library's event list, whose first entry (at
    // worst the list terminator) carries the user data given to `espeak_Synth`.
    let user_data = unsafe { (*events).user_data };
    if user_data.is_null() || count == 0 {
        return 0;
    }
    // SAFETY: the user data is the `&mut Vec<i16>` that `Espeak::synthesize` passed, alive and not
    // otherwise accessed for the duration of the `espeak_Synth` call during which we are called;
    // `wav` points to `count` samples that stay valid until we return.
    let (out, samples) = unsafe {
        (
            &mut *user_data.cast::<Vec<i16>>(),
            std::slice::from_raw_parts(wav.cast_const(), count),
        )
    };
    out.extend_from_slice(samples);
    0
}
