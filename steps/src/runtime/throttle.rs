//! `max_rate`: a ceiling on the bytes per second a step reads or writes, so a
//! daytime backup does not starve TheHive's own I/O.
//!
//! One token bucket per rate value, shared by the whole process: every step
//! given the same `max_rate` draws from the same bucket, so steps running at
//! the same time (the `parallel` branches of a workflow) stay under the limit
//! *together*. The backup workflow passes its one `max_rate` key to each step
//! it calls, which makes the limit a budget for the whole run.
//!
//! The bucket is a debt-based token bucket: a caller takes the bytes it is
//! about to move at once (the count may go below zero) and sleeps until the
//! debt is paid back at the rate. It starts empty and holds at most
//! [`BURST`] worth of unused time, so a pause never buys a burst larger than
//! that: over any interval the bytes moved stay at most `rate × interval` plus
//! one burst. Written here rather than with `governor`, whose GCRA quantum is
//! one cell per whole nanosecond: at byte granularity, any rate above about
//! 100 MB/s would be rounded up by up to 25%.

use std::collections::HashMap;
use std::io::{self, Read};
use std::str::FromStr;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer};

use crate::runtime::blocking_work::WorkControl;

/// The most unused time the bucket keeps: the largest burst after a pause.
pub const BURST: Duration = Duration::from_millis(50);
/// The least bucket size, whatever the rate: one 256 KiB archive buffer.
const MIN_BURST_BYTES: f64 = (256 << 10) as f64;
/// How often a blocking wait looks whether its work must stop.
const STOP_CHECK: Duration = Duration::from_millis(50);

/// A `max_rate` option: bytes per second, or no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MaxRate(Option<u64>);

/// Why a `max_rate` value was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "max_rate `{text}` is not a rate like \"200MiB/s\" or \"50MB/s\" (\"\" for no limit): {reason}"
)]
pub struct RateError {
    /// The value given.
    pub text: String,
    /// What is wrong with it.
    pub reason: String,
}

impl MaxRate {
    /// No limit.
    pub const UNLIMITED: MaxRate = MaxRate(None);

    /// A limit of `bytes_per_second` (at least 1).
    pub fn bytes_per_second(bytes_per_second: u64) -> MaxRate {
        MaxRate(Some(bytes_per_second.max(1)))
    }

    /// The limit in bytes per second, `None` when unlimited.
    pub fn limit(self) -> Option<u64> {
        self.0
    }

    /// The process-wide bucket for this rate, `None` when unlimited.
    pub fn throttle(self) -> Option<Arc<Throttle>> {
        self.0.map(shared)
    }

    /// `200MiB/s` style, for log lines.
    pub fn describe(self) -> String {
        match self.0 {
            None => "unlimited".to_string(),
            Some(rate) => format!("{}/s", bytesize::ByteSize::b(rate).display().iec()),
        }
    }
}

impl FromStr for MaxRate {
    type Err = RateError;

    /// `""` (or `"unlimited"`): no limit; else a size per second: `200MiB/s`,
    /// `50 MB/s`, `1.5GiB/s` (the `/s` may be left out). Units are bytes:
    /// `MB` is 10^6, `MiB` 2^20.
    fn from_str(text: &str) -> Result<MaxRate, RateError> {
        let error = |reason: &str| RateError {
            text: text.to_string(),
            reason: reason.to_string(),
        };
        let trimmed = text.trim();
        if trimmed.is_empty() || trimmed.eq_ignore_ascii_case("unlimited") {
            return Ok(MaxRate::UNLIMITED);
        }
        let size = trimmed
            .strip_suffix("/s")
            .or_else(|| trimmed.strip_suffix("/S"))
            .unwrap_or(trimmed)
            .trim();
        if names_bits(size) {
            return Err(error(
                "a lowercase b after k, M, G or T reads as bits (5 Mb/s is 0.625 MB/s): write MB/s or MiB/s (bytes)",
            ));
        }
        let bytes = bytesize::ByteSize::from_str(size)
            .map_err(|_| error("expected a number and a unit: B, kB, MB, GB, KiB, MiB or GiB"))?
            .as_u64();
        if bytes == 0 {
            return Err(error("a rate of 0 would stop everything"));
        }
        Ok(MaxRate(Some(bytes)))
    }
}

