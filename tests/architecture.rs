//! The house rules of docs/ARCHITECTURE.md that a reader can check mechanically: no import circle
//! among the source files, no source file much over 600 lines, and the export room's place.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `src/a/b.rs` and `src/a/b/mod.rs` → `a::b`; `src/lib.rs` → ``.
fn module_of(rel: &str) -> String {
    let m = rel.trim_start_matches("src/").trim_end_matches(".rs").trim_end_matches("/mod");
    if m == "lib" || m == "main" {
        String::new()
    } else {
        m.replace('/', "::")
    }
}

fn ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The source files each file names through `crate::…`, `super::…`, `self::…` paths and
/// `use crate::{…}` / `use super::{…}` groups (comments and test modules left out). A path names the
/// longest module prefix that is a file.
fn import_graph(root: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let rel = |p: &Path| p.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
    let modules: BTreeMap<String, String> = files.iter().map(|p| (module_of(&rel(p)), rel(p))).collect();
    let mut graph = BTreeMap::new();
    for p in &files {
        let me_rel = rel(p);
        let me: Vec<String> = module_of(&me_rel).split("::").filter(|s| !s.is_empty()).map(str::to_owned).collect();
        let text = std::fs::read_to_string(p).unwrap();
        let text = text.split("#[cfg(test)]").next().unwrap_or("");
        let text: String = text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
        let mut targets = BTreeSet::new();
        let resolve = |base: &str, segs: &[&str]| -> Option<String> {
            let mut cur: Vec<String> = match base {
                "crate" => vec![],
                "self" => me.clone(),
                _ => me[..me.len().saturating_sub(1)].to_vec(),
            };
            let mut segs = segs;
            while segs.first() == Some(&"super") {
                cur.pop();
                segs = &segs[1..];
            }
            (0..=segs.len()).rev().find_map(|k| {
                let cand: Vec<String> = cur.iter().cloned().chain(segs[..k].iter().map(|s| s.to_string())).collect();
                modules.get(&cand.join("::")).cloned()
            })
        };
        for base in ["crate", "super", "self"] {
            let needle = format!("{base}::");
            for (i, _) in text.match_indices(&needle) {
                if i > 0 && text[..i].ends_with(ident) {
                    continue;
                }
                let after = &text[i + needle.len()..];
                if let Some(group) = after.strip_prefix('{') {
                    let body = &group[..group.find('}').unwrap_or(group.len())];
                    for item in body.split(',') {
                        let segs: Vec<&str> = item
                            .trim()
                            .split("::")
                            .map(|s| s.trim_matches(|c: char| !ident(c)))
                            .filter(|s| !s.is_empty())
                            .collect();
                        if let Some(t) = resolve(base, &segs) {
                            targets.insert(t);
                        }
                    }
                    continue;
                }
                let path: String = after.chars().take_while(|c| ident(*c) || *c == ':').collect();
                let segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
                if let Some(t) = resolve(base, &segs) {
                    targets.insert(t);
                }
            }
        }
        targets.remove(&me_rel);
        graph.insert(me_rel, targets);
    }
    graph
}

/// The strongly connected components with more than one file (Tarjan).
fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'g> {
        g: &'g BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on: BTreeSet<&'g str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'g>(t: &mut T<'g>, v: &'g str) {
        let n = t.index.len();
        t.index.insert(v, n);
        t.low.insert(v, n);
        t.stack.push(v);
        t.on.insert(v);
        for w in t.g.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                t.out.push(comp);
            }
        }
    }
    let mut t =
        T { g: graph, index: BTreeMap::new(), low: BTreeMap::new(), stack: vec![], on: BTreeSet::new(), out: vec![] };
    for v in graph.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

