//! Legal holds (gel pour contentieux, enquête, audit): while a record is held it cannot be
//! eliminated, whatever its DUA and sort final say. Setting and lifting a hold are events in
//! the audit log (`archipel:hold`, `archipel:hold lift`); the log commits to the reason
//! without showing it, since the log is public and a reason may name a person or a case.

use crate::archive::Archive;
use crate::error::Result;
use crate::store::StoreError;
use archipel_proto::event::Outcome;

const MAX_REASON: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum HoldError {
    #[error("record {0} is already under a legal hold; lift it first to change the reason")]
    AlreadyHeld(String),
    #[error("record {0} is not under a legal hold")]
    NotHeld(String),
    #[error("reason: a legal hold needs one (--reason), at most {MAX_REASON} characters")]
    Reason,
    #[error("the hold on record {0} is stored damaged: {1}")]
    Damaged(String, String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub record_id: String,
    pub reason: String,
    /// RFC 3339 UTC.
    pub set_at: String,
}

fn aad(record_id: &str) -> Vec<u8> {
    format!("hold:{record_id}").into_bytes()
}

/// `set_at`, a newline, the reason.
fn encode(h: &Hold) -> Vec<u8> {
    format!("{}\n{}", h.set_at, h.reason).into_bytes()
}

impl Archive {
    fn open_hold(&self, record_id: &str, sealed: &[u8]) -> Result<Hold> {
        let plain = self
            .keys
            .open_index(sealed, &aad(record_id), "legal hold")?;
        let text = String::from_utf8(plain)
            .map_err(|_| HoldError::Damaged(record_id.to_string(), "not UTF-8".into()))?;
        let (set_at, reason) = text
            .split_once('\n')
            .ok_or_else(|| HoldError::Damaged(record_id.to_string(), "no date".into()))?;
        Ok(Hold {
            record_id: record_id.to_string(),
            reason: reason.to_string(),
            set_at: set_at.to_string(),
        })
    }

    /// Puts a record under a legal hold, logged.
    pub async fn hold_set(&self, record_id: &str, reason: &str) -> Result<Hold> {
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > MAX_REASON {
            return Err(HoldError::Reason.into());
        }
        let hold = Hold {
            record_id: record_id.to_string(),
            reason: reason.to_string(),
            set_at: crate::clock::now_rfc3339(),
        };
        let plain = encode(&hold);
        let sealed = self.keys.seal_index(&plain, &aad(record_id))?;
        let mut events = Vec::new();
        if self.log.enabled {
            events.push(self.log.event(
                "archipel:hold",
                record_id,
                "admin",
                Outcome::Success,
                self.keys.commitment(&plain),
            )?);
        }
        if !self.store.set_hold(record_id, sealed, events).await? {
            return Err(HoldError::AlreadyHeld(record_id.to_string()).into());
        }
        Ok(hold)
    }

    /// Lifts a record's legal hold, logged; returns the hold that was lifted.
    pub async fn hold_lift(&self, record_id: &str) -> Result<Hold> {
        let Some(sealed) = self.store.hold(record_id)? else {
            return Err(self.not_held(record_id));
        };
        let hold = self.open_hold(record_id, &sealed)?;
        let mut events = Vec::new();
        if self.log.enabled {
            events.push(self.log.event(
                "archipel:hold lift",
                record_id,
                "admin",
                Outcome::Success,
                self.keys.commitment(&encode(&hold)),
            )?);
        }
        match self.store.lift_hold(record_id, events).await? {
            Some(_) => Ok(hold),
            // Lifted by someone else in between.
            None => Err(self.not_held(record_id)),
        }
    }

    fn not_held(&self, record_id: &str) -> crate::error::Error {
        match self.store.envelope(record_id) {
            Ok(Some(_)) => HoldError::NotHeld(record_id.to_string()).into(),
            Ok(None) => StoreError::NotFound(record_id.to_string()).into(),
            Err(e) => e.into(),
        }
    }

    /// The hold on a record, if any.
    pub fn hold_of(&self, record_id: &str) -> Result<Option<Hold>> {
        self.store
            .hold(record_id)?
            .map(|s| self.open_hold(record_id, &s))
            .transpose()
    }

    pub fn holds(&self) -> Result<Vec<Hold>> {
        self.store
            .holds()?
            .into_iter()
            .map(|(id, s)| self.open_hold(&id, &s))
            .collect()
    }
}
