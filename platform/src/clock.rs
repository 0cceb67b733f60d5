//! The time as the platform sees it. `AIHUB_FAKE_NOW` (RFC 3339) pins it, so tests and demos
//! can cross month boundaries without waiting; production leaves it unset.

use chrono::{DateTime, Utc};

#[derive(Debug, Clone, Copy, Default)]
pub struct Clock {
    fixed: Option<DateTime<Utc>>,
}

impl Clock {
    pub fn system() -> Self {
        Self { fixed: None }
    }

    pub fn fixed(at: DateTime<Utc>) -> Self {
        Self { fixed: Some(at) }
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.fixed.unwrap_or_else(Utc::now)
    }
}