#[test]
fn no_import_circle_among_the_source_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let graph = import_graph(root);
    assert!(graph.len() > 50, "read {} source files", graph.len());
    // The reader sees the forms the code uses.
    assert!(graph["src/stages/generator.rs"].contains("src/stages/train.rs"), "{:?}", graph["src/stages/generator.rs"]);
    assert!(graph["src/ledger/store.rs"].contains("src/ledger/verify.rs"));
    assert!(graph["src/pipeline.rs"].contains("src/stages/mod.rs"));
    let found = circles(&graph);
    assert!(found.is_empty(), "import circles among the source files: {found:?}");
}

/// The export room (docs/ARCHITECTURE.md): it starts from a ledger that passed `hsx verify` (it imports the
/// audit), and only the CLI uses it: no room of the library imports it back.
#[test]
fn the_export_room_reads_verified_ledgers_and_nothing_below_it_imports_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let graph = import_graph(root);
    assert!(graph["src/export/mod.rs"].contains("src/audit.rs"), "{:?}", graph["src/export/mod.rs"]);
    for format in ["dsse", "sigstore", "intoto", "slsa"] {
        let file = format!("src/export/{format}.rs");
        assert!(graph.contains_key(&file), "no {file}");
        assert!(graph[&file].contains("src/export/mod.rs"), "{file} does not write through the room's Writer");
    }
    let users: Vec<&String> = graph
        .iter()
        .filter(|(f, targets)| !f.starts_with("src/export/") && targets.iter().any(|t| t.starts_with("src/export/")))
        .map(|(f, _)| f)
        .collect();
    assert!(users.is_empty(), "library files importing the export room: {users:?}");
}

#[test]
fn the_circle_finder_finds_a_circle() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.insert("a".into(), ["b".to_owned()].into());
    g.insert("b".into(), ["c".to_owned()].into());
    g.insert("c".into(), ["a".to_owned()].into());
    g.insert("d".into(), ["a".to_owned()].into());
    let found = circles(&g);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].iter().cloned().collect::<BTreeSet<_>>(), ["a", "b", "c"].map(str::to_owned).into());
}

/// "No source file over ~600 lines" (the stage-registry issue): 650 is the line this test draws.
#[test]
fn no_source_file_much_over_600_lines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let long: Vec<String> = files
        .iter()
        .filter_map(|p| {
            let n = std::fs::read_to_string(p).unwrap().lines().count();
            (n > 650).then(|| format!("{} ({n} lines)", p.strip_prefix(root).unwrap().display()))
        })
        .collect();
    assert!(long.is_empty(), "split these files: {long:?}");
}

/// The export room (`src/export/`) is a view of a verified ledger (docs/ecosystem.md): no other source
/// file imports it (only the CLI calls it, through the library), and it imports nothing that runs a
/// stage — no executor, stage dispatch, stage context, Slurm driver or reproduction.
#[test]
fn the_export_room_is_a_leaf_that_runs_nothing() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let graph = import_graph(root);
    let in_room = |f: &str| f.starts_with("src/export/");
    let room: Vec<&String> = graph.keys().filter(|f| in_room(f)).collect();
    assert!(room.len() >= 4, "read {} files of src/export/", room.len());
    for (file, targets) in graph.iter().filter(|(f, _)| !in_room(f)) {
        let into: Vec<&String> = targets.iter().filter(|t| in_room(t)).collect();
        assert!(into.is_empty(), "{file} imports the export room: {into:?}");
    }
    const RUNS: [&str; 6] = [
        "src/pipeline.rs",
        "src/stages/mod.rs",
        "src/stages/ctx.rs",
        "src/slurm.rs",
        "src/reproduce.rs",
        "src/runtime.rs",
    ];
    for f in room {
        let bad: Vec<&String> = graph[f].iter().filter(|t| RUNS.contains(&t.as_str())).collect();
        assert!(bad.is_empty(), "{f} imports what runs a stage: {bad:?}");
    }
    // The reader sees the room's own arrows.
    assert!(graph["src/export/hf.rs"].contains("src/export/recorded.rs"), "{:?}", graph["src/export/hf.rs"]);
    assert!(graph["src/export/recorded.rs"].contains("src/report.rs"));
}
