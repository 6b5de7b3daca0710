//! Every built-in component type, by kind. Adding a component is one module
//! plus one line in its kind's `factories()`.

use exporters::ExporterFactory;
use pipeline::component::ProcessorFactory;

use crate::extensions::auth::{api_key, basicauth, bearertokenauth, headers_setter};
use crate::extensions::{file_storage, health_check, observatory_ui, ExtensionFactory};
use crate::receivers::{filelog, kafka, otlp, ReceiverFactory};

/// The component types this build knows.
pub struct Registry {
    /// Receiver types.
    pub receivers: Vec<ReceiverFactory>,
    /// Processor types.
    pub processors: Vec<ProcessorFactory>,
    /// Exporter types.
    pub exporters: Vec<ExporterFactory>,
    /// Extension types.
    pub extensions: Vec<ExtensionFactory>,
}

impl Registry {
    /// Every built-in type.
    pub fn builtin() -> Registry {
        Registry {
            receivers: [otlp::factory(), kafka::factory()]
                .into_iter()
                .chain(filelog::factories())
                .collect(),
            processors: pipeline::processors::factories(),
            exporters: exporters::factories(),
            extensions: vec![
                api_key::factory(),
                basicauth::factory(),
                bearertokenauth::factory(),
                file_storage::factory(),
                headers_setter::factory(),
                health_check::factory(),
                observatory_ui::factory(),
            ],
        }
    }

    /// The `components` command's listing.
    pub fn describe(&self) -> String {
        let list = |names: Vec<&str>| {
            names
                .iter()
                .map(|n| format!("  - {n}\n"))
                .collect::<String>()
        };
        format!(
            "receivers:\n{}processors:\n{}exporters:\n{}extensions:\n{}",
            list(self.receivers.iter().map(|f| f.type_name).collect()),
            list(self.processors.iter().map(|f| f.type_name).collect()),
            list(self.exporters.iter().map(|f| f.type_name).collect()),
            list(self.extensions.iter().map(|f| f.type_name).collect()),
        )
    }
}
