//! Retry and rate policies: exponential backoff with full jitter, `Retry-After`, a pause shared
//! by every download of a source, and token buckets for requests and bytes per second.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use rand::{RngExt, SeedableRng};

/// Exponential backoff with full jitter: attempt `n` (1-based) waits a random time in
/// `[0, min(max, initial * 2^(n-1))]`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The cap of the wait after failed attempt `attempt` (1-based).
    pub fn cap(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.saturating_sub(1).min(30)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The wait after failed attempt `attempt`, drawn from `rng`.
    pub fn delay(&self, attempt: u32, rng: &mut impl rand::Rng) -> Duration {
        let cap = self.cap(attempt).as_millis() as u64;
        Duration::from_millis(if cap == 0 { 0 } else { rng.random_range(0..=cap) })
    }
}

/// A seeded generator for one download's jitter.
pub fn jitter_rng(seed: &str) -> rand::rngs::StdRng {
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ nanos;
    for b in seed.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    rand::rngs::StdRng::seed_from_u64(h)
}

/// A `Retry-After` value: seconds, or an HTTP date (relative to `now`). Garbage is `None`; a
/// date in the past is zero.
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A pause every download of a source honours: a server that answered 429 or 503 with
/// `Retry-After` is not asked again, for any object, before then.
#[derive(Debug, Default)]
pub struct Gate {
    not_before: Mutex<Option<Instant>>,
}

impl Gate {
    /// Pause every request until `d` from now (a later pause already set is kept).
    pub fn pause(&self, d: Duration) {
        let until = Instant::now() + d;
        let mut g = self.not_before.lock().expect("gate lock");
        if g.is_none_or(|t| t < until) {
            *g = Some(until);
        }
    }

    /// Wait until no pause is in effect; returns how long it waited.
    pub async fn wait(&self) -> Duration {
        let started = Instant::now();
        loop {
            let until = *self.not_before.lock().expect("gate lock");
            match until {
                Some(t) if t > Instant::now() => tokio::time::sleep_until(t.into()).await,
                _ => return started.elapsed(),
            }
        }
    }
}

/// A token bucket: `rate` tokens a second, bursts of up to one second's worth. Takers that find
/// too few tokens go into debt and sleep it off, so that takers are served in turn and large
/// takes (a chunk of bytes) are allowed. A rate of 0 is unlimited.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    pub fn new(rate: f64) -> Self {
        TokenBucket { rate, state: Mutex::new((rate, Instant::now())) }
    }

    /// How long a take of `n` tokens must wait, taking them now.
    pub fn reserve(&self, n: f64) -> Duration {
        if self.rate <= 0.0 {
            return Duration::ZERO;
        }
        let mut g = self.state.lock().expect("bucket lock");
        let now = Instant::now();
        let (tokens, last) = *g;
        let tokens = (tokens + now.duration_since(last).as_secs_f64() * self.rate).min(self.rate) - n;
        *g = (tokens, now);
        if tokens >= 0.0 { Duration::ZERO } else { Duration::from_secs_f64(-tokens / self.rate) }
    }

    /// Take `n` tokens, waiting as long as the rate requires.
    pub async fn take(&self, n: f64) {
        let wait = self.reserve(n);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_with_full_jitter() {
        let b = Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(1) };
        assert_eq!(b.cap(1), Duration::from_millis(100));
        assert_eq!(b.cap(2), Duration::from_millis(200));
        assert_eq!(b.cap(4), Duration::from_millis(800));
        assert_eq!(b.cap(5), Duration::from_secs(1));
        assert_eq!(b.cap(400), Duration::from_secs(1));
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let delays: Vec<Duration> = (0..200).map(|_| b.delay(3, &mut rng)).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_millis(400)));
        assert!(delays.iter().any(|d| *d < Duration::from_millis(100)), "jitter reaches low values");
        assert!(delays.iter().any(|d| *d > Duration::from_millis(300)), "and high ones");
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(retry_after(" 0 ", now), Some(Duration::ZERO));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(retry_after(&later, now), Some(Duration::from_secs(90)));
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(90));
        assert_eq!(retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(retry_after("soon", now), None);
        assert_eq!(retry_after("-3", now), None);
    }

    #[test]
    fn a_bucket_allows_its_burst_then_charges_the_debt() {
        let b = TokenBucket::new(10.0);
        assert_eq!(b.reserve(10.0), Duration::ZERO, "one second's burst");
        let wait = b.reserve(5.0);
        assert!(wait > Duration::from_millis(400) && wait <= Duration::from_millis(500), "{wait:?}");
        let wait = b.reserve(5.0);
        assert!(wait > Duration::from_millis(900) && wait <= Duration::from_secs(1), "{wait:?}");
        assert_eq!(TokenBucket::new(0.0).reserve(1e12), Duration::ZERO, "0 is unlimited");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_pause_holds_every_waiter_until_it_ends() {
        let g = Gate::default();
        assert!(g.wait().await < Duration::from_millis(5));
        g.pause(Duration::from_millis(300));
        g.pause(Duration::from_millis(100));
        let waited = g.wait().await;
        assert!(waited >= Duration::from_millis(290), "the later pause is kept: {waited:?}");
    }
}
