//! When to try again: the retry schedule (`delivery.retry_schedule`), the maximum
//! queue lifetime (`delivery.max_queue_time`), the optional delay warning, and the
//! per-recipient-domain rate. Pure functions of injected time; no sleeping here.

use std::time::{Duration, Instant};

use policy::Timestamp;

/// After a transient failure: try again at a time, or give up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextStep {
    RetryAt(Timestamp),
    /// The message has been queued longer than `max_queue_time`: bounce.
    Expire,
}

/// The step after the `attempts`-th failed attempt (1 = the first one failed).
/// The schedule's last delay repeats; the final retry is made at the expiry time, so
/// a message is never held past it.
pub fn after_transient_failure(
    received_at: Timestamp,
    attempts: i64,
    now: Timestamp,
    schedule: &[Duration],
    max_queue_time: Duration,
) -> NextStep {
    let expires = received_at.plus(max_queue_time);
    if now >= expires {
        return NextStep::Expire;
    }
    let index = (attempts.max(1) - 1) as usize;
    let delay = schedule
        .get(index)
        .or(schedule.last())
        .copied()
        .unwrap_or(Duration::from_secs(300));
    let next = now.plus(delay);
    NextStep::RetryAt(if next > expires { expires } else { next })
}

/// Whether a delay warning (a DSN with `Action: delayed`) is due for a recipient.
pub fn delay_warning_due(
    received_at: Timestamp,
    now: Timestamp,
    warn_after: Option<Duration>,
    already_warned: bool,
) -> bool {
    match warn_after {
        Some(after) if !already_warned => now >= received_at.plus(after),
        _ => false,
    }
}

/// A token bucket: `rate` messages per second with bursts of `burst`, one per
/// recipient domain, so large mailbox providers are not flooded.
#[derive(Clone, Debug)]
pub struct DomainRate {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl DomainRate {
    pub fn new(rate_per_sec: f64, burst: u32, now: Instant) -> DomainRate {
        let burst = f64::from(burst.max(1));
        DomainRate {
            rate: rate_per_sec.max(0.001),
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes one token, or says how long to wait for one.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(n: u64) -> Duration {
        Duration::from_secs(60 * n)
    }

    #[test]
    fn follows_the_schedule_and_expires() {
        let t0 = Timestamp(1_000_000);
        let sched = [m(5), m(10), m(30)];
        let max = m(24 * 60);
        assert_eq!(
            after_transient_failure(t0, 1, t0, &sched, max),
            NextStep::RetryAt(t0.plus(m(5)))
        );
        let now = t0.plus(m(5));
        assert_eq!(
            after_transient_failure(t0, 2, now, &sched, max),
            NextStep::RetryAt(now.plus(m(10)))
        );
        // The last delay repeats.
        assert_eq!(
            after_transient_failure(t0, 9, now, &sched, max),
            NextStep::RetryAt(now.plus(m(30)))
        );
        // Never past the expiry; at or after it, give up.
        let late = t0.plus(max).minus(m(1));
        assert_eq!(
            after_transient_failure(t0, 9, late, &sched, max),
            NextStep::RetryAt(t0.plus(max))
        );
        assert_eq!(
            after_transient_failure(t0, 9, t0.plus(max), &sched, max),
            NextStep::Expire
        );
        assert_eq!(
            after_transient_failure(t0, 1, t0, &[], max),
            NextStep::RetryAt(t0.plus(m(5)))
        );
    }

    #[test]
    fn delay_warning_once_after_the_threshold() {
        let t0 = Timestamp(0);
        assert!(!delay_warning_due(t0, t0.plus(m(300)), None, false));
        assert!(!delay_warning_due(t0, t0.plus(m(10)), Some(m(240)), false));
        assert!(delay_warning_due(t0, t0.plus(m(240)), Some(m(240)), false));
        assert!(!delay_warning_due(t0, t0.plus(m(240)), Some(m(240)), true));
    }

    #[test]
    fn token_bucket_limits_bursts() {
        let t = Instant::now();
        let mut r = DomainRate::new(2.0, 2, t);
        assert!(r.take(t).is_ok());
        assert!(r.take(t).is_ok());
        let wait = r.take(t).unwrap_err();
        assert!(wait > Duration::from_millis(400) && wait <= Duration::from_millis(500));
        assert!(r.take(t + Duration::from_millis(500)).is_ok());
        assert!(r.take(t + Duration::from_millis(500)).is_err());
    }
}
