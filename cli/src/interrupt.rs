//! Ctrl-C and `kill`: SIGINT, SIGTERM and SIGHUP cancel what kiln is running instead of killing
//! kiln outright, so a RUN's process tree is killed, its mounts are taken down and nothing is
//! tagged before kiln exits. A second signal exits at once (status 130), for a step that does
//! not notice cancellation soon enough.

use kiln_builder::exec::Canceller;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// The exit status after an interrupt (128 + SIGINT, as shells report it).
pub const INTERRUPTED: u8 = 130;

/// From now on, the first SIGINT/SIGTERM/SIGHUP cancels `canceller`; the second exits.
pub fn cancel_on_signals(canceller: &Canceller) -> anyhow::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    let canceller = canceller.clone();
    std::thread::Builder::new()
        .name("signals".to_owned())
        .spawn(move || {
            let mut seen = 0;
            for _ in signals.forever() {
                seen += 1;
                if seen > 1 {
                    std::process::exit(i32::from(INTERRUPTED));
                }
                canceller.cancel();
            }
        })?;
    Ok(())
}
