//! The mel filter bank whisper.cpp reads from the ggml file. Whisper's own `mel_filters.npz` is
//! `librosa.filters.mel(sr=16000, n_fft=400, n_mels=80)`: Slaney's mel scale (linear below 1 kHz,
//! logarithmic above) and Slaney normalization (each triangle scaled to unit area, `2 / bandwidth`).
//! Computed here in f64 like librosa, then rounded to f32 like librosa's default dtype.

const F_SP: f64 = 200.0 / 3.0;
const MIN_LOG_HZ: f64 = 1000.0;
const MIN_LOG_MEL: f64 = MIN_LOG_HZ / F_SP;

fn log_step() -> f64 {
    6.4f64.ln() / 27.0
}

pub fn hz_to_mel(hz: f64) -> f64 {
    if hz >= MIN_LOG_HZ {
        MIN_LOG_MEL + (hz / MIN_LOG_HZ).ln() / log_step()
    } else {
        hz / F_SP
    }
}

pub fn mel_to_hz(mel: f64) -> f64 {
    if mel >= MIN_LOG_MEL {
        MIN_LOG_HZ * (log_step() * (mel - MIN_LOG_MEL)).exp()
    } else {
        F_SP * mel
    }
}

/// `n_mels × (n_fft / 2 + 1)` weights, row-major, for frequencies 0 … sr/2.
pub fn mel_filters(sample_rate: u32, n_fft: usize, n_mels: usize) -> Vec<f32> {
    let sr = f64::from(sample_rate);
    let n_bins = n_fft / 2 + 1;
    let fft_freqs: Vec<f64> = (0..n_bins).map(|j| j as f64 * sr / n_fft as f64).collect();
    // n_mels + 2 points evenly spaced on the mel scale: each filter spans three consecutive points.
    let (lo, hi) = (hz_to_mel(0.0), hz_to_mel(sr / 2.0));
    let n_points = n_mels + 2;
    let mel_f: Vec<f64> = (0..n_points)
        .map(|i| mel_to_hz(lo + (hi - lo) * i as f64 / (n_points - 1) as f64))
        .collect();
    let mut weights = Vec::with_capacity(n_mels * n_bins);
    for i in 0..n_mels {
        let enorm = 2.0 / (mel_f[i + 2] - mel_f[i]);
        for &f in &fft_freqs {
            let lower = (f - mel_f[i]) / (mel_f[i + 1] - mel_f[i]);
            let upper = (mel_f[i + 2] - f) / (mel_f[i + 2] - mel_f[i + 1]);
            weights.push((lower.min(upper).max(0.0) * enorm) as f32);
        }
    }
    weights
}

#[cfg(test)]
mod tests {
    use super::*;

    const BINS: usize = 201;

    fn row(w: &[f32], i: usize) -> &[f32] {
        &w[i * BINS..(i + 1) * BINS]
    }

    fn nonzero(r: &[f32]) -> Vec<usize> {
        r.iter()
            .enumerate()
            .filter(|(_, v)| **v > 0.0)
            .map(|(j, _)| j)
            .collect()
    }

    fn close(a: f32, b: f64) -> bool {
        (f64::from(a) - b).abs() <= 1e-7 * b.abs().max(1e-3)
    }

    #[test]
    fn mel_scale_is_linear_then_logarithmic() {
        assert!((hz_to_mel(1000.0) - 15.0).abs() < 1e-12);
        assert!((hz_to_mel(500.0) - 7.5).abs() < 1e-12);
        assert!((hz_to_mel(6400.0) - 42.0).abs() < 1e-9, "{}", hz_to_mel(6400.0));
        for hz in [0.0, 300.0, 999.0, 1000.0, 4321.0, 8000.0] {
            assert!((mel_to_hz(hz_to_mel(hz)) - hz).abs() < 1e-9);
        }
    }

    /// Reference values: librosa's formula evaluated in f64 (also the first entries of whisper's
    /// `mel_filters.npz`, e.g. `filters[0, 1] = 0.02486259`).
    #[test]
    fn matches_librosa_values() {
        let w = mel_filters(16000, 400, 80);
        assert_eq!(w.len(), 80 * BINS);

        assert_eq!(nonzero(row(&w, 0)), vec![1]);
        assert!(close(row(&w, 0)[1], 0.02486259398417609));

        assert_eq!(nonzero(row(&w, 1)), vec![1, 2]);
        assert!(close(row(&w, 1)[1], 0.00199082188809807));
        assert!(close(row(&w, 1)[2], 0.022871772096078016));

        assert_eq!(nonzero(row(&w, 10)), vec![10, 11]);
        assert!(close(row(&w, 10)[10], 0.019908218880980724));
        assert!(close(row(&w, 10)[11], 0.004954375103195391));

        assert_eq!(nonzero(row(&w, 40)), vec![42, 43, 44]);
        assert!(close(row(&w, 40)[42], 0.005411105098683184));
        assert!(close(row(&w, 40)[43], 0.014735565741439118));
        assert!(close(row(&w, 40)[44], 0.00651818969466092));

        assert_eq!(nonzero(row(&w, 79)), (186..=199).collect::<Vec<_>>());
        assert!(close(row(&w, 79)[186], 0.000366741679784966));
        assert!(close(row(&w, 79)[187], 0.0008330700230168856));
    }

    #[test]
    fn row_sums_match_librosa() {
        let w = mel_filters(16000, 400, 80);
        let sum = |i: usize| row(&w, i).iter().map(|v| f64::from(*v)).sum::<f64>();
        // Reference sums: librosa's formula evaluated in f64.
        assert!((sum(0) - 0.02486259398417609).abs() < 1e-8);
        assert!((sum(40) - 0.026664860534783223).abs() < 1e-8);
        assert!((sum(79) - 0.02492533973885884).abs() < 1e-8);
        let total: f64 = w.iter().map(|v| f64::from(*v)).sum();
        assert!((total - 1.9990241029178575).abs() < 1e-6, "{total}");
        // The Nyquist bin (8 kHz) is the upper edge of the last filter: weight 0.
        assert!(w.iter().skip(BINS - 1).step_by(BINS).all(|v| *v == 0.0));
    }
}
