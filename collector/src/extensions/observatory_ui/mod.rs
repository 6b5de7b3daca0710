//! `observatory_ui` (ours): a live page of what flows where, served by the
//! collector from its own counters, at zPages' port. `/` is the page,
//! `/api/view` one JSON view, `/api/stream` the same as server-sent events
//! once a second. `observatory top` reads the same API.

mod history;
mod view;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::response::sse::{Event, Sse};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::Router;
use pipeline::component::{parse_config, ConfigError, Context, Validate};
use pipeline::telemetry::Registry;
use serde::Deserialize;
use tokio::task::JoinHandle;

use super::{ExtensionBuilder, ExtensionFactory, Host};
use crate::config::PipelinePlan;
use crate::receivers::{bind, Stop};
pub use history::History;

/// The page: plain HTML, CSS, JS and SVG, served from the binary.
const PAGE: &str = include_str!("page.html");

/// `observatory_ui` config.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ObservatoryUiConfig {
    /// `host:port` to serve on (zPages' default port).
    pub endpoint: String,
    /// A link to a trace viewer with `{trace_id}` where the id goes, for
    /// the top traces by cost (a Grafana Explore or Tempo URL).
    pub trace_link: Option<String>,
}

impl Default for ObservatoryUiConfig {
    fn default() -> Self {
        ObservatoryUiConfig {
            endpoint: "localhost:55679".into(),
            trace_link: None,
        }
    }
}

impl Validate for ObservatoryUiConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(l) = &self.trace_link {
            if !l.contains("{trace_id}") {
                return Err(ConfigError::new(
                    "trace_link",
                    "must contain {trace_id}, where the trace id goes",
                ));
            }
        }
        Ok(())
    }
}

/// The registry entry.
pub fn factory() -> ExtensionFactory {
    ExtensionFactory {
        type_name: "observatory_ui",
        parse: |v| Ok(Arc::new(parse_config::<ObservatoryUiConfig>(v)?)),
    }
}

/// What the handlers share.
struct State {
    reg: Arc<Registry>,
    history: History,
    pipelines: Arc<Vec<PipelinePlan>>,
    trace_link: Option<String>,
    started: Instant,
}

impl State {
    fn view(&self) -> serde_json::Value {
        let readings = self.history.readings();
        view::build(
            &view::Readings(&readings),
            &view::Extra {
                pipelines: &self.pipelines,
                notes: self.reg.notes(),
                tables: self.reg.tables(),
                trace_link: self.trace_link.as_deref(),
                uptime: self.started.elapsed().as_secs_f64(),
            },
        )
    }
}

#[async_trait]
impl ExtensionBuilder for ObservatoryUiConfig {
    async fn start(
        &self,
        ctx: &Context,
        host: &Host,
        stop: Stop,
    ) -> Result<Vec<JoinHandle<()>>, String> {
        let listener = bind(&self.endpoint).await?;
        let state = Arc::new(State {
            reg: ctx.metrics.clone(),
            history: History::default(),
            pipelines: host.pipelines.clone(),
            trace_link: self.trace_link.clone(),
            started: Instant::now(),
        });
        let snapshots = {
            let (state, stop) = (state.clone(), stop.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(history::EVERY);
                loop {
                    tokio::select! {
                        _ = tick.tick() => state.history.take(&state.reg, Instant::now()),
                        _ = stop.clone().wait() => return,
                    }
                }
            })
        };
        let (s1, s2, stop2) = (state.clone(), state.clone(), stop.clone());
        let router = Router::new()
            .route("/", get(|| async { Html(PAGE) }))
            .route("/api/view", get(move || async move { json(s1.view()) }))
            .route(
                "/api/stream",
                get(move || stream(s2.clone(), stop2.clone())),
            );
        tracing::info!(extension = %ctx.id, endpoint = %self.endpoint, "live page at http://{}/", self.endpoint);
        Ok(vec![
            snapshots,
            tokio::spawn(async move {
                let _ = axum::serve(listener, router)
                    .with_graceful_shutdown(stop.wait())
                    .await;
            }),
        ])
    }
}

/// A JSON response (axum's `json` feature would pull serde_urlencoded
/// and more for this one line).
fn json(v: serde_json::Value) -> impl IntoResponse {
    (
        [(http::header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
}

/// The view once a second as server-sent events, until the client goes
/// or the collector stops.
async fn stream(state: Arc<State>, stop: Stop) -> impl IntoResponse {
    let events = futures::stream::unfold((state, stop, true), |(state, stop, first)| async move {
        if !first {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.clone().wait() => return None,
            }
        }
        let event = Event::default().data(state.view().to_string());
        Some((Ok::<_, Infallible>(event), (state, stop, false)))
    });
    Sse::new(events)
}
