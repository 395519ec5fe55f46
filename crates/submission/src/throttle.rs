//! Who may try again, and how much they may send: failed-login throttling
//! ([`AuthThrottle`]) and per-login sending quotas ([`Quota`]). Pure bookkeeping in
//! memory, time from an injected [`Clock`], so the rules are tested without sleeping.
//!
//! Keys are chosen for an ISP's reality. Failed logins are counted per login first:
//! one infected PC behind a CGNAT or office NAT must not lock out everyone sharing its
//! address, so the per-address threshold is much higher, and a login that has
//! succeeded from an address before is exempt from that address's lock. Quotas are per
//! login only: stolen credentials are used from many dynamic addresses at once.
//!
//! The state is per node; with several nodes behind a load balancer each node counts
//! on its own (a later step can move it into the store).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use policy::Clock;

/// Past this many tracked keys, expired entries are pruned on the next failure.
const PRUNE_AT: usize = 100_000;
/// How long a successful (login, address) pair exempts the login from that address's lock.
const KNOWN_GOOD_FOR: i64 = 30 * 86_400;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    Allowed,
    /// Locked out until the lockout expires: `454 4.7.0`.
    Locked,
}

#[derive(Clone, Copy, Debug, Default)]
struct Failures {
    count: u32,
    first: i64,
    locked_until: i64,
}

#[derive(Default)]
struct ThrottleState {
    logins: HashMap<String, Failures>,
    addresses: HashMap<IpAddr, Failures>,
    known_good: HashMap<(String, IpAddr), i64>,
}

/// Failed-login bookkeeping with growing delays and a temporary lock.
pub struct AuthThrottle {
    clock: Arc<dyn Clock>,
    max_failures: u32,
    address_max_failures: u32,
    lockout: i64,
    base_delay: Duration,
    state: Mutex<ThrottleState>,
}

/// IPv6 clients are counted per /64: one subscriber gets a whole prefix.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let mut o = v6.octets();
            o[8..].fill(0);
            IpAddr::V6(o.into())
        }
    }
}

