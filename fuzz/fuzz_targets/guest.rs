//! Shared by the guest-output targets. The host decodes guest IPC inside `catch_unwind` (a panic
//! in the Arrow decoder on hostile bytes becomes an error), so a panic only counts as a crash
//! when it escapes the host's code: libfuzzer-sys's panic hook, which aborts on any panic, is
//! replaced by one that remembers the message, printed when a panic does escape.

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;

thread_local! {
    static LAST: RefCell<String> = const { RefCell::new(String::new()) };
}

pub fn run(f: impl FnOnce()) {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| std::panic::set_hook(Box::new(|info| LAST.with(|l| *l.borrow_mut() = info.to_string()))));
    if catch_unwind(AssertUnwindSafe(f)).is_err() {
        LAST.with(|l| eprintln!("panic escaped the host's checks: {}", l.borrow()));
        std::process::abort();
    }
}