/// `5Mb`, `100 kb`: a unit of two letters ending in a lowercase `b`, which
/// network people read as bits; bytesize would take it as bytes, 8 times the
/// rate meant. (`mib`, `MB` and `kB` stay bytes.)
fn names_bits(size: &str) -> bool {
    let unit = size.trim_start_matches(|c: char| c.is_ascii_digit() || c == '.' || c == ' ');
    let mut letters = unit.chars();
    matches!(
        (letters.next(), letters.next(), letters.next()),
        (
            Some('k' | 'K' | 'm' | 'M' | 'g' | 'G' | 't' | 'T'),
            Some('b'),
            None
        )
    )
}

impl<'de> Deserialize<'de> for MaxRate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<MaxRate, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Given {
            Text(String),
            Unit(()),
        }
        match Given::deserialize(deserializer)? {
            Given::Text(text) => text.parse().map_err(serde::de::Error::custom),
            Given::Unit(()) => Ok(MaxRate::UNLIMITED),
        }
    }
}

/// A token bucket several threads and tasks draw from.
#[derive(Debug)]
pub struct Throttle {
    rate: f64,
    burst: f64,
    bucket: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    /// Bytes that may pass now; negative: the debt still to wait for.
    tokens: f64,
    updated: Instant,
}

impl Throttle {
    /// A bucket for `bytes_per_second`, starting empty.
    pub fn new(bytes_per_second: u64) -> Throttle {
        let rate = bytes_per_second.max(1) as f64;
        Throttle {
            rate,
            burst: (rate * BURST.as_secs_f64()).max(MIN_BURST_BYTES),
            bucket: Mutex::new(Bucket {
                tokens: 0.0,
                updated: Instant::now(),
            }),
        }
    }

    /// The rate in bytes per second.
    pub fn rate(&self) -> u64 {
        self.rate as u64
    }

