//! Slowing down password guessing, per source address.
//!
//! Two limits apply to each address a client connects from (an IPv6
//! address by its /64, which one host usually holds whole):
//!
//! - **Logins in progress.** At most `listen.max_logins_per_address`
//!   connections from one address may be between their greeting and the
//!   end of their login. More wait, in order of arrival and before their
//!   greeting, for one of those to end: an application opening its whole
//!   pool at once is only slowed down. Up to [`QUEUED_PER_SLOT`] times as
//!   many may wait; one more is refused at accept with ERR 1040. Silent
//!   connections from one address can then not fill
//!   `listen.max_client_connections`, and the logged-in clients and every
//!   other address keep being served.
//! - **Failed logins.** After [`FREE_FAILURES`] consecutive failures from
//!   an address, each further failure is answered
//!   `listen.failed_login_delay` × (failures − 3) later, up to
//!   [`MAX_DELAY_STEPS`] times that, as MySQL's `connection_control`
//!   plugin delays them. The connection keeps its login slot while it
//!   waits, so an address gets at most `max_logins_per_address` guesses
//!   per delay, however many connections it opens. A successful login
//!   from the address clears its count, and so do [`FORGET_AFTER`] without
//!   a failure.
//!
//! No address is ever blocked (MySQL's `max_connect_errors`): a sidecar's
//! clients all come from 127.0.0.1, and one misconfigured job there would
//! lock the application out. Only failures wait; a client that gives the
//! right password is answered at once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::logging::Throttled;

/// Connections from one address that may wait for a login slot, per slot.
pub const QUEUED_PER_SLOT: usize = 8;

/// Consecutive failures answered without delay.
pub const FREE_FAILURES: u32 = 3;
/// The longest delay, in steps of `listen.failed_login_delay`.
pub const MAX_DELAY_STEPS: u32 = 30;
/// An address's failures are forgotten after this long without one.
pub const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// Addresses remembered for their failures alone; past this, the one whose
/// last failure is oldest is forgotten first.
const MAX_REMEMBERED: usize = 65_536;

/// The part of a client's address the limits apply to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    V4([u8; 4]),
    /// The /64 prefix of an IPv6 address.
    V6(u64),
}

impl From<IpAddr> for Source {
    fn from(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Source::V4(v4.octets()),
            IpAddr::V6(v6) => Source::V6((u128::from(v6) >> 64) as u64),
        }
    }
}

/// What rwsplit knows of one address.
#[derive(Debug, Default)]
struct Entry {
    /// Connections from it that are logging in now.
    in_progress: usize,
    /// Connections from it waiting for one of those to end.
    queued: usize,
    /// Wakes a waiting connection when a slot is given back.
    freed: Arc<Notify>,
    /// Failed logins since its last success.
    failures: u32,
    last_failure: Option<Instant>,
    /// Its "access denied" log lines, one per interval.
    log: Throttled,
}

impl Entry {
    /// Whether connections from it are logging in or waiting to.
    fn busy(&self) -> bool {
        self.in_progress > 0 || self.queued > 0
    }

    fn is_empty(&self) -> bool {
        !self.busy() && self.failures == 0
    }
}

/// What to do about one failed login.
#[derive(Debug, PartialEq, Eq)]
pub struct Failure {
    /// How long to wait before answering it.
    pub delay: Duration,
    /// Consecutive failures from the address, this one included.
    pub consecutive: u32,
    /// When a log line is due: the failures from the address since the last.
    pub log: Option<u64>,
}

/// The per-address limits, shared by every session.
#[derive(Debug)]
pub struct LoginGuard {
    per_address: usize,
    step: Duration,
    entries: Mutex<HashMap<Source, Entry>>,
}

/// A login in progress: holds its address's slot until dropped.
#[derive(Debug)]
pub struct LoginSlot {
    guard: Arc<LoginGuard>,
    source: Source,
}

/// A client admitted to log in: now, or once a slot is free.
#[derive(Debug)]
pub enum Admission {
    Now(LoginSlot),
    Queued(Queued),
}

impl Admission {
    /// Its address's login slot, once it has one.
    pub async fn slot(self) -> LoginSlot {
        match self {
            Admission::Now(slot) => slot,
            Admission::Queued(queued) => queued.slot().await,
        }
    }
}

/// A connection waiting for a login slot; counted as waiting until it
/// has one or is dropped.
#[derive(Debug)]
pub struct Queued {
    guard: Arc<LoginGuard>,
    source: Source,
    freed: Arc<Notify>,
    /// Set when it became a slot: it no longer waits.
    admitted: bool,
}

impl LoginGuard {
    /// `per_address` logins in progress per address; failures past the
    /// third wait `step` more each (zero: never).
    pub fn new(per_address: usize, step: Duration) -> Self {
        LoginGuard {
            per_address,
            step,
            entries: Mutex::default(),
        }
    }

