//! Snowflake instance ids, as Nacos's `SnowFlakeInstanceIdGenerator` makes them for
//! instances registered with `preserved.instance.id.generator=snowflake`:
//! `<id>#<cluster>#<group>@@<service>`, where `<id>` is a 64-bit number laid out as
//! Nacos `SnowFlowerIdGenerator` does: milliseconds since 2018-08-05 08:34 UTC
//! (`1533429240000`) shifted left by 22, a 10-bit worker id shifted by 12, and a
//! 12-bit sequence within the millisecond.
//!
//! Invariant: ids from one generator strictly increase, also when the wall clock steps
//! back (the last millisecond handed out is never gone under).

use parking_lot::Mutex;

use crate::model::{GROUP_SEPARATOR, ServiceKey};

/// Nacos's snowflake epoch, milliseconds since the Unix epoch.
pub const EPOCH_MS: u64 = 1_533_429_240_000;
const SEQUENCE_BITS: u32 = 12;
const WORKER_BITS: u32 = 10;
const SEQUENCE_MASK: u64 = (1 << SEQUENCE_BITS) - 1;

/// Hands out snowflake ids for one node.
#[derive(Debug)]
pub struct SnowflakeIds {
    worker: u64,
    /// The millisecond and sequence of the last id.
    last: Mutex<(u64, u64)>,
}

impl SnowflakeIds {
    /// A generator for worker `worker` (its low 10 bits; Nacos derives it from the
    /// node's IP address, see [`SnowflakeIds::worker_of`]).
    pub fn new(worker: u16) -> Self {
        Self {
            worker: u64::from(worker) & ((1 << WORKER_BITS) - 1),
            last: Mutex::new((0, 0)),
        }
    }

    /// Nacos's worker id of a node address: the low two bits of the next-to-last byte
    /// and the last byte (`((ip[n-2] & 3) << 8) + ip[n-1]`).
    pub fn worker_of(ip: std::net::IpAddr) -> u16 {
        let octets: Vec<u8> = match ip {
            std::net::IpAddr::V4(v4) => v4.octets().to_vec(),
            std::net::IpAddr::V6(v6) => v6.octets().to_vec(),
        };
        let n = octets.len();
        (u16::from(octets[n - 2] & 0b11) << 8) | u16::from(octets[n - 1])
    }

    /// The next id at `now_ms` (milliseconds since the Unix epoch).
    pub fn next(&self, now_ms: u64) -> u64 {
        let mut last = self.last.lock();
        let (last_ms, last_seq) = *last;
        let (ms, seq) = if now_ms > last_ms {
            (now_ms, 0)
        } else if last_seq < SEQUENCE_MASK {
            (last_ms, last_seq + 1)
        } else {
            // The millisecond is used up: borrow the next one.
            (last_ms + 1, 0)
        };
        *last = (ms, seq);
        (ms.saturating_sub(EPOCH_MS) << (WORKER_BITS + SEQUENCE_BITS))
            | (self.worker << SEQUENCE_BITS)
            | seq
    }

    /// A full instance id: `<id>#<cluster>#<group>@@<service>`.
    pub fn instance_id(&self, now_ms: u64, cluster: &str, key: &ServiceKey) -> String {
        format!(
            "{}#{cluster}#{}{GROUP_SEPARATOR}{}",
            self.next(now_ms),
            key.group,
            key.service
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_increase_and_carry_the_time_and_worker() {
        let ids = SnowflakeIds::new(5);
        let now = EPOCH_MS + 1_000;
        let a = ids.next(now);
        assert_eq!(a >> 22, 1_000);
        assert_eq!((a >> 12) & 1023, 5);
        let mut prev = a;
        // More than 4096 in one millisecond, and a clock that steps back.
        for _ in 0..5_000 {
            let id = ids.next(now);
            assert!(id > prev);
            prev = id;
        }
        assert!(ids.next(now - 500) > prev);
        assert_eq!(
            SnowflakeIds::worker_of("10.0.3.7".parse().unwrap()),
            (3 << 8) | 7
        );
        let key = ServiceKey::new("public", "DEFAULT_GROUP", "s");
        let id = ids.instance_id(now + 10, "DEFAULT", &key);
        assert!(id.ends_with("#DEFAULT#DEFAULT_GROUP@@s"), "{id}");
    }
}
