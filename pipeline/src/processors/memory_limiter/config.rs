//! `memory_limiter` config: otelcol's keys, defaults and checks.

use std::time::Duration;

use serde::Deserialize;

use crate::component::{ConfigError, Validate};

/// Refuses new data while the process uses more memory than the soft limit.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryLimiterConfig {
    /// How often memory is measured; required (otelcol has no default).
    #[serde(with = "crate::duration")]
    pub check_interval: Duration,
    /// Hard limit in MiB.
    pub limit_mib: u64,
    /// Headroom below the hard limit, in MiB; default 20% of `limit_mib`.
    pub spike_limit_mib: u64,
    /// Hard limit as a percentage of the machine's (or cgroup's) memory.
    pub limit_percentage: u64,
    /// Headroom as a percentage of the machine's (or cgroup's) memory.
    pub spike_limit_percentage: u64,
}

impl Validate for MemoryLimiterConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.check_interval.is_zero() {
            return Err(ConfigError::new(
                "check_interval",
                "must be greater than zero (e.g. 1s)",
            ));
        }
        if self.limit_mib == 0 && self.limit_percentage == 0 {
            return Err(ConfigError::new(
                "limit_mib",
                "set limit_mib or limit_percentage",
            ));
        }
        if self.limit_mib > 0 && self.spike_limit_mib >= self.limit_mib {
            return Err(ConfigError::new(
                "spike_limit_mib",
                "must be smaller than limit_mib",
            ));
        }
        if self.limit_mib == 0 {
            if self.limit_percentage > 100 {
                return Err(ConfigError::new("limit_percentage", "must be at most 100"));
            }
            if self.spike_limit_percentage >= self.limit_percentage {
                return Err(ConfigError::new(
                    "spike_limit_percentage",
                    "must be smaller than limit_percentage",
                ));
            }
        }
        Ok(())
    }
}

impl MemoryLimiterConfig {
    /// (hard, soft) limits in bytes; `total` is the memory percentages refer to.
    pub fn limits(&self, total: u64) -> (u64, u64) {
        const MIB: u64 = 1 << 20;
        if self.limit_mib > 0 {
            let hard = self.limit_mib * MIB;
            let spike = if self.spike_limit_mib > 0 {
                self.spike_limit_mib * MIB
            } else {
                hard / 5
            };
            (hard, hard - spike)
        } else {
            let hard = total / 100 * self.limit_percentage;
            (hard, hard - total / 100 * self.spike_limit_percentage)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::component::parse_config;

    fn parse(yaml: &str) -> Result<MemoryLimiterConfig, ConfigError> {
        parse_config(serde_yaml::from_str(yaml).unwrap())
    }

    #[test]
    fn documented_examples_parse_and_limits_follow_otelcol() {
        let c = parse("check_interval: 1s\nlimit_mib: 4000\nspike_limit_mib: 800\n").unwrap();
        assert_eq!(c.limits(0), (4000 << 20, 3200 << 20));
        let c = parse("check_interval: 1s\nlimit_mib: 1000\n").unwrap();
        assert_eq!(
            c.limits(0),
            (1000 << 20, 800 << 20),
            "spike defaults to 20%"
        );
        let c = parse("check_interval: 5s\nlimit_percentage: 80\nspike_limit_percentage: 25\n")
            .unwrap();
        assert_eq!(c.limits(1000 << 20), (800 << 20, 550 << 20));
    }

    #[test]
    fn invalid_settings_are_named() {
        assert_eq!(parse("limit_mib: 10").unwrap_err().path, "check_interval");
        assert_eq!(parse("check_interval: 1s").unwrap_err().path, "limit_mib");
        assert_eq!(
            parse("check_interval: 1s\nlimit_mib: 10\nspike_limit_mib: 10")
                .unwrap_err()
                .path,
            "spike_limit_mib"
        );
        assert_eq!(
            parse("check_interval: 1s\nlimit_percentage: 50\nspike_limit_percentage: 60")
                .unwrap_err()
                .path,
            "spike_limit_percentage"
        );
        assert!(
            parse("check_interval: 1s\nlimit_mib: 10\nmin_gc_interval_when_soft_limited: 10s")
                .unwrap_err()
                .message
                .contains("unknown field")
        );
    }
}
