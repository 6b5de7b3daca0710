//! A receiver's budget for the requests it holds at once: each is charged
//! its decoded size (wire bytes, index, and what a decode of its messages
//! costs) from when it is scanned until the pipeline has taken it. Inflating
//! inputs (compressed bodies, JSON, millions of tiny spans) are charged at
//! their inflated size, so a flood of them is refused before it is held.

use std::sync::Arc;

use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use pipeline::component::ConfigError;

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
    /// Larger than the whole budget: never admissible (413 / RESOURCE_EXHAUSTED).
    TooLarge(String),
    /// The budget is taken by other requests for now (503 / UNAVAILABLE).
    Busy(String),
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

    /// Takes `bytes` from the budget until the returned permit is dropped.
    pub fn charge(&self, bytes: u64) -> Result<OwnedSemaphorePermit, Refused> {
        if bytes > self.limit {
            return Err(Refused::TooLarge(format!(
                "request too large once decoded: {} MiB, over admission.request_limit_mib ({} MiB)",
                bytes >> 20,
                self.limit >> 20
            )));
        }
        let kib = bytes.div_ceil(1024).max(1) as u32;
        self.kib.clone().try_acquire_many_owned(kib).map_err(|_| {
            Refused::Busy(format!(
                "the receiver holds {} MiB of requests (admission.request_limit_mib); retry later",
                self.limit >> 20
            ))
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
        assert!(matches!(a.charge(600 << 10), Err(Refused::Busy(_))));
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
