//! Parses each component through its factory and checks the pipeline graph:
//! ids, signals, undefined references, empty pipelines, unused components.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use exporters::ExporterBuilder;
use pipeline::component::{ConfigError, ProcessorBuilder};
use pipeline::Signal;
use serde_yaml::Mapping;

use super::{RawConfig, TelemetryConfig};
use crate::extensions::ExtensionBuilder;
use crate::receivers::ReceiverBuilder;
use crate::registry::Registry;

/// One pipeline, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelinePlan {
    /// Pipeline id (`traces/llm`).
    pub id: String,
    /// Its signal.
    pub signal: Signal,
    /// Receiver ids.
    pub receivers: Vec<String>,
    /// Processor ids, in order.
    pub processors: Vec<String>,
    /// Exporter ids.
    pub exporters: Vec<String>,
}

/// A config that passed every check, ready to build.
pub struct Checked {
    /// Receivers by id (only those some pipeline uses).
    pub receivers: BTreeMap<String, Arc<dyn ReceiverBuilder>>,
    /// Processors by id.
    pub processors: BTreeMap<String, Arc<dyn ProcessorBuilder>>,
    /// Exporters by id (only those some pipeline uses).
    pub exporters: BTreeMap<String, Arc<dyn ExporterBuilder>>,
    /// Extensions listed in `service.extensions`, in order.
    pub extensions: Vec<(String, Arc<dyn ExtensionBuilder>)>,
    /// Pipelines in id order.
    pub pipelines: Vec<PipelinePlan>,
    /// Self-telemetry settings.
    pub telemetry: TelemetryConfig,
    /// Things worth a warning (unused components).
    pub warnings: Vec<String>,
}

/// Splits `type/name` into its type, checking the id's form.
pub fn component_type<'a>(section: &str, id: &'a str) -> Result<&'a str, ConfigError> {
    let (ty, name) = match id.split_once('/') {
        Some((t, n)) => (t, Some(n)),
        None => (id, None),
    };
    let ok_type = !ty.is_empty() && ty.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok_type || name.is_some_and(|n| n.is_empty() || n.contains('/')) {
        return Err(ConfigError::new(
            format!("{section}.{id}"),
            "invalid component id: use `type` or `type/name`",
        ));
    }
    Ok(ty)
}

/// Parses every component of one section through the factory its type
/// names; returns each id with its parsed config and its factory.
fn parse_section<'r, F, B>(
    section: &str,
    m: &Mapping,
    factories: &'r [F],
    type_name: fn(&F) -> &'static str,
    parse: fn(&F, serde_yaml::Value) -> Result<B, ConfigError>,
) -> Result<BTreeMap<String, (B, &'r F)>, ConfigError> {
    let mut out = BTreeMap::new();
    for (k, v) in m {
        let id = k
            .as_str()
            .ok_or_else(|| ConfigError::new(section, "component ids must be strings"))?;
        let ty = component_type(section, id)?;
        let f = factories
            .iter()
            .find(|f| type_name(f) == ty)
            .ok_or_else(|| {
                let known: Vec<&str> = factories.iter().map(type_name).collect();
                ConfigError::new(
                    format!("{section}.{id}"),
                    format!("unknown type {ty:?}; known {section}: {}", known.join(", ")),
                )
            })?;
        let built = parse(f, v.clone()).map_err(|e| e.under(&format!("{section}.{id}")))?;
        out.insert(id.to_string(), (built, f));
    }
    Ok(out)
}

