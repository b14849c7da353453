//! Response rate limiting for UDP (`dns.rrl`, off by default), in the spirit of BIND's
//! and NSD's RRL: each client prefix (`/24` for IPv4, `/56` for IPv6 by default) has a
//! token bucket of `responses_per_second`; past it, responses are dropped, except every
//! `slip`-th one, which goes out truncated (TC, no records) so a real client behind a
//! spoofed flood can still retry over TCP. TCP is never limited (its source cannot be
//! spoofed).
//!
//! Invariant: the table is bounded (`max_entries`); when full, idle buckets go first,
//! then everything.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use parking_lot::Mutex;

use crate::settings::RrlSettings;

/// What to do with one response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send it.
    Send,
    /// Send a truncated copy (TC set, no records).
    Slip,
    /// Send nothing.
    Drop,
}

struct Bucket {
    tokens: f64,
    last: Instant,
    limited: u32,
}

/// The limiter: buckets by client prefix.
pub struct Limiter {
    settings: RrlSettings,
    buckets: Mutex<HashMap<u128, Bucket>>,
}

impl Limiter {
    /// A limiter with `settings` (which must be enabled to limit anything).
    pub fn new(settings: RrlSettings) -> Self {
        Self {
            settings,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The bucket key of a client: its address cut to the configured prefix, with the
    /// family in the top bit so the two never collide.
    fn prefix(&self, ip: IpAddr) -> u128 {
        match ip.to_canonical() {
            IpAddr::V4(v4) => {
                let bits = u32::from(v4);
                let len = u32::from(self.settings.ipv4_prefix_len.min(32));
                let masked = if len == 0 {
                    0
                } else {
                    bits & (u32::MAX << (32 - len))
                };
                (1u128 << 127) | u128::from(masked)
            }
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                let len = u32::from(self.settings.ipv6_prefix_len.min(128));
                let masked = if len == 0 {
                    0
                } else {
                    bits & (u128::MAX << (128 - len))
                };
                masked >> 1
            }
        }
    }

    /// Whether a response to `ip` may go out now.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Verdict {
        let rate = f64::from(self.settings.responses_per_second.max(1));
        let key = self.prefix(ip);
        let mut buckets = self.buckets.lock();
        if buckets.len() >= self.settings.max_entries && !buckets.contains_key(&key) {
            buckets.retain(|_, b| now.duration_since(b.last).as_secs_f64() * rate < rate);
            if buckets.len() >= self.settings.max_entries {
                buckets.clear();
            }
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: rate,
            last: now,
            limited: 0,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(rate);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Verdict::Send;
        }
        bucket.limited = bucket.limited.wrapping_add(1);
        let slip = self.settings.slip;
        if slip > 0 && bucket.limited.is_multiple_of(slip) {
            Verdict::Slip
        } else {
            Verdict::Drop
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_prefix_gets_its_rate_then_drops_and_slips() {
        let limiter = Limiter::new(RrlSettings {
            enabled: true,
            responses_per_second: 5,
            slip: 2,
            ..RrlSettings::default()
        });
        let t = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let same_prefix: IpAddr = "192.0.2.200".parse().unwrap();
        let other: IpAddr = "198.51.100.1".parse().unwrap();
        let verdicts: Vec<Verdict> = (0..9)
            .map(|i| limiter.check(if i % 2 == 0 { a } else { same_prefix }, t))
            .collect();
        assert_eq!(&verdicts[..5], &[Verdict::Send; 5]);
        assert_eq!(
            &verdicts[5..],
            &[Verdict::Drop, Verdict::Slip, Verdict::Drop, Verdict::Slip]
        );
        assert_eq!(limiter.check(other, t), Verdict::Send, "another prefix");
        assert_eq!(
            limiter.check(a, t + Duration::from_millis(400)),
            Verdict::Send,
            "tokens come back at the rate"
        );
    }
}
