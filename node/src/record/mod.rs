//! Records: their metadata, its validation, and communicability.

mod communicability;
mod metadata;

pub use communicability::{Category, Communicability, communicability};
pub use metadata::{DEFAULT_LICENCE, MAX_METADATA_BYTES, to_proto, validate};

/// Metadata that breaks a rule; the message names the field and the rule.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {rule}")]
pub struct ValidationError {
    pub field: &'static str,
    pub rule: String,
}

impl ValidationError {
    pub fn new(field: &'static str, rule: impl Into<String>) -> Self {
        ValidationError {
            field,
            rule: rule.into(),
        }
    }
}
