//! Ctrl-C and `kill`: SIGINT, SIGTERM and SIGHUP cancel what kiln is running instead of killing
//! kiln outright, so a RUN's process tree is killed, its mounts are taken down and nothing is
//! tagged before kiln exits with 128 + the signal's number, as a shell reports it. A second
//! signal exits at once, for a step that does not notice cancellation soon enough.

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use kiln_builder::exec::Canceller;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

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

/// From now on, the first SIGINT/SIGTERM/SIGHUP cancels `canceller`; the second exits.
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
                    std::process::exit(128 + signal);
                }
                canceller.cancel();
            }
        })?;
    Ok(interrupts)
}
