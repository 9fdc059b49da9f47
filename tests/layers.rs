//! The host's layers hold (issue 13): `host/src` is four folders, in this
//! order, and a file imports only its own layer and the layers before it:
//!
//! engine < features < ops < faces
//!
//! and no two files import each other, directly or round a longer loop.
//!
//! The check reads the source as text: it strips comments, strings and
//! character literals, then takes every `crate::` and `super::` path (in
//! `use` trees, nested braces included, and inline in code), resolves each
//! to the file that defines it (the deepest `foo.rs` or `foo/mod.rs` that
//! exists for the path's prefix), and fails naming the file and the import
//! when
//! - a file imports a layer after its own (the engine importing a face);
//! - the files' imports form a cycle (printed whole). A file's imports of
//!   its own ancestors (`super::Error`, a parent's re-export) are not
//!   counted: a parent declaring its children and they using its items is
//!   Rust's normal shape.
//!
//! The second test feeds the checker a small tree with a wrong import and a
//! cycle and asserts it reports both, so this check can be seen to fail.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layer folders of `host/src`, in order: each may import only itself
/// and those before it.
const LAYERS: [&str; 4] = ["engine", "features", "ops", "faces"];

#[test]
fn host_src_keeps_its_layers_and_has_no_import_cycle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    read_tree(&root, &root, &mut files);
    for layer in LAYERS {
        assert!(
            files.contains_key(&format!("{layer}/mod.rs")),
            "host/src/{layer}/mod.rs is missing: the layers are {LAYERS:?}"
        );
    }
    let problems = check(&files);
    assert!(
        problems.is_empty(),
        "host/src breaks its layers ({}):\n{}",
        LAYERS.join(" < "),
        problems.join("\n")
    );
}

