//! SIGINT/SIGTERM for the long-running commands: the first signal asks for a graceful stop
//! (finish and commit the units in flight), a second one exits at once (130); the next start
//! recovers, as after a crash.

use std::sync::atomic::{AtomicBool, Ordering};

/// Wait for signals until aborted: `on_first` on the first one, exit on the second.
pub async fn watch_signals(on_first: impl Fn()) {
    let seen = AtomicBool::new(false);
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    loop {
        #[cfg(unix)]
        let got = async {
            match term.as_mut() {
                Some(t) => tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = t.recv() => {} },
                None => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        };
        #[cfg(not(unix))]
        let got = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        got.await;
        if seen.swap(true, Ordering::SeqCst) {
            eprintln!("second signal: aborting; the next run recovers");
            std::process::exit(130);
        }
        eprintln!("signal received: finishing files in flight (signal again to abort)");
        on_first();
    }
}
