//! `health_check`: 200 while every pipeline runs, 503 while starting or
//! shutting down, at `endpoint` + `path` (otelcol's defaults).

use std::sync::Arc;

use async_trait::async_trait;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use pipeline::component::{parse_config, ConfigError, Context, Validate};
use serde::Deserialize;
use tokio::task::JoinHandle;

use super::{ExtensionBuilder, ExtensionFactory, Host};
use crate::receivers::{bind, Stop};

/// `health_check` config.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheckConfig {
    /// `host:port` to serve on.
    pub endpoint: String,
    /// Path of the check.
    pub path: String,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        HealthCheckConfig {
            endpoint: "localhost:13133".into(),
            path: "/".into(),
        }
    }
}

impl Validate for HealthCheckConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if !self.path.starts_with('/') {
            return Err(ConfigError::new("path", "must start with /"));
        }
        Ok(())
    }
}

/// The registry entry.
pub fn factory() -> ExtensionFactory {
    ExtensionFactory {
        type_name: "health_check",
        parse: |v| Ok(Arc::new(parse_config::<HealthCheckConfig>(v)?)),
    }
}

#[async_trait]
impl ExtensionBuilder for HealthCheckConfig {
    async fn start(
        &self,
        ctx: &Context,
        host: &Host,
        stop: Stop,
    ) -> Result<Vec<JoinHandle<()>>, String> {
        let listener = bind(&self.endpoint).await?;
        let health = host.health.clone();
        let router = Router::new().route(
            &self.path,
            get(move || {
                let ready = health.ready();
                async move {
                    if ready {
                        (StatusCode::OK, r#"{"status":"Server available"}"#)
                    } else {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            r#"{"status":"Server not available"}"#,
                        )
                    }
                }
            }),
        );
        tracing::info!(extension = %ctx.id, endpoint = %self.endpoint, "health check listening");
        Ok(vec![tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(stop.wait())
                .await;
        })])
    }
}
