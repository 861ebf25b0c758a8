//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test binary uses a different subset

use std::sync::{Arc, Mutex, Once};

use rwsplit::sandbox::{Sandbox, SandboxOptions};

/// The sandbox shared by the tests of one test binary that only read or that
/// write to their own tables. Started on first use; stopped when the test
/// process exits (an `atexit` hook drops it; if the process is killed, the
/// kernel kills the servers, see `sandbox::process`). Tests that break
/// servers must start their own with [`start_sandbox`].
pub fn shared_sandbox() -> Arc<Sandbox> {
    static SHARED: Mutex<Option<Arc<Sandbox>>> = Mutex::new(None);
    static STOP_AT_EXIT: Once = Once::new();

    extern "C" fn stop_shared() {
        if let Ok(mut shared) = SHARED.lock() {
            shared.take();
        }
    }

    let mut shared = SHARED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(sandbox) = shared.as_ref() {
        return sandbox.clone();
    }
    let sandbox = Arc::new(start_sandbox(SandboxOptions::default()));
    STOP_AT_EXIT.call_once(|| {
        // SAFETY: registering a plain extern "C" function has no preconditions.
        unsafe { libc::atexit(stop_shared) };
    });
    *shared = Some(sandbox.clone());
    sandbox
}

/// Starts a sandbox of its own, from any context (sync or inside a test's
/// runtime), on a runtime that lives only for the start-up.
pub fn start_sandbox(options: SandboxOptions) -> Sandbox {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime for sandbox start-up")
            .block_on(Sandbox::start(options))
    })
    .join()
    .expect("sandbox start-up thread panicked")
    .unwrap_or_else(|e| panic!("sandbox did not start: {e}"))
}
