//! The config loader (YAML → merged, expanded, validated config) on any
//! text: never panics, never hangs; an error names a file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use observatory::config::Sources;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = |k: &str| (k == "PORT").then(|| "4317".to_string());
    if let Err(e) = Sources::from_text("fuzz.yaml", text).load_with_env(&env) {
        assert_eq!(e.file.as_deref(), Some("fuzz.yaml"));
    }
});
