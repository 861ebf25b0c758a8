//! Timeouts on runtimes with or without a timer driver of their own.
//!
//! Session threads run runtimes without a timer driver. A tokio timer
//! driver reads the clock and looks through its wheel every time its thread
//! goes to sleep and wakes — twice a statement on a session thread, about
//! 850 instructions of the 8,500 rwsplit spends on a point select
//! (callgrind, docs/benchmarks.md step 12) — while a session arms a timer
//! only to log a client in, to delay the answer to a wrong password, to
//! wait for the rest of a packet a client started, and to connect to a
//! backend. Those few timers are kept by the
//! main runtime's driver instead: a tokio timer belongs to the runtime it
//! is created in and may be awaited from any thread.
//!
//! Code that may run on a session thread arms its timers with [`timeout`]
//! and [`sleep`], never `tokio::time` directly (which panics there).

use std::cell::OnceCell;
use std::future::IntoFuture;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::time::{Sleep, Timeout};

thread_local! {
    /// The runtime that keeps this thread's timers, when the thread's own
    /// runtime has no timer driver.
    static KEEPER: OnceCell<Handle> = const { OnceCell::new() };
}

/// From now on, timers armed on the calling thread are kept by `keeper`'s
/// timer driver. Called once, by a thread about to run a runtime built
/// without one; a second call changes nothing. The keeper must outlive
/// the thread's tasks: a timer whose driver has shut down panics when
/// polled (the listener joins its session threads before it returns).
pub fn keep_timers_on(keeper: Handle) {
    KEEPER.with(|cell| {
        let _ = cell.set(keeper);
    });
}

/// [`tokio::time::timeout`], armed on the timer driver of this thread:
/// its keeper's if it has one, else its own runtime's.
#[expect(
    clippy::disallowed_methods,
    reason = "the one place tokio's timeout is called"
)]
pub fn timeout<F: IntoFuture>(duration: Duration, future: F) -> Timeout<F::IntoFuture> {
    on_keeper(|| tokio::time::timeout(duration, future))
}

/// [`tokio::time::sleep`], armed as [`timeout`] is.
pub fn sleep(duration: Duration) -> Sleep {
    on_keeper(|| tokio::time::sleep(duration))
}

/// Runs `arm` in the context of this thread's keeper, if it has one.
fn on_keeper<T>(arm: impl FnOnce() -> T) -> T {
    KEEPER.with(|keeper| match keeper.get() {
        Some(keeper) => {
            let _entered = keeper.enter();
            arm()
        }
        None => arm(),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    /// A thread whose runtime has no timer driver arms a timeout on its
    /// keeper, and the timeout fires there.
    #[test]
    fn a_thread_without_a_timer_driver_times_out_on_its_keeper() {
        let keeper = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_time()
            .build()
            .expect("keeper runtime");
        let handle = keeper.handle().clone();
        let outcome = std::thread::spawn(move || {
            let timerless = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
                .expect("runtime without timers");
            super::keep_timers_on(handle);
            timerless.block_on(async {
                let never = std::future::pending::<()>();
                let ready = std::future::ready(7);
                (
                    super::timeout(Duration::from_millis(20), never).await,
                    super::timeout(Duration::from_secs(60), ready).await,
                )
            })
        })
        .join()
        .expect("the thread without timers ran");
        assert!(outcome.0.is_err(), "the pending future timed out");
        assert_eq!(outcome.1.ok(), Some(7), "the ready future finished in time");
    }
}