    /// Whether a client from `ip` may log in now or after the connections
    /// from its address that are waiting already; `None`: not at all.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Admission> {
        let source = Source::from(ip);
        let mut entries = self.entries();
        let entry = entries.entry(source).or_default();
        if entry.in_progress < self.per_address && entry.queued == 0 {
            entry.in_progress += 1;
            return Some(Admission::Now(self.slot(source)));
        }
        if entry.queued >= self.per_address.saturating_mul(QUEUED_PER_SLOT) {
            return None;
        }
        entry.queued += 1;
        Some(Admission::Queued(Queued {
            guard: self.clone(),
            source,
            freed: entry.freed.clone(),
            admitted: false,
        }))
    }

    fn slot(self: &Arc<Self>, source: Source) -> LoginSlot {
        LoginSlot {
            guard: self.clone(),
            source,
        }
    }

    /// Counts a failed login from `ip` (a login or a COM_CHANGE_USER).
    pub fn failed(&self, ip: IpAddr) -> Failure {
        let now = Instant::now();
        let source = Source::from(ip);
        let mut entries = self.entries();
        if entries.len() >= MAX_REMEMBERED && !entries.contains_key(&source) {
            forget_oldest(&mut entries);
        }
        let entry = entries.entry(source).or_default();
        if entry
            .last_failure
            .is_some_and(|last| now.duration_since(last) >= FORGET_AFTER)
        {
            entry.failures = 0;
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.last_failure = Some(now);
        let mut log = None;
        entry.log.warn(|count| log = Some(count));
        Failure {
            delay: delay(entry.failures, self.step),
            consecutive: entry.failures,
            log,
        }
    }

    /// A successful login from `ip` clears its failures.
    fn succeeded(&self, source: Source) {
        let mut entries = self.entries();
        if let Some(entry) = entries.get_mut(&source) {
            entry.failures = 0;
            entry.last_failure = None;
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<Source, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl LoginSlot {
    /// The client logged in: its address's failures are cleared.
    pub fn succeeded(&self) {
        self.guard.succeeded(self.source);
    }
}

impl Drop for LoginSlot {
    fn drop(&mut self) {
        let mut entries = self.guard.entries();
        if let Some(entry) = entries.get_mut(&self.source) {
            entry.in_progress -= 1;
            if entry.queued > 0 {
                entry.freed.notify_one();
            }
            if entry.is_empty() {
                entries.remove(&self.source);
            }
        }
    }
}

impl Queued {
    /// Waits until its address has a login slot free, and takes it.
    pub async fn slot(mut self) -> LoginSlot {
        loop {
            let freed = self.freed.clone();
            let notified = freed.notified();
            tokio::pin!(notified);
            // Registered before looking, so a slot given back after the
            // look still wakes this one.
            notified.as_mut().enable();
            if let Some(slot) = self.take() {
                return slot;
            }
            notified.await;
        }
    }

    fn take(&mut self) -> Option<LoginSlot> {
        let mut entries = self.guard.entries();
        let entry = entries.get_mut(&self.source)?;
        if entry.in_progress >= self.guard.per_address {
            return None;
        }
        entry.in_progress += 1;
        entry.queued -= 1;
        self.admitted = true;
        Some(self.guard.slot(self.source))
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        if self.admitted {
            return;
        }
        let mut entries = self.guard.entries();
        if let Some(entry) = entries.get_mut(&self.source) {
            entry.queued -= 1;
            // It may have been woken for a slot it will not take now.
            entry.freed.notify_one();
            if entry.is_empty() {
                entries.remove(&self.source);
            }
        }
    }
}

/// The delay of the `failures`-th consecutive failure, in steps of `step`.
fn delay(failures: u32, step: Duration) -> Duration {
    step * failures.saturating_sub(FREE_FAILURES).min(MAX_DELAY_STEPS)
}

/// Makes room for one more address: drops those forgotten by now, else the
/// one whose last failure is oldest (never one logging in or waiting to:
/// those are bounded by the connection limit).
fn forget_oldest(entries: &mut HashMap<Source, Entry>) {
    let now = Instant::now();
    entries.retain(|_, entry| {
        entry.busy()
            || entry
                .last_failure
                .is_some_and(|last| now.duration_since(last) < FORGET_AFTER)
    });
    if entries.len() < MAX_REMEMBERED {
        return;
    }
    let oldest = entries
        .iter()
        .filter(|(_, entry)| !entry.busy())
        .min_by_key(|(_, entry)| entry.last_failure)
        .map(|(source, _)| *source);
    if let Some(oldest) = oldest {
        entries.remove(&oldest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP: Duration = Duration::from_secs(1);

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    #[test]
    fn failures_past_the_third_wait_one_step_more_each_up_to_the_cap() {
        let delays: Vec<u64> = (1..=6).map(|n| delay(n, STEP).as_secs()).collect();
        assert_eq!(delays, [0, 0, 0, 1, 2, 3]);
        assert_eq!(delay(FREE_FAILURES + 1_000, STEP), STEP * MAX_DELAY_STEPS);
        assert_eq!(delay(u32::MAX, Duration::ZERO), Duration::ZERO, "off");
    }

    fn now(admission: Option<Admission>) -> LoginSlot {
        match admission {
            Some(Admission::Now(slot)) => slot,
            other => panic!("expected a slot, got {other:?}"),
        }
    }

    fn queued(admission: Option<Admission>) -> Queued {
        match admission {
            Some(Admission::Queued(queued)) => queued,
            other => panic!("expected to wait, got {other:?}"),
        }
    }

    /// Whether `queued` has a slot within a moment.
    async fn gets_a_slot(queued: Queued) -> Option<LoginSlot> {
        crate::timer::timeout(Duration::from_millis(50), queued.slot())
            .await
            .ok()
    }

    #[tokio::test]
    async fn an_address_gets_its_share_of_login_slots_then_waits_in_turn() {
        let guard = Arc::new(LoginGuard::new(2, STEP));
        let first = now(guard.admit(ip("127.0.0.2")));
        let _second = now(guard.admit(ip("127.0.0.2")));
        let third = queued(guard.admit(ip("127.0.0.2")));
        let fourth = queued(guard.admit(ip("::ffff:127.0.0.2")));
        now(guard.admit(ip("127.0.0.1")));
        let mut waiting: Vec<Queued> = (2..2 * QUEUED_PER_SLOT)
            .map(|_| queued(guard.admit(ip("127.0.0.2"))))
            .collect();
        assert!(
            guard.admit(ip("127.0.0.2")).is_none(),
            "over the queue's bound"
        );
        drop(first);
        assert!(
            guard.admit(ip("127.0.0.2")).is_none(),
            "a slot given back goes to those waiting, not to a newcomer"
        );
        let third = gets_a_slot(third).await.expect("a slot came back");
        assert!(gets_a_slot(fourth).await.is_none(), "one slot, one login");
        drop(third);
        waiting.truncate(1);
        let next = waiting.pop().expect("one left");
        assert!(gets_a_slot(next).await.is_some(), "the next in line");
    }

    #[tokio::test]
    async fn an_ipv6_host_is_one_address_per_64() {
        let guard = Arc::new(LoginGuard::new(1, STEP));
        let _slot = now(guard.admit(ip("2001:db8::1")));
        queued(guard.admit(ip("2001:db8::ffff:2")));
        now(guard.admit(ip("2001:db8:0:1::1")));
    }

    #[test]
    fn a_success_clears_the_failures_of_its_address_only() {
        let guard = Arc::new(LoginGuard::new(8, STEP));
        for _ in 0..5 {
            guard.failed(ip("10.0.0.1"));
            guard.failed(ip("10.0.0.2"));
        }
        now(guard.admit(ip("10.0.0.1"))).succeeded();
        assert_eq!(guard.failed(ip("10.0.0.1")).consecutive, 1);
        let other = guard.failed(ip("10.0.0.2"));
        assert_eq!((other.consecutive, other.delay), (6, STEP * 3));
    }

    #[test]
    fn failures_are_logged_once_per_interval_with_their_count() {
        let guard = LoginGuard::new(8, STEP);
        let logs: Vec<Option<u64>> = (0..4).map(|_| guard.failed(ip("10.0.0.1")).log).collect();
        assert_eq!(logs, [Some(1), None, None, None]);
        assert_eq!(guard.failed(ip("10.0.0.2")).log, Some(1), "per address");
    }

    #[test]
    fn addresses_are_forgotten_when_nothing_is_left_of_them() {
        let guard = Arc::new(LoginGuard::new(8, STEP));
        drop(guard.admit(ip("10.0.0.1")));
        assert!(guard.entries().is_empty(), "a login that ended");
        guard.failed(ip("10.0.0.1"));
        assert_eq!(guard.entries().len(), 1, "a failure is remembered");
        let mut entries = guard.entries();
        for n in 1..MAX_REMEMBERED as u32 {
            entries.insert(
                Source::V4(n.to_be_bytes()),
                Entry {
                    failures: 1,
                    last_failure: Some(Instant::now()),
                    ..Entry::default()
                },
            );
        }
        drop(entries);
        guard.failed(ip("192.168.0.1"));
        let entries = guard.entries();
        assert_eq!(entries.len(), MAX_REMEMBERED, "bounded");
        assert!(
            !entries.contains_key(&Source::from(ip("10.0.0.1"))),
            "the address whose last failure is oldest is forgotten first"
        );
    }
}
