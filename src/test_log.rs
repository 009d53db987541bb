//! What unit tests read of the log: the events at WARN and above.

use std::sync::{Arc, Mutex};

use tracing::subscriber::DefaultGuard;

/// Captures what is logged at WARN and above on this thread while it lives.
pub(crate) struct Warnings {
    captured: Captured,
    _guard: DefaultGuard,
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Warnings {
    pub(crate) fn capture() -> Self {
        // tracing caches each callsite's interest process-wide, and a test
        // thread with no subscriber that reaches a callsite first can cache
        // "never" (tracing-core 0.1's single-dispatcher shortcut asks the
        // registering thread's default): the capture then misses that event.
        // A global subscriber that takes everything (and keeps nothing) means
        // no thread ever answers "never".
        static GLOBAL: std::sync::Once = std::sync::Once::new();
        GLOBAL.call_once(|| {
            let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry());
        });
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        Warnings {
            captured,
            _guard: tracing::subscriber::set_default(subscriber),
        }
    }

    /// Everything captured so far, as text.
    pub(crate) fn text(&self) -> String {
        String::from_utf8(self.captured.0.lock().unwrap().clone()).unwrap()
    }
}
