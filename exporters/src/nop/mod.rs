//! `nop`: takes everything and sends it nowhere (for benchmarks and tests).

use std::sync::Arc;

use async_trait::async_trait;
use pipeline::component::{parse_config, ConfigError, Context, Validate};
use pipeline::{Batch, BoxConsumer, ConsumeError, Consumer, Signal};
use serde::Deserialize;

use crate::engine::ExporterMetrics;
use crate::{ExporterBuilder, ExporterFactory};

/// `nop` has no settings.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NopConfig {}

impl Validate for NopConfig {}

/// The registry entry.
pub fn factory() -> ExporterFactory {
    ExporterFactory {
        type_name: "nop",
        signals: &Signal::ALL,
        parse: |v| Ok(Arc::new(parse_config::<NopConfig>(v)?)),
    }
}

impl ExporterBuilder for NopConfig {
    fn build(&self, ctx: &Context) -> Result<BoxConsumer, ConfigError> {
        Ok(Arc::new(Nop(ExporterMetrics::new(&ctx.metrics, &ctx.id))))
    }
}

struct Nop(ExporterMetrics);

#[async_trait]
impl Consumer for Nop {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        self.0.sent(batch.signal, batch.items());
        Ok(())
    }
}
