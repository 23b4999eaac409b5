//! The layering of csms's modules, checked on the source: no import circle among
//! them, the session names no engine, engines use only what is below them and
//! never each other. (docs/architecture.md, "Layers".)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module of the graph: a top-level module of csms, or `engines::<block>`.
type Module = String;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The graph node a source file belongs to.
fn module_of(src: &Path, file: &Path) -> Option<Module> {
    let rel = file.strip_prefix(src).unwrap();
    let parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned()).collect();
    match parts.as_slice() {
        [one] if one == "lib" || one == "main" => None,
        [one] => Some(one.clone()),
        [engines, block, ..] if engines == "engines" && block != "mod" => Some(format!("engines::{block}")),
        [first, ..] => Some(first.clone()),
        [] => None,
    }
}

/// The modules a file refers to through `crate::...` paths (use lines and
/// inline paths alike), without comments.
fn references(text: &str, engine_blocks: &BTreeSet<String>) -> BTreeSet<Module> {
    let code: String = text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join(" ");
    let ident = |s: &str| s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>();
    let mut out = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        let first = ident(after);
        if first.is_empty() && after.starts_with('{') {
            // `crate::{a::X, b}`: each item names a module (or an engine block path).
            for item in top_level_items(&after[1..]) {
                let item = item.trim();
                let name = ident(item);
                if name == "engines" {
                    let block = ident(item["engines".len()..].trim_start_matches(':'));
                    out.insert(if engine_blocks.contains(&block) {
                        format!("engines::{block}")
                    } else {
                        "engines".into()
                    });
                } else if !name.is_empty() {
                    out.insert(name);
                }
            }
            rest = after;
            continue;
        }
        if first == "engines" {
            let tail = after["engines".len()..].trim_start_matches(':');
            if let Some(list) = tail.strip_prefix('{') {
                // `crate::engines::{a::X, Engine}`: the top-level items of the group.
                for name in top_level_items(list).iter().map(|i| ident(i.trim())).filter(|n| !n.is_empty()) {
                    out.insert(if engine_blocks.contains(&name) {
                        format!("engines::{name}")
                    } else {
                        "engines".into()
                    });
                }
            } else {
                let block = ident(tail);
                out.insert(if engine_blocks.contains(&block) { format!("engines::{block}") } else { "engines".into() });
            }
        } else if !first.is_empty() {
            out.insert(first);
        }
        rest = after;
    }
    out
}

/// The items of a `{...}` group up to its closing brace (`list` starts after
/// the opening one), each with its own nested groups.
fn top_level_items(list: &str) -> Vec<String> {
    let (mut depth, mut item, mut items) = (0, String::new(), Vec::new());
    for c in list.chars() {
        match c {
            '{' => {
                depth += 1;
                item.push(c);
            }
            '}' if depth == 0 => break,
            '}' => {
                depth -= 1;
                item.push(c);
            }
            ',' if depth == 0 => items.push(std::mem::take(&mut item)),
            _ => item.push(c),
        }
    }
    items.push(item);
    items
}

/// The layer of each module, as docs/architecture.md lists them: a module may
/// use its own layer and those below it, never one above.
fn layer(module: &str) -> u8 {
    match module {
        "store" | "clock" | "metrics" | "config" | "events" | "ids" | "password" | "group_commit" | "error"
        | "authority" | "station_ca" => 1,
        "link" | "engines" => 2,
        m if m.starts_with("engines::") => 3,
        "session" | "gateway" => 4,
        "services" => 5,
        "runtime" => 6,
        "rest" | "http" | "revocation" => 7,
        "serve" => 8,
        other => panic!("module {other} has no layer: add it to docs/architecture.md and here"),
    }
}

fn graph() -> BTreeMap<Module, BTreeSet<Module>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let engine_blocks: BTreeSet<String> = std::fs::read_dir(src.join("engines"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for file in files {
        let Some(module) = module_of(&src, &file) else { continue };
        let text = std::fs::read_to_string(&file).unwrap();
        // Unit tests may reach across layers; the layering is about the code.
        let code = text.split("#[cfg(test)]").next().unwrap_or(&text);
        let refs = references(code, &engine_blocks);
        let entry = graph.entry(module.clone()).or_default();
        entry.extend(refs.into_iter().filter(|r| *r != module));
    }
    graph
}

/// A cycle through `start`, if there is one.
fn cycle_from(
    graph: &BTreeMap<Module, BTreeSet<Module>>,
    node: &Module,
    path: &mut Vec<Module>,
    done: &mut BTreeSet<Module>,
) -> Option<Vec<Module>> {
    if let Some(i) = path.iter().position(|p| p == node) {
        let mut cycle = path[i..].to_vec();
        cycle.push(node.clone());
        return Some(cycle);
    }
    if done.contains(node) {
        return None;
    }
    path.push(node.clone());
    for next in graph.get(node).into_iter().flatten() {
        if let Some(c) = cycle_from(graph, next, path, done) {
            return Some(c);
        }
    }
    path.pop();
    done.insert(node.clone());
    None
}

#[test]
fn no_import_circle_among_modules() {
    let graph = graph();
    if std::env::var_os("LAYERING_PRINT").is_some() {
        for (m, r) in &graph {
            eprintln!("{m} -> {r:?}");
        }
    }
    assert!(graph.contains_key("session") && graph.contains_key("engines::certificates"), "{graph:?}");
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(cycle) = cycle_from(&graph, node, &mut Vec::new(), &mut done) {
            panic!("import circle: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn every_module_uses_only_its_layer_and_those_below() {
    for (module, refs) in graph() {
        for r in refs {
            assert!(layer(&r) <= layer(&module), "{module} (layer {}) uses {r} (layer {})", layer(&module), layer(&r));
        }
    }
}

#[test]
fn the_session_names_no_engine_and_engines_stay_below_it() {
    let graph = graph();
    let above_engines = ["session", "gateway", "runtime", "serve", "services", "rest", "http", "revocation", "cli"];
    for (module, refs) in &graph {
        if module == "session" || module == "gateway" {
            let named: Vec<_> = refs.iter().filter(|r| r.starts_with("engines::")).collect();
            assert!(named.is_empty(), "{module} names engines {named:?}");
        }
        if let Some(block) = module.strip_prefix("engines::") {
            for r in refs {
                assert!(!above_engines.contains(&r.as_str()), "engine {block} reaches up into {r}");
                assert!(!r.starts_with("engines::"), "engine {block} uses engine {r}");
            }
        }
        if module == "engines" || module == "link" {
            for r in refs {
                assert!(!above_engines.contains(&r.as_str()), "the seam {module} reaches up into {r}");
            }
        }
    }
}

#[test]
fn the_checker_sees_circles_and_engine_paths() {
    let blocks: BTreeSet<String> = ["certificates".to_owned()].into();
    let refs =
        references("use crate::engines::{certificates::X, Engine};\nlet x = crate::store::Y; // crate::cli", &blocks);
    assert_eq!(refs, ["engines", "engines::certificates", "store"].iter().map(|s| s.to_string()).collect());
    let refs = references("use crate::engines::{\n    certificates::{A, B},\n};", &blocks);
    assert_eq!(refs, ["engines::certificates"].iter().map(|s| s.to_string()).collect());
    let refs = references("use crate::{runtime::Node, engines::certificates::X, store};", &blocks);
    assert_eq!(refs, ["engines::certificates", "runtime", "store"].iter().map(|s| s.to_string()).collect());
    let mut g: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("a".into());
    assert!(cycle_from(&g, &"a".to_owned(), &mut Vec::new(), &mut BTreeSet::new()).is_some());
}
