//! A receiver's budget for the requests it holds at once: each is charged
//! its decoded size (wire bytes, index, and what a decode of its messages
//! costs) from when it is scanned until the pipeline has taken it. Inflating
//! inputs (compressed bodies, JSON, millions of tiny spans) are charged at
//! their inflated size, so a flood of them is refused before it is held.

use std::sync::Arc;

use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use bytes::Bytes;
use pipeline::batch::DecodeError;
use pipeline::component::ConfigError;
use pipeline::{Batch, Request, Signal};

/// `admission` (ours; otelcol-contrib's `otelarrow` receiver has the same
/// idea under the same name).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AdmissionConfig {
    /// Decoded size of the requests the receiver holds at once, in MiB; also
    /// the most one request may take.
    pub request_limit_mib: u64,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            request_limit_mib: 128,
        }
    }
}

impl AdmissionConfig {
    /// Checks the limit.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.request_limit_mib == 0 || self.request_limit_mib > 1 << 20 {
            return Err(ConfigError::new(
                "admission.request_limit_mib",
                "must be from 1 to 1048576",
            ));
        }
        Ok(())
    }
}

/// Why a request was not admitted.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Malformed (400 / INVALID_ARGUMENT).
    Invalid(String),
    /// Larger than the whole budget: never admissible (413 / RESOURCE_EXHAUSTED).
    TooLarge(String),
    /// The budget is taken by other requests for now (503 / UNAVAILABLE);
    /// `items` were in the request.
    Busy {
        /// What to tell the client.
        message: String,
        /// Items in the refused request.
        items: usize,
    },
}

/// The shared budget, counted in KiB.
#[derive(Clone)]
pub struct Admission {
    kib: Arc<Semaphore>,
    limit: u64,
}

impl Admission {
    /// A budget of `cfg.request_limit_mib`.
    pub fn new(cfg: &AdmissionConfig) -> Admission {
        let limit = cfg.request_limit_mib << 20;
        Admission {
            kib: Arc::new(Semaphore::new((limit >> 10) as usize)),
            limit,
        }
    }

    /// The most one request may cost decoded, in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Validates and indexes an encoded request within the per-request
    /// limit, then charges its decoded size; the charge is held until the
    /// returned permit is dropped (once the pipeline has the request).
    pub fn admit(
        &self,
        signal: Signal,
        bytes: Bytes,
    ) -> Result<(Batch, OwnedSemaphorePermit), Refused> {
        let request = Request::parse_within(signal, bytes, self.limit).map_err(|e| match e {
            DecodeError::TooLarge { .. } => Refused::TooLarge(e.to_string()),
            e => Refused::Invalid(e.to_string()),
        })?;
        let items = request.items;
        let permit = self.charge(request.decoded_bytes()).map_err(|r| match r {
            Refused::Busy { message, .. } => Refused::Busy { message, items },
            other => other,
        })?;
        Ok((Batch::new(signal, request), permit))
    }

    /// Takes `bytes` from the budget until the returned permit is dropped.
    fn charge(&self, bytes: u64) -> Result<OwnedSemaphorePermit, Refused> {
        if bytes > self.limit {
            return Err(Refused::TooLarge(format!(
                "request too large once decoded: {} MiB, over admission.request_limit_mib ({} MiB)",
                bytes >> 20,
                self.limit >> 20
            )));
        }
        let kib = bytes.div_ceil(1024).max(1) as u32;
        self.kib
            .clone()
            .try_acquire_many_owned(kib)
            .map_err(|_| Refused::Busy {
                message: format!(
                    "the receiver holds {} MiB of requests (admission.request_limit_mib); retry later",
                    self.limit >> 20
                ),
                items: 0,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_until_dropped_and_refuses_what_can_never_fit() {
        let a = Admission::new(&AdmissionConfig {
            request_limit_mib: 1,
        });
        let first = a.charge(600 << 10).unwrap();
        assert!(matches!(a.charge(600 << 10), Err(Refused::Busy { .. })));
        drop(first);
        let _again = a.charge(600 << 10).unwrap();
        let Err(Refused::TooLarge(m)) = a.charge(2 << 20) else {
            panic!()
        };
        assert!(
            m.contains("over admission.request_limit_mib (1 MiB)"),
            "{m}"
        );
    }
}