#[test]
fn the_check_reports_an_upward_import_and_a_cycle() {
    let files: BTreeMap<String, String> = [
        ("lib.rs", "pub mod engine;\npub mod faces;\n"),
        ("main.rs", "fn main() { mem0_queue::faces::cli::main() }\n"),
        ("engine/mod.rs", "pub mod a;\npub mod b;\npub mod store;\n"),
        (
            "engine/a.rs",
            "//! Mentions [`crate::faces::cli`] in a comment only.\n\
             use crate::engine::b::B;\n\
             pub struct A;\n",
        ),
        (
            "engine/b.rs",
            "use crate::{\n    engine::a::A,\n    faces::{cli::{self, Cli}},\n};\n\
             const S: &str = \"crate::faces::cli\";\n\
             const C: char = '\"';\n\
             pub struct B<'a>(&'a A);\n",
        ),
        (
            "engine/store/mod.rs",
            "mod inner;\npub use inner::Inner;\npub struct Error;\n\
             fn f() -> crate::engine::store::inner::Inner { todo!() }\n",
        ),
        (
            "engine/store/inner.rs",
            "use super::Error;\npub struct Inner;\n\
             #[cfg(test)]\nmod tests {\n    use super::super::Error;\n    use super::*;\n}\n",
        ),
        ("faces/mod.rs", "pub mod cli;\n"),
        (
            "faces/cli.rs",
            "pub struct Cli;\nfn g() { crate::engine::store::Error; }\n",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    // Exactly these two: the comment, the string, the char literal and the
    // store's parent and child using each other do not count.
    assert_eq!(
        check(&files),
        [
            "engine/b.rs: `use crate::faces::cli` reaches faces/cli.rs: \
             layer `engine` imports `faces`, a layer after its own",
            "cycle: engine/a.rs -> engine/b.rs -> engine/a.rs\n  \
             engine/a.rs: `use crate::engine::b::B` reaches engine/b.rs\n  \
             engine/b.rs: `use crate::engine::a::A` reaches engine/a.rs",
        ]
    );
}

// ---------------------------------------------------------------------------
// Reading the tree.

/// Every `.rs` file under `dir`, keyed by its path relative to `root`.
fn read_tree(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            read_tree(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path
                .strip_prefix(root)
                .expect("under the root")
                .to_string_lossy()
                .replace('\\', "/");
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            out.insert(rel, text);
        }
    }
}

// ---------------------------------------------------------------------------
// The check.

/// One import: the file it is in, the path as written, the file it reaches.
#[derive(Debug, Clone)]
struct Import {
    from: String,
    written: String,
    to: String,
}

/// Every problem, one line each (a cycle: one line, then one per import).
fn check(files: &BTreeMap<String, String>) -> Vec<String> {
    let mut imports = Vec::new();
    for (file, text) in files {
        // The binary's `crate` is not the library's.
        if file == "main.rs" {
            continue;
        }
        let module = module_of(file);
        for (path, written) in paths(&tokens(text), &module) {
            if let Some(to) = resolve(files, &path)
                && to != *file
                && !ancestors(files, &module).contains(&to)
            {
                imports.push(Import {
                    from: file.clone(),
                    written,
                    to,
                });
            }
        }
    }
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for i in &imports {
        let (Some(from), Some(to)) = (layer(&i.from), layer(&i.to)) else {
            continue;
        };
        if to > from && seen.insert((i.from.clone(), i.to.clone())) {
            problems.push(format!(
                "{}: `{}` reaches {}: layer `{}` imports `{}`, a layer after its own",
                i.from, i.written, i.to, LAYERS[from], LAYERS[to]
            ));
        }
    }
    problems.extend(cycles(&imports));
    problems
}

/// The rank of a file's layer in [`LAYERS`]; `None` for `lib.rs`.
fn layer(file: &str) -> Option<usize> {
    let first = file.split('/').next()?;
    LAYERS.iter().position(|l| *l == first)
}

/// The module path of a file: `engine/store/mod.rs` is `engine::store`,
/// `engine/clock.rs` is `engine::clock`, `lib.rs` is the crate root.
fn module_of(file: &str) -> Vec<String> {
    let stem = file.strip_suffix(".rs").unwrap_or(file);
    let mut parts: Vec<String> = stem.split('/').map(str::to_string).collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

/// The file that defines the module `path`, if it exists.
fn module_file(files: &BTreeMap<String, String>, path: &[String]) -> Option<String> {
    if path.is_empty() {
        return files.contains_key("lib.rs").then(|| "lib.rs".to_string());
    }
    let base = path.join("/");
    [format!("{base}.rs"), format!("{base}/mod.rs")]
        .into_iter()
        .find(|f| files.contains_key(f))
}

/// The deepest file that exists for a prefix of `path`.
fn resolve(files: &BTreeMap<String, String>, path: &[String]) -> Option<String> {
    (0..=path.len())
        .rev()
        .find_map(|n| module_file(files, &path[..n]))
}

/// The files of a module's ancestors (its parent, the parent's parent...).
fn ancestors(files: &BTreeMap<String, String>, module: &[String]) -> BTreeSet<String> {
    (0..module.len())
        .filter_map(|n| module_file(files, &module[..n]))
        .collect()
}

/// The cycles among the files: in each knot of files that reach each other
/// (a strongly connected component), the shortest cycle through each file
/// not yet shown in one, written `cycle: a -> b -> a` with the imports that
/// make it.
fn cycles(imports: &[Import]) -> Vec<String> {
    let mut graph: BTreeMap<&str, BTreeMap<&str, &Import>> = BTreeMap::new();
    for i in imports {
        graph
            .entry(i.from.as_str())
            .or_default()
            .entry(i.to.as_str())
            .or_insert(i);
        graph.entry(i.to.as_str()).or_default();
    }
    let mut out = Vec::new();
    for component in components(&graph) {
        if component.len() < 2 {
            continue;
        }
        // The shortest cycle through each file not yet shown in one.
        let inside: BTreeSet<&str> = component.iter().copied().collect();
        let mut shown: BTreeSet<&str> = BTreeSet::new();
        for &start in &component {
            if shown.contains(start) {
                continue;
            }
            let cycle = shortest_cycle(&graph, &inside, start);
            shown.extend(cycle.iter().copied());
            let mut line = format!("cycle: {} -> {start}", cycle.join(" -> "));
            for (k, from) in cycle.iter().enumerate() {
                let to = cycle.get(k + 1).copied().unwrap_or(start);
                let i = graph[from][to];
                line.push_str(&format!("\n  {}: `{}` reaches {}", i.from, i.written, i.to));
            }
            out.push(line);
        }
    }
    out
}

/// The shortest way from `start` back to itself inside one strongly
/// connected component (there is one), as the files it passes, `start`
/// first.
fn shortest_cycle<'a>(
    graph: &BTreeMap<&'a str, BTreeMap<&'a str, &Import>>,
    inside: &BTreeSet<&'a str>,
    start: &'a str,
) -> Vec<&'a str> {
    let mut back: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(n) = queue.pop_front() {
        for &m in graph[n].keys() {
            if !inside.contains(m) {
                continue;
            }
            if m == start {
                let mut cycle = vec![n];
                let mut at = n;
                while at != start {
                    at = back[at];
                    cycle.push(at);
                }
                cycle.reverse();
                return cycle;
            }
            if !back.contains_key(m) {
                back.insert(m, n);
                queue.push_back(m);
            }
        }
    }
    vec![start]
}

