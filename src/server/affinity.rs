//! Binding session threads to CPUs (`listen.pin_threads`).
//!
//! Pinned, session thread `i` runs only on the `i`-th CPU the process may
//! use when it starts (its affinity, as `taskset` or a container's cpuset
//! sets it), wrapping around when there are more threads than CPUs. A
//! thread that never moves never wakes on a CPU with cold caches: on the
//! benchmark machine a move cost about 10 µs of CPU, and an unpinned
//! session thread moved between none and one time a statement at one
//! client, depending on what else the machine ran (docs/benchmarks.md,
//! step 13). HAProxy's `cpu-map` and nginx's `worker_cpu_affinity` do the
//! same, and like them this is off by default: a sidecar pinned to the
//! first CPUs of a shared host would crowd onto the cores every other
//! sidecar pinned itself to.

use std::io;
use std::mem::size_of;
use std::os::unix::thread::JoinHandleExt;
use std::thread::JoinHandle;

/// The CPUs the calling thread may run on, in ascending order.
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    let mut set = empty_set();
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    if unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(members(&set))
}

/// The CPU session thread `index` is bound to, of `cpus` (ascending).
pub fn cpu_for(index: usize, cpus: &[usize]) -> Option<usize> {
    (!cpus.is_empty()).then(|| cpus[index % cpus.len()])
}

/// Binds a running thread to one CPU.
pub fn pin<T>(thread: &JoinHandle<T>, cpu: usize) -> io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut set = empty_set();
    // SAFETY: `cpu` is within the set, checked above.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: the thread has not been joined, so its pthread_t is valid;
    // `set` is a valid cpu_set_t of the size passed.
    let error = unsafe {
        libc::pthread_setaffinity_np(thread.as_pthread_t(), size_of::<libc::cpu_set_t>(), &set)
    };
    match error {
        0 => Ok(()),
        error => Err(io::Error::from_raw_os_error(error)),
    }
}

/// The CPUs a running thread may run on, in ascending order.
pub fn of<T>(thread: &JoinHandle<T>) -> io::Result<Vec<usize>> {
    let mut set = empty_set();
    // SAFETY: as in `pin`.
    let error = unsafe {
        libc::pthread_getaffinity_np(
            thread.as_pthread_t(),
            size_of::<libc::cpu_set_t>(),
            &mut set,
        )
    };
    match error {
        0 => Ok(members(&set)),
        error => Err(io::Error::from_raw_os_error(error)),
    }
}

fn empty_set() -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is a bit array; all zeroes is the empty set.
    unsafe { std::mem::zeroed() }
}

fn members(set: &libc::cpu_set_t) -> Vec<usize> {
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: every `cpu` is within the set.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, set) })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_take_the_allowed_cpus_in_turn() {
        let cpus = [2, 3, 6];
        let picks: Vec<_> = (0..5).map(|i| cpu_for(i, &cpus)).collect();
        assert_eq!(picks, [Some(2), Some(3), Some(6), Some(2), Some(3)]);
        assert_eq!(cpu_for(0, &[]), None);
    }

    #[test]
    fn a_pinned_thread_may_run_on_its_cpu_only() {
        let allowed = allowed_cpus().unwrap();
        assert!(!allowed.is_empty());
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let _ = stopped.recv();
        });
        assert_eq!(of(&thread).unwrap(), allowed, "a new thread inherits");
        let last = *allowed.last().unwrap();
        pin(&thread, last).unwrap();
        assert_eq!(of(&thread).unwrap(), [last]);
        assert!(pin(&thread, libc::CPU_SETSIZE as usize).is_err());
        drop(stop);
        thread.join().unwrap();
    }
}
