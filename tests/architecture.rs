//! The structure ARCHITECTURE.md describes, checked against the code: no crate's modules
//! refer to each other in a cycle, the daemon's core does not speak the wire protocol,
//! and every file ARCHITECTURE.md names exists.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The repository's root.
fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// Where a module's unit tests start: they may use anything, so they are left out.
const TESTS: &str = "#[cfg(test)]\nmod tests";

/// The code of every module of the crate in `src`, tests and comments left out, by
/// top-level module: `open/mod.rs` and `open/target.rs` are both `open`.
fn modules(src: &Path) -> BTreeMap<String, String> {
    let mut modules: BTreeMap<String, String> = BTreeMap::new();
    let mut pending = vec![(src.to_owned(), None::<String>)];
    while let Some((dir, top)) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                // src/bin holds binaries, crates of their own.
                if !(top.is_none() && stem == "bin") {
                    pending.push((path, Some(top.clone().unwrap_or(stem))));
                }
            } else if path.extension().is_some_and(|e| e == "rs") && stem != "main" {
                let source = std::fs::read_to_string(&path).unwrap();
                let code: String = (source.split(TESTS).next().unwrap_or("").lines())
                    .flat_map(|line| [line.split("//").next().unwrap_or(line), "\n"])
                    .collect();
                modules.entry(top.clone().unwrap_or(stem)).or_default().push_str(&code);
            }
        }
    }
    modules
}

/// The first name of every `crate::` path in `code`, each of a `crate::{a, b::c}` group.
fn crate_references(code: &str) -> BTreeSet<String> {
    let ident = |text: &str| -> String {
        text.trim_start().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect()
    };
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        let Some(group) = rest.strip_prefix('{') else {
            found.insert(ident(rest));
            continue;
        };
        let mut depth = 0;
        let mut item_start = 0;
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    found.insert(ident(&group[item_start..i]));
                    break;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    found.insert(ident(&group[item_start..i]));
                    item_start = i + 1;
                }
                _ => {}
            }
        }
    }
    found.retain(|name| !name.is_empty());
    found
}

/// Which module defines each name the crate root re-exports (`pub use module::{..}`).
fn reexports(lib: &str) -> BTreeMap<String, String> {
    let mut owners = BTreeMap::new();
    for statement in lib.split(';').filter_map(|s| s.trim().strip_prefix("pub use ")) {
        let Some((module, names)) = statement.split_once("::") else { continue };
        for name in names.split([',', '{', '}']).map(str::trim).filter(|n| !n.is_empty()) {
            let name = name.rsplit("::").next().unwrap_or(name);
            owners.insert(name.to_owned(), module.to_owned());
        }
    }
    owners
}

/// The crate's module graph: which modules each module refers to.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut modules = modules(src);
    let owners = reexports(&modules.remove("lib").expect("lib.rs"));
    (modules.iter())
        .map(|(module, code)| {
            let uses = (crate_references(code).into_iter())
                .map(|name| match owners.get(&name) {
                    _ if modules.contains_key(&name) => name,
                    Some(owner) => owner.clone(),
                    None => panic!("{module}: crate::{name} is neither a module nor re-exported"),
                })
                .filter(|used| used != module)
                .collect();
            (module.clone(), uses)
        })
        .collect()
}

/// A path `a -> b -> .. -> a` through `graph`, if there is one.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_crate_has_a_cycle_between_its_modules() {
    for krate in ["protocol", "formats", "daemon", "client"] {
        let graph = module_graph(&repository().join(krate).join("src"));
        assert!(graph.len() > 1, "{krate}: no modules found");
        if let Some(cycle) = cycle(&graph) {
            panic!("{krate}: modules refer to each other in a cycle: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn the_cycle_check_finds_cycles() {
    let graph = |edges: &[(&str, &str)]| {
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (from, to) in edges {
            graph.entry((*from).into()).or_default().insert((*to).into());
            graph.entry((*to).into()).or_default();
        }
        graph
    };
    assert_eq!(cycle(&graph(&[("a", "b"), ("b", "c")])), None);
    let found = cycle(&graph(&[("a", "b"), ("b", "c"), ("c", "a")])).unwrap();
    assert_eq!(found.first(), found.last());
    assert_eq!(found.len(), 4);
    let refs =
        crate_references("use crate::a::X;\nuse crate::{b::{Y, Z}, c};\nlet _ = crate::d(1);");
    assert_eq!(refs.into_iter().collect::<Vec<_>>(), ["a", "b", "c", "d"]);
}

/// The daemon's modules that turn results into protocol messages. Every other module
/// works in the daemon's own terms (its own errors), so what a failure means is decided
/// in one place and the core can be tested without a socket. `flight` is the edge of the
/// second protocol, Arrow Flight (gRPC): its errors go through `wire::open_error` too.
const PROTOCOL_EDGE: [&str; 4] = ["session", "wire", "framing", "flight"];

#[test]
fn only_the_protocol_edge_of_the_daemon_speaks_the_wire() {
    // The protocol's messages: its requests, replies and error codes (its value types,
    // `Table` and `Window`, and the tables' schema are the daemon's vocabulary too).
    let is_wire = |ident: &str| {
        ["ErrorCode", "Request", "reply_line", "parse_reply"].contains(&ident)
            || ident.ends_with("Reply")
    };
    for (module, code) in modules(&repository().join("daemon/src")) {
        if PROTOCOL_EDGE.contains(&module.as_str()) {
            continue;
        }
        let idents = code.split(|c: char| !(c.is_alphanumeric() || c == '_'));
        if let Some(term) = idents.into_iter().find(|ident| is_wire(ident)) {
            panic!("daemon module {module} uses {term}: map its errors in wire.rs instead");
        }
    }
}

#[test]
fn architecture_md_names_only_files_that_exist() {
    let root = repository();
    let text = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let mut named = 0;
    for (i, piece) in text.split('`').enumerate() {
        // Inside backticks, a path with a slash and an extension, or a directory ending
        // in a slash.
        let path_like = piece.contains('/')
            && !piece.contains(' ')
            && !piece.starts_with('/')
            && !piece.contains("::")
            && (piece.ends_with('/') || piece.rsplit('/').next().is_some_and(|f| f.contains('.')));
        if i % 2 == 1 && path_like {
            named += 1;
            assert!(
                root.join(piece).exists(),
                "ARCHITECTURE.md names {piece}, which does not exist"
            );
        }
    }
    assert!(named >= 10, "ARCHITECTURE.md names only {named} files: is this the right test?");
}