/// Tarjan's strongly connected components, each sorted, in a stable order.
fn components<'a>(graph: &BTreeMap<&'a str, BTreeMap<&'a str, &Import>>) -> Vec<Vec<&'a str>> {
    struct State<'a> {
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<&'a str>>,
    }
    fn visit<'a>(
        n: &'a str,
        graph: &BTreeMap<&'a str, BTreeMap<&'a str, &Import>>,
        s: &mut State<'a>,
    ) {
        let i = s.index.len();
        s.index.insert(n, i);
        s.low.insert(n, i);
        s.stack.push(n);
        s.on_stack.insert(n);
        for &m in graph[n].keys() {
            if !s.index.contains_key(m) {
                visit(m, graph, s);
                let low = s.low[n].min(s.low[m]);
                s.low.insert(n, low);
            } else if s.on_stack.contains(m) {
                let low = s.low[n].min(s.index[m]);
                s.low.insert(n, low);
            }
        }
        if s.low[n] == s.index[n] {
            let mut component = Vec::new();
            while let Some(m) = s.stack.pop() {
                s.on_stack.remove(m);
                component.push(m);
                if m == n {
                    break;
                }
            }
            component.sort();
            s.out.push(component);
        }
    }
    let mut s = State {
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for &n in graph.keys() {
        if !s.index.contains_key(n) {
            visit(n, graph, &mut s);
        }
    }
    s.out.sort();
    s.out
}

// ---------------------------------------------------------------------------
// Reading Rust, just enough: tokens without comments, strings and chars,
// then the `crate::` and `super::` paths among them.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    /// `::`
    Sep,
    Open,
    Close,
    Comma,
    Star,
    Other(char),
}

fn tokens(src: &str) -> Vec<Tok> {
    let c: Vec<char> = src.chars().collect();
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && at(i + 1) == '*' {
            let mut depth = 1;
            i += 2;
            while i < c.len() && depth > 0 {
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                } else {
                    i += 1;
                }
            }
        } else if ch == '"' {
            i = skip_string(&c, i + 1);
        } else if ch == '\'' {
            if at(i + 1) == '\\' {
                // An escaped char: up to the closing quote.
                i += 3;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(i + 2) == '\'' {
                i += 3;
            } else {
                i += 1; // A lifetime: its name follows as an identifier.
            }
        } else if ch.is_alphanumeric() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            if matches!(word.as_str(), "r" | "br" | "cr") && matches!(at(i), '"' | '#') {
                let mut hashes = 0;
                let mut j = i;
                while at(j) == '#' {
                    hashes += 1;
                    j += 1;
                }
                if at(j) == '"' {
                    i = skip_raw_string(&c, j + 1, hashes);
                    continue;
                }
                // A raw identifier (`r#type`): the name follows.
                i = j;
                continue;
            }
            if matches!(word.as_str(), "b" | "c") && at(i) == '"' {
                i = skip_string(&c, i + 1);
                continue;
            }
            out.push(Tok::Ident(word));
        } else if ch == ':' && at(i + 1) == ':' {
            out.push(Tok::Sep);
            i += 2;
        } else {
            match ch {
                '{' => out.push(Tok::Open),
                '}' => out.push(Tok::Close),
                ',' => out.push(Tok::Comma),
                '*' => out.push(Tok::Star),
                c if c.is_whitespace() => {}
                c => out.push(Tok::Other(c)),
            }
            i += 1;
        }
    }
    out
}

/// The index after a string's closing quote; `i` is just past the opening one.
fn skip_string(c: &[char], mut i: usize) -> usize {
    while i < c.len() {
        match c[i] {
            '\\' => i += 2,
            '"' => return i + 1,
            _ => i += 1,
        }
    }
    i
}

