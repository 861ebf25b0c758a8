//! A server child process that cannot outlive rwsplit.
//!
//! Children are stopped by PID when dropped. As a second line of defence they
//! are started with `PR_SET_PDEATHSIG(SIGKILL)`, so the kernel kills them if
//! this process dies without running destructors (SIGKILL, abort). The kernel
//! sends that signal when the *thread* that forked exits, so every child is
//! forked from one dedicated thread that lives as long as the process.
//! Children get their own process group: a Ctrl-C in the terminal reaches
//! rwsplit, which then stops them in order, instead of reaching them directly.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// A running child process, stopped (SIGTERM, then SIGKILL) when dropped.
#[derive(Debug)]
pub struct ChildProcess {
    child: Child,
    /// How long a SIGTERM may take before SIGKILL follows.
    grace: Duration,
}

impl ChildProcess {
    /// Starts `command` from the spawner thread.
    pub fn spawn(mut command: Command, grace: Duration) -> io::Result<ChildProcess> {
        let parent = std::process::id();
        command.process_group(0);
        // SAFETY: the closure runs between fork and exec and only calls
        // async-signal-safe functions (prctl, getppid).
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The parent may have died before prctl took effect.
                if libc::getppid() as u32 != parent {
                    return Err(io::Error::other("parent exited during spawn"));
                }
                Ok(())
            });
        }
        let (reply, answer) = mpsc::channel();
        spawner()
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .send((command, reply))
            .map_err(|_| io::Error::other("spawner thread is gone"))?;
        let child = answer
            .recv()
            .map_err(|_| io::Error::other("spawner thread did not answer"))??;
        Ok(ChildProcess { child, grace })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: libc::c_int) -> io::Result<()> {
        send_signal(self.pid(), signal)
    }

    /// `Some(status)` once the process has exited.
    pub fn try_wait(&mut self) -> io::Result<Option<std::process::ExitStatus>> {
        self.child.try_wait()
    }

    /// Stops the process: SIGCONT (in case it was stopped), SIGTERM, then
    /// SIGKILL once the grace period is over. Waits until it is gone.
    pub fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        // Errors here mean the process is already gone, which is the goal.
        let _ = self.signal(libc::SIGCONT);
        let _ = self.signal(libc::SIGTERM);
        let deadline = Instant::now() + self.grace;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_)) | Err(_)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sends a signal to a process by PID.
pub fn send_signal(pid: u32, signal: libc::c_int) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::other("pid out of range"))?;
    // SAFETY: kill(2) has no memory-safety preconditions.
    if unsafe { libc::kill(pid, signal) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether a process with this PID exists (and is not a zombie we reaped).
pub fn is_alive(pid: u32) -> bool {
    send_signal(pid, 0).is_ok()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            stat.rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z'))
        })
}

fn spawner() -> &'static Mutex<mpsc::Sender<SpawnRequest>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (requests, incoming) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("rwsplit-spawner".into())
            .spawn(move || {
                for (mut command, reply) in incoming {
                    // The requester blocks until it gets this answer, so the
                    // send cannot fail while a child is left unowned.
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("cannot start the spawner thread");
        Mutex::new(requests)
    })
}
