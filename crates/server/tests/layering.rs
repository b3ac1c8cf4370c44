//! The server crate's modules form layers: no module imports (through a
//! `crate::` path, in a `use` line or inline) a module above it, and no two
//! modules import each other. This reads the sources and fails on any
//! cycle, naming it; ARCHITECTURE.md draws the layers it prints.
//!
//! `lib.rs` is the crate root, which declares every module: a module that
//! names an item of the root (`crate::Shared`) imports the top layer and
//! closes a cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module name -> the modules its code names through `crate::`.
fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut sources = BTreeMap::new();
    for entry in std::fs::read_dir(&src).expect("src dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "rs") {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).expect("source");
            sources.insert(name, text);
        }
    }
    let modules: BTreeSet<String> = sources.keys().cloned().collect();
    let mut graph = BTreeMap::new();
    for (name, text) in &sources {
        let mut imports = BTreeSet::new();
        for target in crate_paths(text) {
            let target = match modules.contains(&target) && target != "lib" {
                true => target,
                // An item of the crate root.
                false => "lib".to_string(),
            };
            if &target != name {
                imports.insert(target);
            }
        }
        if name == "lib" {
            // The root declares (and so sits above) every module.
            imports.extend(modules.iter().filter(|m| *m != "lib").cloned());
        }
        graph.insert(name.clone(), imports);
    }
    graph
}

/// The first segment of every `crate::` path in `text`, comments left out
/// (grouped imports `crate::{a, b::c}` give `a` and `b`).
fn crate_paths(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in text.lines() {
        let code = match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        };
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let before = rest[..at].chars().last();
            rest = &rest[at + "crate::".len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue; // `portcullis_crate::`, not ours
            }
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for item in group[..end].split(',') {
                    let first = item.trim().split("::").next().unwrap_or("").trim();
                    if !first.is_empty() {
                        found.push(first.to_string());
                    }
                }
                continue;
            }
            let ident: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !ident.is_empty() {
                found.push(ident);
            }
        }
    }
    found
}

/// A cycle through `start`, if any.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, graph, &mut Vec::new(), &mut done) {
            return Some(cycle);
        }
    }
    None
}

/// Layer 0: imports nothing of the crate; layer n: imports up to n-1.
fn layers(graph: &BTreeMap<String, BTreeSet<String>>) -> BTreeMap<String, usize> {
    let mut layer = BTreeMap::new();
    while layer.len() < graph.len() {
        for (name, imports) in graph {
            if layer.contains_key(name) {
                continue;
            }
            if imports.iter().all(|i| layer.contains_key(i)) {
                let height = imports.iter().map(|i| layer[i] + 1).max().unwrap_or(0);
                layer.insert(name.clone(), height);
            }
        }
    }
    layer
}

#[test]
fn the_modules_import_only_modules_below_them() {
    let graph = import_graph();
    if let Some(cycle) = cycle(&graph) {
        panic!(
            "import cycle in crates/server: {} (a module imports one above it)",
            cycle.join(" -> ")
        );
    }
    let layers = layers(&graph);
    let mut by_layer: BTreeMap<usize, Vec<&str>> = BTreeMap::new();
    for (name, layer) in &layers {
        by_layer.entry(*layer).or_default().push(name);
    }
    for (layer, names) in by_layer {
        println!("layer {layer}: {}", names.join(", "));
    }
    for (name, imports) in &graph {
        println!(
            "{name} -> {}",
            Vec::from_iter(imports.iter().cloned()).join(", ")
        );
    }
}

#[test]
fn the_parser_finds_cycles_and_grouped_imports() {
    let text = "use crate::{a, b::C};\n// crate::commented\nlet x = crate::d::f();\n";
    assert_eq!(crate_paths(text), ["a", "b", "d"]);
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a".to_string(), BTreeSet::from(["b".to_string()])),
        ("b".to_string(), BTreeSet::from(["a".to_string()])),
    ]
    .into();
    assert_eq!(cycle(&graph).unwrap(), ["a", "b", "a"]);
}
