//! Ctrl-C and `kill`: SIGINT, SIGTERM and SIGHUP cancel what kiln is running instead of killing
//! kiln outright, so a RUN's process tree is killed, its mounts are taken down and nothing is
//! tagged before kiln exits with 128 + the signal's number, as a shell reports it.
//!
//! Cancellation always ends the process: a step blocked where it cannot notice (a download
//! from a server that never answers, a read that never returns) is abandoned after [`GRACE`],
//! or at once on a second signal. Abandoning kills the RUN process trees again, detaches every
//! overlay still mounted and exits; what a writer had half-written is in the store's `tmp/`,
//! which no reader trusts and the next command's cleanup removes. CI systems and Kubernetes
//! send one SIGTERM and expect the process to go.

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use kiln_builder::exec::Canceller;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// How long cancelled steps get to wind down before kiln exits without them.
const GRACE: Duration = Duration::from_secs(5);

/// Which stop signal came, once one has.
#[derive(Debug, Clone, Default)]
pub struct Interrupts {
    caught: Arc<AtomicI32>,
}

impl Interrupts {
    /// The signal that cancelled the work, if one did.
    pub fn caught(&self) -> Option<i32> {
        match self.caught.load(Ordering::SeqCst) {
            0 => None,
            signal => Some(signal),
        }
    }

    /// The exit status for an interrupted command: 128 + the signal (130 for Ctrl-C).
    pub fn exit_code(&self) -> u8 {
        let signal = self.caught().unwrap_or(SIGINT);
        u8::try_from(128 + signal).unwrap_or(u8::MAX)
    }
}

/// From now on, the first SIGINT/SIGTERM/SIGHUP cancels `canceller`, and kiln exits [`GRACE`]
/// later if it has not by then; a second signal exits at once.
pub fn cancel_on_signals(canceller: &Canceller) -> anyhow::Result<Interrupts> {
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    let canceller = canceller.clone();
    let interrupts = Interrupts::default();
    let caught = interrupts.caught.clone();
    std::thread::Builder::new()
        .name("signals".to_owned())
        .spawn(move || {
            for signal in signals.forever() {
                if caught.swap(signal, Ordering::SeqCst) != 0 {
                    abandon(&canceller, signal);
                }
                canceller.cancel();
                let canceller = canceller.clone();
                // If the grace thread cannot start, the next signal still exits.
                let _ = std::thread::Builder::new()
                    .name("grace".to_owned())
                    .spawn(move || {
                        std::thread::sleep(GRACE);
                        abandon(&canceller, signal);
                    });
            }
        })?;
    Ok(interrupts)
}

/// Exits now, with whatever is still running: process trees killed, overlays detached.
fn abandon(canceller: &Canceller, signal: i32) -> ! {
    canceller.cancel();
    kiln_builder::snapshot::detach_all();
    std::process::exit(128 + signal);
}
