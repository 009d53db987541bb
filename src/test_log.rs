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
