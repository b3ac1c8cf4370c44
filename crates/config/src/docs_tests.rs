//! The config examples in the README and `docs/` use only keys the config
//! knows: each ```` ```toml ```` block (its commented-out `# key = …`
//! lines too) is read as a config file, whose unknown keys are errors.

use std::path::{Path, PathBuf};

use crate::raw::RawConfig;

fn documents() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = vec![root.join("README.md")];
    let docs = std::fs::read_dir(root.join("docs")).expect("docs/ is readable");
    for entry in docs {
        let path = entry.expect("a directory entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push(path);
        }
    }
    files
}

/// The ```toml blocks of a Markdown text, with their first line number.
fn toml_blocks(text: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (number, line) in text.lines().enumerate() {
        match current.as_mut() {
            None if line.trim_start() == "```toml" => current = Some((number + 1, String::new())),
            None => {}
            Some(_) if line.trim_start() == "```" => blocks.extend(current.take()),
            Some((_, block)) => {
                block.push_str(&uncommented(line));
                block.push('\n');
            }
        }
    }
    blocks
}

/// `# key = value` at the start of a line becomes `key = value`, so the
/// alternatives a block shows commented out are checked too.
fn uncommented(line: &str) -> String {
    let Some(rest) = line.strip_prefix("# ") else {
        return line.to_string();
    };
    let key: String = rest
        .chars()
        .take_while(|c| c.is_ascii_lowercase() || *c == '_')
        .collect();
    if !key.is_empty() && rest[key.len()..].trim_start().starts_with('=') {
        rest.to_string()
    } else {
        line.to_string()
    }
}

/// Keys that still load but are deprecated: examples show the new names.
const DEPRECATED: [&str; 7] = [
    "idle_timeout_secs",
    "verified_cache_ttl_secs",
    "failure_floor_ms",
    "hook_timeout_ms",
    "jwks_refresh_secs",
    "introspection_cache_secs",
    "leeway_secs",
];

#[test]
fn every_documented_key_exists() {
    let mut checked = 0;
    for file in documents() {
        let text = std::fs::read_to_string(&file).expect("the document is readable");
        for (line, block) in toml_blocks(&text) {
            // The users file of `backend = "file"` is not a config file.
            if block.contains("[[user]]") {
                continue;
            }
            if let Err(error) = toml::from_str::<RawConfig>(&block) {
                panic!("{}:{line}: {error}", file.display());
            }
            for key in block
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, _)| k.trim())
            {
                assert!(
                    !DEPRECATED.contains(&key),
                    "{}:{line}: {key} is deprecated",
                    file.display()
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 8, "only {checked} config blocks found");
}

#[test]
fn an_unknown_or_renamed_key_would_be_caught() {
    let blocks = toml_blocks("```toml\n[limits]\n# idle_timeout_second = 300\n```\n");
    assert_eq!(blocks.len(), 1);
    assert!(toml::from_str::<RawConfig>(&blocks[0].1).is_err());
}