/// The index after a raw string's closing quote and hashes.
fn skip_raw_string(c: &[char], mut i: usize, hashes: usize) -> usize {
    while i < c.len() {
        if c[i] == '"' && (1..=hashes).all(|k| c.get(i + k) == Some(&'#')) {
            return i + 1 + hashes;
        }
        i += 1;
    }
    i
}

/// Every `crate::` and `super::` path in `toks`, absolute (segments after
/// `crate`), with the import as written (`use crate::a::b`). `module` is the
/// file's module path; inline `mod x { ... }` blocks are followed, so that
/// `super` in them means what it means to the compiler.
fn paths(toks: &[Tok], module: &[String]) -> Vec<(Vec<String>, String)> {
    let ident = |k: usize| match toks.get(k) {
        Some(Tok::Ident(s)) => Some(s.as_str()),
        _ => None,
    };
    let mut out = Vec::new();
    let mut depth = 0usize;
    // Inline modules open at this point: (name, brace depth inside it).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut k = 0;
    while k < toks.len() {
        match &toks[k] {
            Tok::Open => depth += 1,
            Tok::Close => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
            }
            Tok::Ident(w) if w == "mod" => {
                if let (Some(name), Some(Tok::Open)) = (ident(k + 1), toks.get(k + 2)) {
                    inline.push((name.to_string(), depth + 1));
                }
            }
            Tok::Ident(w)
                if (w == "crate" || w == "super") && toks.get(k + 1) == Some(&Tok::Sep) =>
            {
                let after_sep = k > 0 && toks[k - 1] == Tok::Sep;
                let macro_crate = k > 0 && toks[k - 1] == Tok::Other('$');
                if !after_sep && !macro_crate {
                    let mut here: Vec<String> = module.to_vec();
                    here.extend(inline.iter().map(|(n, _)| n.clone()));
                    let mut base = Vec::new();
                    let mut lead = vec!["crate"];
                    let mut j = k + 2;
                    if w == "super" {
                        base = here;
                        base.pop();
                        lead = vec!["super"];
                        while ident(j) == Some("super") && toks.get(j + 1) == Some(&Tok::Sep) {
                            base.pop();
                            lead.push("super");
                            j += 2;
                        }
                    }
                    let is_use = k > 0 && ident(k - 1) == Some("use");
                    let mut found = Vec::new();
                    tree(toks, j, &base, &mut found);
                    for p in found {
                        let mut written = lead.join("::");
                        for seg in &p[base.len().min(p.len())..] {
                            written.push_str("::");
                            written.push_str(seg);
                        }
                        if is_use {
                            written.insert_str(0, "use ");
                        }
                        out.push((p, written));
                    }
                }
            }
            _ => {}
        }
        k += 1;
    }
    out
}

/// Parses a use tree (or a plain path) at `k` under `prefix`, pushing every
/// full path it names; returns the index after it.
fn tree(toks: &[Tok], mut k: usize, prefix: &[String], out: &mut Vec<Vec<String>>) -> usize {
    let mut path = prefix.to_vec();
    loop {
        match toks.get(k) {
            Some(Tok::Ident(s)) if s == "self" => {
                out.push(path);
                return k + 1;
            }
            Some(Tok::Ident(s)) => {
                path.push(s.clone());
                if toks.get(k + 1) == Some(&Tok::Sep) {
                    k += 2;
                    continue;
                }
                out.push(path);
                return k + 1;
            }
            Some(Tok::Star) => {
                out.push(path);
                return k + 1;
            }
            Some(Tok::Open) => {
                k += 1;
                loop {
                    match toks.get(k) {
                        None => return k,
                        Some(Tok::Close) => return k + 1,
                        Some(Tok::Comma) => k += 1,
                        Some(_) => {
                            let next = tree(toks, k, &path, out);
                            // Skip `as alias` and anything else up to the
                            // next item of this group.
                            k = next;
                            while let Some(t) = toks.get(k) {
                                if matches!(t, Tok::Comma | Tok::Close) {
                                    break;
                                }
                                k += 1;
                            }
                        }
                    }
                }
            }
            // `crate::x::<T>` or the path ends: what was read so far.
            _ => {
                out.push(path);
                return k;
            }
        }
    }
}
