//! Config text through the whole loader (TOML, then every validation
//! rule) into a `Config` or a `ConfigError`: no panic, and the error's
//! message can be printed.
//!
//! Documents that name an `auth_password_file` are skipped: the loader
//! reads that file, and the fuzzer would otherwise read the machine's.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use portcullis_config::Config;

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    if let Ok(document) = text.parse::<toml::Table>() {
        if names_a_file(&toml::Value::Table(document)) {
            return;
        }
    }
    match Config::parse(text, Path::new("/etc/portcullis/portcullis.toml"), None) {
        Ok(config) => {
            let _ = format!("{config:?}");
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
});

fn names_a_file(value: &toml::Value) -> bool {
    match value {
        toml::Value::Table(table) => table
            .iter()
            .any(|(key, value)| key.ends_with("password_file") || names_a_file(value)),
        toml::Value::Array(items) => items.iter().any(names_a_file),
        _ => false,
    }
}