    /// Takes `bytes` at `now`; returns how long the caller must wait before
    /// moving them.
    fn reserve_at(&self, bytes: u64, now: Instant) -> Duration {
        let mut bucket = self.bucket.lock().expect("throttle lock poisoned");
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        if now > bucket.updated {
            bucket.updated = now;
        }
        bucket.tokens -= bytes as f64;
        if bucket.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-bucket.tokens / self.rate)
        }
    }

    /// Waits (blocking the thread) until `bytes` may be moved, deaf to any
    /// stop: only for callers with no work to stop (blocking work uses
    /// [`Throttle::take_blocking_unless`]).
    pub fn take_blocking(&self, bytes: u64) {
        let wait = self.reserve_at(bytes, Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }

    /// Waits (blocking the thread) until `bytes` may be moved, or until
    /// `stop()` says the work must stop (asked every [`STOP_CHECK`]). At a
    /// low rate one buffer is minutes of debt (262,144 s for 256 KiB at
    /// `"1B/s"`): a wait that only slept would hold back an interruption and
    /// the step's timeout for all that time.
    pub fn take_blocking_unless(&self, bytes: u64, stop: impl Fn() -> bool) {
        let wait = self.reserve_at(bytes, Instant::now());
        let started = Instant::now();
        loop {
            let waited = started.elapsed();
            if waited >= wait || stop() {
                return;
            }
            std::thread::sleep((wait - waited).min(STOP_CHECK));
        }
    }

    /// Waits (asynchronously) until `bytes` may be moved.
    pub async fn take(&self, bytes: u64) {
        let wait = self.reserve_at(bytes, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// The process-wide bucket for `bytes_per_second`.
fn shared(bytes_per_second: u64) -> Arc<Throttle> {
    static BUCKETS: LazyLock<Mutex<HashMap<u64, Arc<Throttle>>>> =
        LazyLock::new(|| Mutex::new(HashMap::new()));
    let mut buckets = BUCKETS.lock().expect("throttle registry poisoned");
    Arc::clone(
        buckets
            .entry(bytes_per_second)
            .or_insert_with(|| Arc::new(Throttle::new(bytes_per_second))),
    )
}

/// A [`Read`] held to a [`Throttle`] (no throttle: reads straight through).
pub struct ThrottledRead<R> {
    inner: R,
    throttle: Option<Arc<Throttle>>,
    control: Option<WorkControl>,
}

impl<R> ThrottledRead<R> {
    /// Wraps `inner`.
    pub fn new(inner: R, throttle: Option<Arc<Throttle>>) -> ThrottledRead<R> {
        ThrottledRead {
            inner,
            throttle,
            control: None,
        }
    }

    /// Stops waiting for the throttle as soon as `control` says the work
    /// must stop (interrupted, timed out); the reader's caller then stops at
    /// its own next check.
    pub fn until_stopped(mut self, control: &WorkControl) -> ThrottledRead<R> {
        self.control = Some(control.clone());
        self
    }
}

impl<R: Read> Read for ThrottledRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(throttle) = &self.throttle {
            let control = self.control.as_ref();
            throttle.take_blocking_unless(n as u64, || control.is_some_and(|c| c.check().is_err()));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_with_units_and_bad_ones_say_why() {
        let rate = |text: &str| text.parse::<MaxRate>().map(MaxRate::limit);
        assert_eq!(rate("200MiB/s"), Ok(Some(200 << 20)));
        assert_eq!(rate("50 MB/s"), Ok(Some(50_000_000)));
        assert_eq!(rate("1.5GiB"), Ok(Some(3 << 29)));
        assert_eq!(rate("20mib/s"), Ok(Some(20 << 20)));
        assert_eq!(rate("100kB/s"), Ok(Some(100_000)));
        for bits in ["5Mb/s", "5 mb/s", "100kb", "1 Gb/s"] {
            let e = rate(bits).unwrap_err();
            assert!(e.to_string().contains("reads as bits"), "{bits}: {e}");
        }
        assert_eq!(rate(""), Ok(None));
        assert_eq!(rate("unlimited"), Ok(None));
        let e = rate("fast").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("max_rate `fast` is not a rate like \"200MiB/s\""),
            "{e}"
        );
        assert!(rate("0MiB/s").is_err());
        assert!(rate("-5MB/s").is_err());
        let parsed: MaxRate = serde_json::from_value(serde_json::json!(null)).unwrap();
        assert_eq!(parsed, MaxRate::UNLIMITED);
        let e = serde_json::from_value::<MaxRate>(serde_json::json!("fast")).unwrap_err();
        assert!(e.to_string().contains("max_rate `fast`"), "{e}");
        assert_eq!(
            MaxRate::bytes_per_second(200 << 20).describe(),
            "200.0 MiB/s"
        );
    }

    #[test]
    fn the_bucket_starts_empty_and_charges_debt_at_the_rate() {
        let throttle = Throttle::new(1000);
        let start = throttle.bucket.lock().unwrap().updated;
        // 500 bytes at once: half a second of debt.
        assert_eq!(throttle.reserve_at(500, start), Duration::from_millis(500));
        // A second caller at the same moment queues behind the first.
        assert_eq!(throttle.reserve_at(500, start), Duration::from_secs(1));
        // After the debt is paid, the next bytes wait only for themselves.
        let later = start + Duration::from_secs(1);
        assert_eq!(throttle.reserve_at(100, later), Duration::from_millis(100));
    }

    #[test]
    fn an_idle_bucket_keeps_at_most_one_burst() {
        let throttle = Throttle::new(10 << 20);
        let start = throttle.bucket.lock().unwrap().updated;
        let idle = start + Duration::from_secs(60);
        // A minute idle buys 50 ms of rate (512 KiB at 10 MiB/s), no more.
        let burst = (10 << 20) as f64 * BURST.as_secs_f64();
        assert_eq!(throttle.reserve_at(burst as u64, idle), Duration::ZERO);
        assert!(throttle.reserve_at(1 << 20, idle) >= Duration::from_millis(99));
    }

    #[test]
    fn a_long_wait_ends_as_soon_as_the_work_must_stop() {
        // 1 MiB at 1 B/s: twelve days of debt.
        let throttle = Throttle::new(1);
        let control = WorkControl::new("t");
        let cancel = control.cancel.clone();
        let started = Instant::now();
        let stopper = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            cancel.cancel();
        });
        throttle.take_blocking_unless(1 << 20, || control.check().is_err());
        stopper.join().unwrap();
        assert!(started.elapsed() < Duration::from_secs(60));
    }

    #[test]
    fn the_same_rate_shares_one_bucket() {
        let a = MaxRate::bytes_per_second(123_457).throttle().unwrap();
        let b = MaxRate::bytes_per_second(123_457).throttle().unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(MaxRate::UNLIMITED.throttle().is_none());
    }
}
