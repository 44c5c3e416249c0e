//! Push decoders and encoders for event-camera recordings: Prophesee EVT 2.0, EVT 2.1,
//! EVT 3.0 and DAT, iniVation AEDAT 4.0 (decoding), and text exports.
//!
//! Every decoder here is a state machine fed byte slices of any size ("sans-IO"): the same
//! code serves a file read in chunks, a mapped file, a fuzzer or a unit test, and any split
//! of the input decodes to the same events. Decoded events go to an [`EventSink`], so the
//! caller decides where they land (evshmd writes them straight into the columns of a
//! shared-memory segment; an [`Indexer`] pass, which counts without decoding, cuts the
//! stream into chunks and sizes each chunk's segment exactly).
//!
//! Semantics follow OpenEB, Prophesee's reference implementation: timestamps are absolute
//! sensor time in microseconds (no shifting), words before the first time-high word are
//! dropped, a truncated final word is not an event.
//!
//! ```
//! use evshm_formats::{detect, Decoder, Event, Evt3Encoder, Geometry, VecSink};
//!
//! let events = [Event { t: 5, x: 3, y: 4, p: 1 }, Event { t: 9, x: 4, y: 4, p: 0 }];
//! let mut file = Vec::new();
//! let mut encoder = Evt3Encoder::new(&mut file, Geometry { width: 640, height: 480 })?;
//! for event in &events {
//!     encoder.push(event)?;
//! }
//! encoder.finish()?;
//!
//! let recording = detect(&file, None)?;
//! let mut decoder = Decoder::new(recording.format);
//! let mut sink = VecSink::default();
//! for piece in file[recording.data_offset..].chunks(3) {
//!     decoder.feed(piece, &mut sink);
//! }
//! assert_eq!(sink.events, events);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

// What the per-format modules share lives in modules of its own (`carry`, `stats`,
// `encode`, `geometry`, `header`, `sink`), which import nothing of the modules that pick a
// format (`decoder`, `encoder`, `format`, `detect`, `index`): dependencies run one way, and
// the test below fails on any cycle.
mod aedat4;
mod carry;
mod clock34;
mod dat;
mod decoder;
mod detect;
mod encode;
mod encoder;
mod error;
mod evt2;
mod evt21;
mod evt3;
mod format;
mod geometry;
mod header;
mod index;
mod sink;
mod stats;
pub mod synth;
#[cfg(test)]
mod testing;
mod text;

pub use aedat4::{Aedat4Decoder, Aedat4Layout, Compression};
pub use dat::{DatDecoder, DatEncoder};
pub use decoder::Decoder;
pub use detect::{Detected, GeometrySource, detect};
pub use encode::EncodeError;
pub use encoder::Encoder;
pub use error::DetectError;
pub use evt2::{Evt2Decoder, Evt2Encoder};
pub use evt3::{Evt3Decoder, Evt3Encoder};
pub use evt21::{Evt21Decoder, Evt21Encoder, WordOrder};
pub use format::Format;
pub use geometry::Geometry;
pub use header::{HeaderLines, MAX_HEADER_LEN};
pub use index::{Chunk, ChunkLimits, Indexer};
pub use sink::{
    ColumnSink, CountingSink, Event, EventSink, GeometryFilter, Slots, Trigger, VecSink,
};
pub use stats::DecodeStats;
pub use text::{Columns, TextDecoder, TextEncoder};

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    /// Where a module's unit tests start: they may use anything, so they are left out.
    const TESTS: &str = "#[cfg(test)]\nmod tests";

    type Graph = BTreeMap<String, BTreeSet<String>>;

    /// The first name of every `crate::` path in `code` (of each path of a `crate::{..}`
    /// group), comments left out: the modules and root re-exports it refers to.
    fn crate_references(code: &str) -> Vec<String> {
        let code: String =
            code.lines().flat_map(|line| [line.split("//").next().unwrap_or(line), "\n"]).collect();
        let name = |path: &str| -> String {
            path.trim_start().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect()
        };
        let mut found = Vec::new();
        for (at, _) in code.match_indices("crate::") {
            let rest = &code[at + "crate::".len()..];
            let Some(group) = rest.strip_prefix('{') else {
                found.push(name(rest));
                continue;
            };
            found.push(name(group));
            let mut depth = 0;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => found.push(name(&group[i + 1..])),
                    _ => {}
                }
            }
        }
        found.retain(|name| !name.is_empty());
        found
    }

    /// The module each name re-exported by a `pub use module::{..}` of lib.rs comes from.
    fn reexports(lib: &str) -> BTreeMap<String, String> {
        let mut owners = BTreeMap::new();
        for statement in lib.split(';').filter_map(|s| s.trim().strip_prefix("pub use ")) {
            let (module, names) = statement.split_once("::").expect("pub use module::..");
            for name in names.split([',', '{', '}']).map(str::trim).filter(|n| !n.is_empty()) {
                owners.insert(name.to_owned(), module.to_owned());
            }
        }
        owners
    }

    /// Which modules each module of `src` (but lib.rs) refers to; a reference through a
    /// re-export of the root (`crate::Geometry`) is one to the module that defines it.
    fn module_graph(src: &std::path::Path) -> Graph {
        let mut code = BTreeMap::new();
        for entry in std::fs::read_dir(src).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "rs") {
                let source = std::fs::read_to_string(&path).unwrap();
                let module = path.file_stem().unwrap().to_string_lossy().into_owned();
                code.insert(module, source.split(TESTS).next().unwrap_or("").to_owned());
            }
        }
        let owners = reexports(&code.remove("lib").expect("lib.rs"));
        let owner = |module: &str, name: String| {
            if code.contains_key(&name) {
                return name;
            }
            let owner = owners.get(&name);
            owner
                .unwrap_or_else(|| panic!("{module}.rs: crate::{name} is no module or re-export"))
                .clone()
        };
        (code.iter())
            .map(|(module, code)| {
                let uses = (crate_references(code).into_iter())
                    .map(|name| owner(module, name))
                    .filter(|used| used != module)
                    .collect();
                (module.clone(), uses)
            })
            .collect()
    }

    /// A path `a -> b -> .. -> a` through `graph`, if there is one.
    fn cycle(graph: &Graph) -> Option<Vec<String>> {
        fn visit(
            node: &str,
            graph: &Graph,
            path: &mut Vec<String>,
            done: &mut BTreeSet<String>,
        ) -> Option<Vec<String>> {
            if let Some(at) = path.iter().position(|n| n == node) {
                return Some([&path[at..], &[node.to_owned()]].concat());
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

    /// Dependencies between the modules run one way: the types the per-format modules
    /// share live in modules that import none of the modules that pick a format, so
    /// neither can come to depend on itself.
    #[test]
    fn modules_refer_to_each_other_without_a_cycle() {
        let graph = module_graph(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
        assert!(graph.contains_key("decoder") && graph["decoder"].contains("dat"), "{graph:?}");
        if let Some(cycle) = cycle(&graph) {
            panic!("modules refer to each other in a cycle: {}", cycle.join(" -> "));
        }
    }

    #[test]
    fn the_cycle_check_finds_a_cycle() {
        let code = "use crate::b::X;\n// crate::c\nfn f() { crate::{d::Y, e}; }";
        assert_eq!(crate_references(code), ["b", "d", "e"]);
        let graph: Graph = [("a", "b"), ("b", "c"), ("c", "b")]
            .map(|(from, to)| (from.to_owned(), BTreeSet::from([to.to_owned()])))
            .into();
        assert_eq!(cycle(&graph).unwrap(), ["b", "c", "b"]);
    }
}