impl AuthThrottle {
    /// `max_failures` per login (config `auth.max_failures`); an address tolerates
    /// `address_factor` times as many. Delays start at `base_delay` and double.
    pub fn new(
        clock: Arc<dyn Clock>,
        max_failures: u32,
        address_factor: u32,
        lockout: Duration,
        base_delay: Duration,
    ) -> AuthThrottle {
        AuthThrottle {
            clock,
            max_failures: max_failures.max(1),
            address_max_failures: max_failures.max(1).saturating_mul(address_factor.max(1)),
            lockout: lockout.as_secs().max(1) as i64,
            base_delay,
            state: Mutex::new(ThrottleState::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ThrottleState> {
        // The state stays consistent even if a holder panicked: every update is one step.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// May `login` try to authenticate from `ip` now?
    pub fn check(&self, login: &str, ip: IpAddr) -> Admission {
        let now = self.clock.now().0;
        let ip = address_key(ip);
        let s = self.lock();
        if s.logins.get(login).is_some_and(|f| f.locked_until > now) {
            return Admission::Locked;
        }
        let known = s
            .known_good
            .get(&(login.to_string(), ip))
            .is_some_and(|t| now - t < KNOWN_GOOD_FOR);
        if !known && s.addresses.get(&ip).is_some_and(|f| f.locked_until > now) {
            return Admission::Locked;
        }
        Admission::Allowed
    }

    /// Records a failure; returns how long to wait before answering (growing).
    pub fn failed(&self, login: &str, ip: IpAddr) -> Duration {
        let now = self.clock.now().0;
        let ip = address_key(ip);
        let lockout = self.lockout;
        let mut s = self.lock();
        if s.logins.len() + s.addresses.len() > PRUNE_AT {
            s.logins
                .retain(|_, f| now - f.first < lockout || f.locked_until > now);
            s.addresses
                .retain(|_, f| now - f.first < lockout || f.locked_until > now);
            s.known_good.retain(|_, t| now - *t < KNOWN_GOOD_FOR);
        }
        let bump = |f: &mut Failures, max: u32| {
            if now - f.first >= lockout && f.locked_until <= now {
                *f = Failures {
                    count: 0,
                    first: now,
                    locked_until: 0,
                };
            }
            f.count += 1;
            if f.count >= max {
                f.locked_until = now + lockout;
                f.count = 0;
                f.first = now;
            }
            f.count
        };
        let n = bump(
            s.logins.entry(login.to_string()).or_default(),
            self.max_failures,
        );
        bump(
            s.addresses.entry(ip).or_default(),
            self.address_max_failures,
        );
        let steps = n.saturating_sub(1).min(4);
        self.base_delay * 2u32.pow(steps)
    }

    /// Records a success: the login's failures are forgotten and the pair is known good.
    pub fn succeeded(&self, login: &str, ip: IpAddr) {
        let now = self.clock.now().0;
        let mut s = self.lock();
        s.logins.remove(login);
        s.known_good
            .insert((login.to_string(), address_key(ip)), now);
    }
}

#[derive(Default)]
struct Usage {
    /// Acceptance times within the last hour.
    messages: VecDeque<i64>,
    /// (time, recipients) within the last day.
    recipients: VecDeque<(i64, u32)>,
    recipient_total: u64,
}

/// Per-login sending quotas: messages per hour, recipients per day.
pub struct Quota {
    clock: Arc<dyn Clock>,
    messages_per_hour: u32,
    recipients_per_day: u32,
    usage: Mutex<HashMap<String, Usage>>,
}

impl Quota {
    pub fn new(clock: Arc<dyn Clock>, limits: &config::SubmissionLimits) -> Quota {
        Quota {
            clock,
            messages_per_hour: limits.messages_per_hour,
            recipients_per_day: limits.recipients_per_day,
            usage: Mutex::new(HashMap::new()),
        }
    }

    fn with_usage<T>(&self, login: &str, f: impl FnOnce(&mut Usage) -> T) -> T {
        let now = self.clock.now().0;
        let mut map = self.usage.lock().unwrap_or_else(|e| e.into_inner());
        let u = map.entry(login.to_string()).or_default();
        while u.messages.front().is_some_and(|t| now - t >= 3600) {
            u.messages.pop_front();
        }
        while let Some(&(t, n)) = u.recipients.front() {
            if now - t < 86_400 {
                break;
            }
            u.recipients.pop_front();
            u.recipient_total -= u64::from(n);
        }
        f(u)
    }

    /// Whether one more message may start this hour.
    pub fn message_allowed(&self, login: &str) -> bool {
        self.with_usage(login, |u| {
            u.messages.len() < self.messages_per_hour as usize
        })
    }

    /// Whether `pending` recipients (of the transaction so far, this one included)
    /// fit in today's allowance.
    pub fn recipients_allowed(&self, login: &str, pending: u32) -> bool {
        self.with_usage(login, |u| {
            u.recipient_total + u64::from(pending) <= u64::from(self.recipients_per_day)
        })
    }

    /// Counts an accepted message.
    pub fn record(&self, login: &str, recipients: u32) {
        let now = self.clock.now().0;
        self.with_usage(login, |u| {
            u.messages.push_back(now);
            u.recipients.push_back((now, recipients));
            u.recipient_total += u64::from(recipients);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use policy::{FixedClock, Timestamp};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn login_locks_after_max_failures_with_growing_delays() {
        let clock = FixedClock::at(Timestamp(1_000));
        let t = AuthThrottle::new(
            Arc::new(clock.clone()),
            3,
            10,
            Duration::from_secs(900),
            Duration::from_millis(100),
        );
        assert_eq!(t.failed("ann", ip("10.0.0.1")), Duration::from_millis(100));
        assert_eq!(t.failed("ann", ip("10.0.0.2")), Duration::from_millis(200));
        assert_eq!(t.check("ann", ip("10.0.0.3")), Admission::Allowed);
        t.failed("ann", ip("10.0.0.3"));
        assert_eq!(
            t.check("ann", ip("10.0.0.9")),
            Admission::Locked,
            "locked whatever the address"
        );
        assert_eq!(
            t.check("bob", ip("10.0.0.1")),
            Admission::Allowed,
            "others unaffected"
        );
        clock.advance(Duration::from_secs(901));
        assert_eq!(
            t.check("ann", ip("10.0.0.1")),
            Admission::Allowed,
            "lock expires"
        );
    }

    #[test]
    fn address_lock_spares_known_good_logins_behind_nat() {
        let clock = FixedClock::at(Timestamp(1_000));
        let t = AuthThrottle::new(
            Arc::new(clock.clone()),
            3,
            2,
            Duration::from_secs(900),
            Duration::ZERO,
        );
        let nat = ip("100.64.1.1");
        t.succeeded("carol", nat);
        for i in 0..6 {
            t.failed(&format!("guess{i}"), nat);
        }
        assert_eq!(
            t.check("dave", nat),
            Admission::Locked,
            "unknown logins from the address are locked"
        );
        assert_eq!(
            t.check("carol", nat),
            Admission::Allowed,
            "a login known good from this address is not"
        );
        assert_eq!(t.check("dave", ip("100.64.1.2")), Admission::Allowed);
    }

    #[test]
    fn ipv6_counts_per_64() {
        assert_eq!(
            address_key(ip("2001:db8:1:2:aaaa::1")),
            address_key(ip("2001:db8:1:2:bbbb::2"))
        );
        assert_ne!(
            address_key(ip("2001:db8:1:2::1")),
            address_key(ip("2001:db8:1:3::1"))
        );
    }

    #[test]
    fn success_clears_login_failures() {
        let clock = FixedClock::at(Timestamp(1_000));
        let t = AuthThrottle::new(
            Arc::new(clock),
            3,
            10,
            Duration::from_secs(900),
            Duration::from_millis(1),
        );
        t.failed("ann", ip("10.0.0.1"));
        t.failed("ann", ip("10.0.0.1"));
        t.succeeded("ann", ip("10.0.0.1"));
        assert_eq!(
            t.failed("ann", ip("10.0.0.1")),
            Duration::from_millis(1),
            "delay restarts"
        );
    }

    #[test]
    fn quotas_slide() {
        let clock = FixedClock::at(Timestamp(1_000_000));
        let limits = config::SubmissionLimits {
            recipients_per_message: 10,
            messages_per_hour: 2,
            recipients_per_day: 5,
        };
        let q = Quota::new(Arc::new(clock.clone()), &limits);
        assert!(q.message_allowed("a"));
        q.record("a", 2);
        q.record("a", 2);
        assert!(!q.message_allowed("a"));
        assert!(q.message_allowed("b"));
        assert!(q.recipients_allowed("a", 1));
        assert!(!q.recipients_allowed("a", 2));
        clock.advance(Duration::from_secs(3600));
        assert!(q.message_allowed("a"), "an hour later");
        assert!(!q.recipients_allowed("a", 2), "still the same day");
        clock.advance(Duration::from_secs(86_400));
        assert!(q.recipients_allowed("a", 5));
    }
}