/// Runs every check on a parsed config.
pub fn check(raw: RawConfig) -> Result<Checked, ConfigError> {
    let reg = Registry::builtin();
    crate::telemetry::validate(&raw.service.telemetry.logs, &raw.service.telemetry.metrics)?;
    if let Some((k, _)) = raw.connectors.iter().next() {
        return Err(ConfigError::new(
            format!("connectors.{}", k.as_str().unwrap_or("?")),
            "connectors are not available yet",
        ));
    }
    let receivers = parse_section(
        "receivers",
        &raw.receivers,
        &reg.receivers,
        |f| f.type_name,
        |f, v| (f.parse)(v),
    )?;
    let receiver_signals: BTreeMap<String, &[Signal]> = receivers
        .iter()
        .map(|(id, (_, f))| (id.clone(), f.signals))
        .collect();
    let mut receivers: BTreeMap<_, _> = receivers.into_iter().map(|(id, (b, _))| (id, b)).collect();
    let processors = parse_section(
        "processors",
        &raw.processors,
        &reg.processors,
        |f| f.type_name,
        |f, v| (f.parse)(v),
    )?;
    let processor_signals: BTreeMap<String, &[Signal]> = processors
        .iter()
        .map(|(id, (_, f))| (id.clone(), f.signals))
        .collect();
    let processors: BTreeMap<_, _> = processors.into_iter().map(|(id, (b, _))| (id, b)).collect();
    let exporters = parse_section(
        "exporters",
        &raw.exporters,
        &reg.exporters,
        |f| f.type_name,
        |f, v| (f.parse)(v),
    )?;
    let exporter_signals: BTreeMap<String, &[Signal]> = exporters
        .iter()
        .map(|(id, (_, f))| (id.clone(), f.signals))
        .collect();
    let mut exporters: BTreeMap<_, _> = exporters.into_iter().map(|(id, (b, _))| (id, b)).collect();
    let extensions_defined: BTreeMap<_, _> = parse_section(
        "extensions",
        &raw.extensions,
        &reg.extensions,
        |f| f.type_name,
        |f, v| (f.parse)(v),
    )?
    .into_iter()
    .map(|(id, (b, _))| (id, b))
    .collect();

    let mut extensions = Vec::new();
    for (i, id) in raw.service.extensions.iter().enumerate() {
        let b = extensions_defined.get(id).ok_or_else(|| {
            ConfigError::new(
                format!("service.extensions.{i}"),
                format!("extension {id:?} is not defined in extensions"),
            )
        })?;
        extensions.push((id.clone(), b.clone()));
    }

    super::auth_refs::check("receivers", &raw.receivers, &raw.service.extensions)?;
    super::auth_refs::check("exporters", &raw.exporters, &raw.service.extensions)?;

    if raw.service.pipelines.is_empty() {
        return Err(ConfigError::new(
            "service.pipelines",
            "must define at least one pipeline",
        ));
    }
    let mut pipelines = Vec::new();
    let mut used: BTreeSet<String> = BTreeSet::new();
    for (pid, p) in &raw.service.pipelines {
        let at = |k: &str| format!("service.pipelines.{pid}.{k}");
        let sig_name = pid.split_once('/').map_or(pid.as_str(), |(s, _)| s);
        let signal = Signal::parse(sig_name).ok_or_else(|| {
            ConfigError::new(
                format!("service.pipelines.{pid}"),
                "pipeline ids are traces, metrics or logs, optionally followed by /name",
            )
        })?;
        if p.receivers.is_empty() {
            return Err(ConfigError::new(
                at("receivers"),
                "must list at least one receiver",
            ));
        }
        if p.exporters.is_empty() {
            return Err(ConfigError::new(
                at("exporters"),
                "must list at least one exporter",
            ));
        }
        for (kind, list) in [
            ("receivers", &p.receivers),
            ("processors", &p.processors),
            ("exporters", &p.exporters),
        ] {
            let mut seen = BTreeSet::new();
            for id in list {
                if !seen.insert(id) {
                    return Err(ConfigError::new(
                        at(kind),
                        format!("{id:?} is listed twice"),
                    ));
                }
                let (defined, signals) = match kind {
                    "receivers" => (
                        receivers.contains_key(id),
                        receiver_signals.get(id).copied(),
                    ),
                    "processors" => (
                        processors.contains_key(id),
                        processor_signals.get(id).copied(),
                    ),
                    _ => (
                        exporters.contains_key(id),
                        exporter_signals.get(id).copied(),
                    ),
                };
                if !defined {
                    return Err(ConfigError::new(
                        at(kind),
                        format!("{id:?} is not defined in {kind}"),
                    ));
                }
                if signals.is_some_and(|s: &[Signal]| !s.contains(&signal)) {
                    return Err(ConfigError::new(
                        at(kind),
                        format!("{id:?} does not support {signal}"),
                    ));
                }
                if let Some(b) = exporters.get(id).filter(|_| kind == "exporters") {
                    b.accepts(signal)
                        .map_err(|e| e.under(&format!("exporters.{id}")))?;
                }
                used.insert(format!("{kind}.{id}"));
            }
        }
        pipelines.push(PipelinePlan {
            id: pid.clone(),
            signal,
            receivers: p.receivers.clone(),
            processors: p.processors.clone(),
            exporters: p.exporters.clone(),
        });
    }

    let mut warnings = Vec::new();
    for (kind, names) in [
        ("receivers", receivers.keys().cloned().collect::<Vec<_>>()),
        ("processors", processors.keys().cloned().collect()),
        ("exporters", exporters.keys().cloned().collect()),
    ] {
        for id in names {
            if !used.contains(&format!("{kind}.{id}")) {
                warnings.push(format!(
                    "{kind}.{id} is defined but not used in any pipeline"
                ));
            }
        }
    }
    for id in extensions_defined.keys() {
        if !raw.service.extensions.contains(id) {
            warnings.push(format!(
                "extensions.{id} is defined but not listed in service.extensions"
            ));
        }
    }
    receivers.retain(|id, _| used.contains(&format!("receivers.{id}")));
    exporters.retain(|id, _| used.contains(&format!("exporters.{id}")));
    Ok(Checked {
        receivers,
        processors,
        exporters,
        extensions,
        pipelines,
        telemetry: raw.service.telemetry,
        warnings,
    })
}
