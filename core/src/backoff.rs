//! Exponential backoff with jitter.

use std::time::Duration;

use rand::Rng;

/// The delay before retry number `attempt` (1-based): `base · 2^(attempt-1)`, capped at `max`,
/// then scaled by a random factor in [0.5, 1.0] so that retries of many messages spread out.
pub fn delay(attempt: i32, base: Duration, max: Duration) -> Duration {
    let exponent = attempt.saturating_sub(1).clamp(0, 30) as u32;
    let capped = base.saturating_mul(1 << exponent).min(max);
    capped.mul_f64(rand::rng().random_range(0.5..=1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_per_attempt_within_jitter_and_respects_the_cap() {
        let base = Duration::from_secs(2);
        let max = Duration::from_secs(60);
        for (attempt, full) in [(1, 2), (2, 4), (3, 8), (5, 32), (6, 60), (40, 60)] {
            let full = Duration::from_secs(full);
            for _ in 0..50 {
                let d = delay(attempt, base, max);
                assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
            }
        }
    }
}
