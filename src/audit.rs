//! Audit events: who created, revoked or purged which token, who was denied,
//! and which validations failed. Events carry token ids, never tokens.

use std::fmt::{self, Debug};
use std::sync::{Arc, Mutex, PoisonError};

use crate::urn::Urn;

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuditEventKind {
    /// A token was created (`token_id` is the new token's id).
    Created,
    /// A token was revoked.
    Revoked,
    /// A token was rotated: `token_id` is the old token's id, now deleted.
    Rotated {
        /// The id of the token that replaced it.
        new_token_id: String,
    },
    /// An expired token was deleted by a purge or on validation.
    Purged,
    /// The caller was refused `operation` for lack of privilege.
    Denied {
        /// DataHub's name of the operation, e.g. `revokeAccessToken`.
        operation: &'static str,
    },
    /// A presented token failed validation.
    ValidationFailed {
        /// Why, as the error message says it.
        reason: String,
    },
}

/// One audit event. Non-exhaustive, so fields can be added; build one with
/// [`AuditEvent::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditEvent {
    /// What happened.
    pub kind: AuditEventKind,
    /// Who asked; `None` for validation and system jobs such as purges.
    pub caller: Option<Urn>,
    /// The token concerned, by id; `None` when unknown (e.g. a forged token).
    pub token_id: Option<String>,
    /// When, in ms since the epoch.
    pub at_ms: i64,
}

impl AuditEvent {
    /// An event with these fields.
    pub fn new(kind: AuditEventKind, caller: Option<Urn>, token_id: Option<String>, at_ms: i64) -> Self {
        AuditEvent {
            kind,
            caller,
            token_id,
            at_ms,
        }
    }

    /// DataHub-style name of the event kind, e.g. `VALIDATION_FAILED`.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            AuditEventKind::Created => "CREATED",
            AuditEventKind::Revoked => "REVOKED",
            AuditEventKind::Rotated { .. } => "ROTATED",
            AuditEventKind::Purged => "PURGED",
            AuditEventKind::Denied { .. } => "DENIED",
            AuditEventKind::ValidationFailed { .. } => "VALIDATION_FAILED",
        }
    }
}

/// Receives audit events. Called inline by the service, so it must be quick
/// and must not fail the operation: a sink that writes somewhere slow should
/// hand events to a background task.
pub trait AuditSink: Debug + Send + Sync + 'static {
    /// Records one event.
    fn record(&self, event: AuditEvent);
}

impl<T: AuditSink + ?Sized> AuditSink for Arc<T> {
    fn record(&self, event: AuditEvent) {
        (**self).record(event)
    }
}

/// The default sink: one `tracing` event per audit event, with target
/// `datahub_access_tokens::audit` (denials and failed validations at WARN,
/// the rest at INFO).
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingAuditSink;

impl AuditSink for TracingAuditSink {
    fn record(&self, event: AuditEvent) {
        let kind = event.kind_name();
        let caller = event.caller.as_ref().map(Urn::as_str);
        let token_id = event.token_id.as_deref();
        match &event.kind {
            AuditEventKind::Denied { operation } => tracing::warn!(
                target: "datahub_access_tokens::audit",
                kind, caller, token_id, at_ms = event.at_ms, operation, "access token operation denied"
            ),
            AuditEventKind::ValidationFailed { reason } => tracing::warn!(
                target: "datahub_access_tokens::audit",
                kind, token_id, at_ms = event.at_ms, reason = reason.as_str(), "access token validation failed"
            ),
            AuditEventKind::Rotated { new_token_id } => tracing::info!(
                target: "datahub_access_tokens::audit",
                kind, caller, token_id, at_ms = event.at_ms, new_token_id = new_token_id.as_str(),
                "access token rotated"
            ),
            _ => tracing::info!(
                target: "datahub_access_tokens::audit",
                kind, caller, token_id, at_ms = event.at_ms, "access token event"
            ),
        }
    }
}

/// A sink that keeps every event in memory: for tests, and for services
/// that read events back themselves. Clones share the same events.
#[derive(Clone, Default)]
pub struct RecordingAuditSink {
    events: Arc<Mutex<Vec<AuditEvent>>>,
}

impl RecordingAuditSink {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// The events so far, oldest first.
    pub fn events(&self) -> Vec<AuditEvent> {
        self.events.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl Debug for RecordingAuditSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.events.lock().unwrap_or_else(PoisonError::into_inner).len();
        f.debug_struct("RecordingAuditSink")
            .field("events", &count)
            .finish()
    }
}

impl AuditSink for RecordingAuditSink {
    fn record(&self, event: AuditEvent) {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(event);
    }
}
