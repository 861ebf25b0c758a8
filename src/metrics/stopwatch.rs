//! The clock statements are timed by for the latency histogram.

/// When a statement started, to time it for the latency histogram.
///
/// Not [`std::time::Instant`]: its `now` and `elapsed`, with the
/// conversion to microseconds, cost some 230 instructions a statement over
/// cache lines nothing else on the path touches (docs/benchmarks.md, step
/// 25). This reads the same monotonic clock, through libc, and subtracts
/// integers.
#[derive(Debug, Clone, Copy)]
pub struct Stopwatch(u64);

impl Stopwatch {
    pub fn start() -> Stopwatch {
        Stopwatch(monotonic_micros())
    }

    /// Microseconds since [`Stopwatch::start`].
    pub fn micros(self) -> u64 {
        monotonic_micros().saturating_sub(self.0)
    }
}

/// The monotonic clock (`CLOCK_MONOTONIC`, never negative), in microseconds.
fn monotonic_micros() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec for the call to fill, and
    // CLOCK_MONOTONIC exists on every Linux, so the call cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stopwatch_counts_the_microseconds_that_pass() {
        let stopwatch = Stopwatch::start();
        let instant = std::time::Instant::now();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let (micros, reference) = (stopwatch.micros(), instant.elapsed().as_micros() as u64);
        // The same clock as `Instant`, read a few nanoseconds apart.
        assert!(micros >= 20_000, "{micros} µs for a 20 ms sleep");
        assert!(
            micros.abs_diff(reference) <= 1_000,
            "{micros} µs, Instant says {reference}"
        );
    }
}
