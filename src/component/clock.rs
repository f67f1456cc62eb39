//! The wall clock. Only the shell reads it; the core is handed the time.

use crate::store::Millis;

/// Milliseconds since the Unix epoch (0 on a clock set before it).
pub fn now_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}
