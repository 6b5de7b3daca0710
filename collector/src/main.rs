//! `observatory`: runs the pipelines a config describes.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use observatory::{allocator, config, registry, service, telemetry};

use clap::{Parser, Subcommand};

/// An OpenTelemetry-Collector-compatible gateway with LLM-aware processing.
#[derive(Parser)]
#[command(name = "observatory", version, about)]
struct Cli {
    /// Config file; repeat to merge several (later files override earlier ones).
    #[arg(long = "config", global = true, value_name = "FILE")]
    config: Vec<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Check the config and exit: 0 if valid, 2 with the problem if not.
    Validate,
    /// List the built-in component types per kind.
    Components,
    /// A live terminal view of a collector's pipelines (needs the
    /// observatory_ui extension there).
    Top {
        /// The collector's observatory_ui address.
        #[arg(long, default_value = "http://localhost:55679")]
        url: String,
    },
}

fn main() -> ExitCode {
    allocator::tune();
    let cli = Cli::parse();
    if let Some(Command::Components) = cli.command {
        print!("{}", registry::Registry::builtin().describe());
        return ExitCode::SUCCESS;
    }
    if let Some(Command::Top { url }) = &cli.command {
        return match observatory::top::run(url) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("Error: {e}");
                ExitCode::from(1)
            }
        };
    }
    let paths = if cli.config.is_empty() {
        vec!["config.yaml".to_string()]
    } else {
        cli.config
    };
    let checked = match config::Sources::read(&paths).and_then(|s| s.load()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("Error: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(Command::Validate) = cli.command {
        for w in &checked.warnings {
            eprintln!("warning: {w}");
        }
        println!("{}: configuration is valid", paths.join(", "));
        return ExitCode::SUCCESS;
    }
    telemetry::init_logs(&checked.telemetry.logs);
    observatory::receivers::conn::raise_open_files_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("observatory")
        .build()
        .expect("building the tokio runtime");
    let result = runtime.block_on(service::run(checked, service::signal()));
    // The pipelines have drained; a blocking task still waiting on a peer
    // that stopped answering (a Kafka client's goodbye) must not hold the
    // exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("Error: {e}");
            ExitCode::from(1)
        }
    }
}
