//! The crate's floors (docs/architecture.md), checked on the source itself: every file of
//! `src/` lives in a floor and imports only from the floors below it, no files import each
//! other in a circle, and no file is longer than 600 lines.
//!
//! An import is any path the compiler would resolve inside the crate: `use crate::…`,
//! `super::…`, `self::…`, a child module's name, and such paths written inline in code or
//! inside macro calls. A path is followed through `use` re-exports to the file that defines
//! the item, so `crate::Profile` counts as an import of the file that defines `Profile`, not
//! of `lib.rs`. `src/lib.rs` (the re-exports) and `src/bin/` (another crate) are left out.

use proc_macro2::{Span, TokenStream, TokenTree};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use syn::visit::{self, Visit};

/// Each floor, bottom up, with the floors it may import (its own is always allowed).
/// Keep in step with the table of docs/architecture.md.
const FLOORS: &[(&str, &[&str])] = &[
    ("sys", &[]),
    ("unwind", &["sys"]),
    ("record", &["sys", "unwind"]),
    ("read", &["sys", "unwind", "record"]),
    ("report", &["sys", "unwind", "record", "read"]),
    ("leaks", &["sys", "unwind", "record", "read", "report"]),
    (
        "timeline",
        &["sys", "unwind", "record", "read", "report", "leaks"],
    ),
    (
        "check",
        &["sys", "unwind", "record", "read", "report", "leaks"],
    ),
    (
        "service",
        &[
            "sys", "unwind", "record", "read", "report", "leaks", "timeline",
        ],
    ),
];

/// The longest a source file may be; tests can live in a sibling file.
const MAX_LINES: usize = 600;

/// One source file: its path under `src/` (with `/`) and its text.
struct Source {
    path: String,
    text: String,
}

/// A reference from one file to another.
struct Import {
    from: usize,
    line: usize,
    /// The path as written, made absolute (`crate::…`).
    path: String,
    to: usize,
}

/// What one file holds that matters here.
#[derive(Default)]
struct Parsed {
    /// Absolute paths it refers to, with the line of each.
    refs: Vec<(usize, Vec<String>)>,
    /// The names its top-level `use` items bind, with the absolute path each stands for.
    bindings: BTreeMap<String, Vec<String>>,
}

/// The module path of a file under `src/`: `report/json/mod.rs` is `report::json`.
fn module_of(path: &str) -> Vec<String> {
    let path = path.strip_suffix(".rs").unwrap_or(path);
    let mut segs: Vec<String> = path.split('/').map(str::to_owned).collect();
    if matches!(segs.last().map(String::as_str), Some("mod" | "lib")) {
        segs.pop();
    }
    segs
}

/// The floor of a file: its first folder. `None` for `lib.rs`; a file directly in `src/`
/// other than `lib.rs` has the floor `""`, which no floor may import and which fails the
/// real-tree test.
fn floor_of(path: &str) -> Option<&str> {
    match path.split_once('/') {
        Some((floor, _)) => Some(floor),
        None if path == "lib.rs" => None,
        None => Some(""),
    }
}

fn line_of(span: Span) -> usize {
    span.start().line
}

/// Walks one file's syntax tree, collecting the crate paths it uses.
struct Collector<'a> {
    /// The module being walked: the file's, plus any inline `mod x { … }` entered.
    module: Vec<String>,
    /// How many inline modules deep the walk is.
    depth: usize,
    /// The file's child modules declared as `mod x;` (only valid at depth 0).
    children: &'a BTreeSet<String>,
    out: Parsed,
}

impl Collector<'_> {
    /// The absolute path for `segs` written in the current module, if it names something of
    /// this crate.
    fn absolute(&self, segs: &[String]) -> Option<Vec<String>> {
        let first = segs.first()?;
        let mut base = match first.as_str() {
            "crate" => Vec::new(),
            "self" | "super" => self.module.clone(),
            _ if self.depth == 0 && self.children.contains(first) => self.module.clone(),
            _ => return None,
        };
        let mut rest = segs;
        if first == "crate" || first == "self" {
            rest = &segs[1..];
        }
        while rest.first().map(String::as_str) == Some("super") {
            base.pop()?;
            rest = &rest[1..];
        }
        base.extend(rest.iter().cloned());
        Some(base)
    }

    fn record(&mut self, line: usize, segs: &[String]) {
        if segs.len() < 2 {
            // `crate`, `super` or a lone name (a local that shares a child module's name)
            // names no item of another file.
            return;
        }
        if let Some(abs) = self.absolute(segs) {
            self.out.refs.push((line, abs));
        }
    }

    /// Leaves of a use tree: the path, the line of its last name, and the name it binds.
    fn use_leaves(tree: &syn::UseTree, prefix: &mut Vec<String>, out: &mut UseLeaves) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                Self::use_leaves(&p.tree, prefix, out);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                let mut segs = prefix.clone();
                let name = if n.ident == "self" {
                    segs.last().cloned()
                } else {
                    segs.push(n.ident.to_string());
                    Some(n.ident.to_string())
                };
                out.push((segs, n.ident.span(), name));
            }
            syn::UseTree::Rename(r) => {
                let mut segs = prefix.clone();
                if r.ident != "self" {
                    segs.push(r.ident.to_string());
                }
                out.push((segs, r.ident.span(), Some(r.rename.to_string())));
            }
            syn::UseTree::Glob(g) => out.push((prefix.clone(), g.star_token.spans[0], None)),
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    Self::use_leaves(t, prefix, out);
                }
            }
        }
    }

    /// Paths hidden in a macro call's tokens (`assert!(crate::x::f())`): runs of
    /// `ident :: ident …`.
    fn scan_tokens(&mut self, tokens: TokenStream) {
        let mut run: Vec<String> = Vec::new();
        let mut line = 0;
        let mut colons = 0;
        for tt in tokens {
            match tt {
                TokenTree::Ident(i) => {
                    if colons == 2 || run.is_empty() {
                        if run.is_empty() {
                            line = line_of(i.span());
                        }
                        run.push(i.to_string());
                    } else {
                        self.end_run(line, &mut run);
                        line = line_of(i.span());
                        run.push(i.to_string());
                    }
                    colons = 0;
                }
                TokenTree::Punct(p) if p.as_char() == ':' && !run.is_empty() && colons < 2 => {
                    colons += 1;
                }
                TokenTree::Group(g) => {
                    self.end_run(line, &mut run);
                    colons = 0;
                    self.scan_tokens(g.stream());
                }
                _ => {
                    self.end_run(line, &mut run);
                    colons = 0;
                }
            }
        }
        self.end_run(line, &mut run);
    }

    fn end_run(&mut self, line: usize, run: &mut Vec<String>) {
        if run.len() >= 2 {
            let segs = std::mem::take(run);
            self.record(line, &segs);
        }
        run.clear();
    }
}

type UseLeaves = Vec<(Vec<String>, Span, Option<String>)>;

impl<'ast> Visit<'ast> for Collector<'_> {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        // An inline test module may set up a scene with any floor, as tests in another file
        // may; the floors are about the code that ships.
        let test_only = m.attrs.iter().any(|a| {
            a.path().is_ident("cfg") && a.parse_args::<syn::Ident>().is_ok_and(|i| i == "test")
        });
        if m.content.is_some() && !test_only {
            self.module.push(m.ident.to_string());
            self.depth += 1;
            visit::visit_item_mod(self, m);
            self.depth -= 1;
            self.module.pop();
        }
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        let mut leaves = Vec::new();
        Self::use_leaves(&u.tree, &mut Vec::new(), &mut leaves);
        for (segs, span, name) in leaves {
            let Some(abs) = self.absolute(&segs) else {
                continue;
            };
            self.out.refs.push((line_of(span), abs.clone()));
            if let (0, Some(name)) = (self.depth, name) {
                self.out.bindings.insert(name, abs);
            }
        }
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        if p.leading_colon.is_none() {
            let segs: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
            if let Some(first) = p.segments.first() {
                self.record(line_of(first.ident.span()), &segs);
            }
        }
        visit::visit_path(self, p);
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        visit::visit_macro(self, m);
        self.scan_tokens(m.tokens.clone());
    }

    fn visit_visibility(&mut self, _: &'ast syn::Visibility) {
        // `pub(crate)`, `pub(in crate::x)`: a visibility, not an import.
    }
}

/// What is wrong with a tree of sources: one line per problem.
fn problems(sources: &[Source]) -> Vec<String> {
    let mut problems = Vec::new();
    for s in sources {
        let lines = s.text.lines().count();
        if lines > MAX_LINES {
            problems.push(format!(
                "src/{}: {lines} lines (at most {MAX_LINES}; tests can move to a sibling file)",
                s.path
            ));
        }
    }
    let (imports, parse_errors) = imports(sources);
    problems.extend(parse_errors);
    problems.extend(floor_violations(sources, &imports));
    problems.extend(circles(sources, &imports));
    problems
}

/// The `#[path = "…"]` of a `mod x;` item, if it has one.
fn path_attr(m: &syn::ItemMod) -> Option<String> {
    m.attrs.iter().find_map(|a| match &a.meta {
        syn::Meta::NameValue(nv) if nv.path.is_ident("path") => match &nv.value {
            syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) => Some(s.value()),
            _ => None,
        },
        _ => None,
    })
}

/// Every import between two different files of the tree (`bin/` left out).
fn imports(sources: &[Source]) -> (Vec<Import>, Vec<String>) {
    let mut errors = Vec::new();
    let files: Vec<Option<syn::File>> = sources
        .iter()
        .map(|s| match syn::parse_file(&s.text) {
            Ok(f) => Some(f),
            Err(e) => {
                errors.push(format!(
                    "src/{}:{}: cannot parse: {e}",
                    s.path,
                    line_of(e.span())
                ));
                None
            }
        })
        .collect();
    // A file's module follows from its path, unless a `#[path]` attribute (a test module in
    // a sibling file, say) declares it elsewhere.
    let mut module_paths: Vec<Vec<String>> = sources.iter().map(|s| module_of(&s.path)).collect();
    for (i, f) in files.iter().enumerate() {
        let dir = sources[i].path.rsplit_once('/').map_or("", |(d, _)| d);
        for item in f.iter().flat_map(|f| &f.items) {
            if let syn::Item::Mod(m) = item
                && m.content.is_none()
                && let Some(rel) = path_attr(m)
            {
                let target = if dir.is_empty() {
                    rel
                } else {
                    format!("{dir}/{rel}")
                };
                if let Some(j) = sources.iter().position(|s| s.path == target) {
                    let mut module = module_of(&sources[i].path);
                    module.push(m.ident.to_string());
                    module_paths[j] = module;
                }
            }
        }
    }
    let modules: BTreeMap<Vec<String>, usize> = module_paths
        .iter()
        .enumerate()
        .map(|(i, m)| (m.clone(), i))
        .collect();
    let parsed: Vec<Parsed> = files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let Some(file) = f else {
                return Parsed::default();
            };
            let children: BTreeSet<String> = file
                .items
                .iter()
                .filter_map(|item| match item {
                    syn::Item::Mod(m) if m.content.is_none() => Some(m.ident.to_string()),
                    _ => None,
                })
                .collect();
            let mut c = Collector {
                module: module_paths[i].clone(),
                depth: 0,
                children: &children,
                out: Parsed::default(),
            };
            c.visit_file(file);
            c.out
        })
        .collect();

    // The file that defines what `path` names: the deepest module file on the path, followed
    // through that file's `use` bindings when the next name is one of them.
    let resolve = |path: &[String]| -> Option<usize> {
        let mut path = path.to_vec();
        for _ in 0..16 {
            let mut k = 0;
            while k < path.len() && modules.contains_key(&path[..=k]) {
                k += 1;
            }
            let file = *modules.get(&path[..k])?;
            match path.get(k).and_then(|name| parsed[file].bindings.get(name)) {
                Some(target) if k < path.len() => {
                    let mut next = target.clone();
                    next.extend(path[k + 1..].iter().cloned());
                    path = next;
                }
                _ => return Some(file),
            }
        }
        None
    };

    let mut imports = Vec::new();
    for (from, p) in parsed.iter().enumerate() {
        for (line, abs) in &p.refs {
            if let Some(to) = resolve(abs)
                && to != from
                && sources[to].path != "lib.rs"
            {
                imports.push(Import {
                    from,
                    line: *line,
                    path: format!("crate::{}", abs.join("::")),
                    to,
                });
            }
        }
    }
    (imports, errors)
}

/// An import of a floor that its file's floor may not import.
fn floor_violations(sources: &[Source], imports: &[Import]) -> Vec<String> {
    let allowed: BTreeMap<&str, &[&str]> = FLOORS.iter().copied().collect();
    let mut out = Vec::new();
    for s in sources {
        if let Some(floor) = floor_of(&s.path)
            && !allowed.contains_key(floor)
        {
            out.push(format!(
                "src/{}: not in a floor ({})",
                s.path,
                FLOORS.iter().map(|f| f.0).collect::<Vec<_>>().join(", ")
            ));
        }
    }
    let mut seen = BTreeSet::new();
    for i in imports {
        let (Some(from), Some(to)) = (
            floor_of(&sources[i.from].path),
            floor_of(&sources[i.to].path),
        ) else {
            continue;
        };
        if from == to || allowed.get(from).is_some_and(|a| a.contains(&to)) {
            continue;
        }
        let line = format!(
            "src/{}:{}: {from}/ imports {to}/ ({} in src/{}); {from}/ may import {}",
            sources[i.from].path,
            i.line,
            i.path,
            sources[i.to].path,
            match allowed.get(from) {
                Some([]) => "nothing of the crate".to_owned(),
                Some(a) => a.join(", "),
                None => "nothing (not a floor)".to_owned(),
            }
        );
        if seen.insert(line.clone()) {
            out.push(line);
        }
    }
    out
}

/// One circle of imports for each set of files that import each other (a depth-first walk;
/// an edge back to a file still on the walk's stack closes a circle).
fn circles(sources: &[Source], imports: &[Import]) -> Vec<String> {
    let mut edges: BTreeMap<usize, BTreeMap<usize, &Import>> = BTreeMap::new();
    for i in imports {
        edges.entry(i.from).or_default().entry(i.to).or_insert(i);
    }
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        New,
        OnStack,
        Done,
    }
    let mut state = vec![State::New; sources.len()];
    let mut out = Vec::new();
    for start in 0..sources.len() {
        if state[start] != State::New {
            continue;
        }
        // (file, its outgoing edges not yet followed)
        let mut stack: Vec<(usize, Vec<&Import>)> = Vec::new();
        let outgoing = |f: usize| -> Vec<&Import> {
            edges
                .get(&f)
                .map_or(Vec::new(), |m| m.values().rev().copied().collect())
        };
        state[start] = State::OnStack;
        stack.push((start, outgoing(start)));
        while let Some((_, pending)) = stack.last_mut() {
            match pending.pop() {
                Some(edge) => match state[edge.to] {
                    State::New => {
                        state[edge.to] = State::OnStack;
                        stack.push((edge.to, outgoing(edge.to)));
                    }
                    State::OnStack => {
                        let from = stack.iter().position(|(f, _)| *f == edge.to).unwrap();
                        let mut steps: Vec<String> = stack[from..]
                            .windows(2)
                            .map(|w| {
                                let e = edges[&w[0].0][&w[1].0];
                                format!("src/{}:{} ({})", sources[e.from].path, e.line, e.path)
                            })
                            .collect();
                        steps.push(format!(
                            "src/{}:{} ({})",
                            sources[edge.from].path, edge.line, edge.path
                        ));
                        out.push(format!("import circle: {}", steps.join(" → ")));
                    }
                    State::Done => {}
                },
                None => {
                    let (f, _) = stack.pop().unwrap();
                    state[f] = State::Done;
                }
            }
        }
    }
    out
}

/// Every `.rs` file under `dir`, with its path relative to `root`.
fn read_tree(root: &Path, dir: &Path, out: &mut Vec<Source>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            read_tree(root, &p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            let rel = p.strip_prefix(root).unwrap();
            let path = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{path}: {e}"));
            out.push(Source { path, text });
        }
    }
}

fn crate_sources() -> Vec<Source> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    read_tree(&src, &src, &mut out);
    out
}

fn assert_clean(what: &str, problems: Vec<String>) {
    assert!(
        problems.is_empty(),
        "{what}: {} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// The library, without the command-line tool (another crate, with its own `crate::`).
fn library_sources() -> Vec<Source> {
    crate_sources()
        .into_iter()
        .filter(|s| !s.path.starts_with("bin/"))
        .collect()
}

/// What the tree still breaks today, each named by the files it involves (see "What is not
/// yet one-way" in docs/architecture.md). A problem not listed here fails the tests, and so
/// does an entry that no longer occurs: the list only shrinks.
const KNOWN_FLOOR_BREAKS: &[&str] = &[];
const KNOWN_CIRCLES: &[&str] = &[];
const KNOWN_LONG_FILES: &[&str] = &[];

/// The files a problem line names, sorted: the key of [`KNOWN_CIRCLES`] and friends.
fn files_named(problem: &str) -> String {
    let mut files: Vec<&str> = problem
        .split(|c: char| c.is_whitespace() || c == ':' || c == '(' || c == ')')
        .filter(|w| w.starts_with("src/") && w.ends_with(".rs"))
        .collect();
    files.sort_unstable();
    files.dedup();
    files.join(" ")
}

/// Fails on a problem whose files are not a known entry, and on a known entry that no longer
/// occurs.
fn assert_only_known(what: &str, problems: Vec<String>, known: &[&str]) {
    let unknown: Vec<String> = problems
        .iter()
        .filter(|p| !known.contains(&files_named(p).as_str()))
        .cloned()
        .collect();
    assert_clean(what, unknown);
    let keys: Vec<String> = problems.iter().map(|p| files_named(p)).collect();
    let gone: Vec<String> = known
        .iter()
        .filter(|k| !keys.iter().any(|key| key == *k))
        .map(|k| format!("{k}: fixed; remove it from the known list"))
        .collect();
    assert_clean(what, gone);
}

#[test]
fn every_file_imports_only_from_floors_below() {
    let sources = library_sources();
    let (imports, errors) = imports(&sources);
    assert_clean("parse", errors);
    assert_only_known(
        "floors",
        floor_violations(&sources, &imports),
        KNOWN_FLOOR_BREAKS,
    );
}

#[test]
fn no_files_import_each_other_in_a_circle() {
    let sources = library_sources();
    let (imports, errors) = imports(&sources);
    assert_clean("parse", errors);
    assert_only_known("circles", circles(&sources, &imports), KNOWN_CIRCLES);
}

#[test]
fn no_source_file_is_longer_than_600_lines() {
    let long: Vec<String> = crate_sources()
        .iter()
        .filter(|s| s.text.lines().count() > MAX_LINES)
        .map(|s| format!("src/{}: {} lines", s.path, s.text.lines().count()))
        .collect();
    assert_only_known("file length", long, KNOWN_LONG_FILES);
}

#[test]
fn the_floor_table_goes_one_way() {
    // Each floor may import only floors listed before it: the table itself has no circle.
    for (i, (floor, may)) in FLOORS.iter().enumerate() {
        for m in *may {
            let below = FLOORS[..i].iter().any(|(f, _)| f == m);
            assert!(below, "{floor} may import {m}, which is not below it");
        }
    }
}

fn synthetic(files: &[(&str, &str)]) -> Vec<Source> {
    files
        .iter()
        .map(|(path, text)| Source {
            path: (*path).to_owned(),
            text: (*text).to_owned(),
        })
        .collect()
}

/// A small crate with its floors in order: the checker finds nothing.
fn clean_tree() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            "lib.rs",
            "mod sys;\nmod record;\nmod report;\npub use report::render;\npub use record::table::Table;\n",
        ),
        ("sys/mod.rs", "pub mod guard;\n"),
        ("sys/guard.rs", "pub fn enter() {}\n"),
        ("record/mod.rs", "pub mod table;\n"),
        (
            "record/table.rs",
            "use crate::sys::guard;\n\
             /// Says `crate::report::render` in a comment: not an import.\n\
             pub struct Table;\n\
             pub fn add() { guard::enter(); let _ = \"crate::report::render\"; }\n",
        ),
        ("report/mod.rs", "mod text;\npub use text::render;\n"),
        (
            "report/text.rs",
            "use crate::Table;\npub fn render(_: &Table) { crate::sys::guard::enter(); }\n",
        ),
    ]
}

#[test]
fn a_tree_in_order_has_no_problems() {
    assert_clean("clean tree", problems(&synthetic(&clean_tree())));
}

#[test]
fn a_lower_floor_importing_a_higher_one_is_named_with_its_line() {
    for (how, line, text) in [
        ("a use", 1, "use crate::report::render;\npub fn f() {}\n"),
        ("a root re-export", 2, "pub fn f() {}\nuse crate::render;\n"),
        (
            "an inline path",
            3,
            "pub fn f() {\n}\nfn g() { crate::report::render(); }\n",
        ),
        (
            "a path in a macro call",
            3,
            "pub fn f() {}\n\nfn g() { assert!(crate::render == 0); }\n",
        ),
        (
            "a grouped use",
            3,
            "use crate::{sys::guard,\n    record::table,\n    report::{render}};\n",
        ),
    ] {
        let mut tree = clean_tree();
        tree.push(("record/hook.rs", text));
        tree[3].1 = "pub mod table;\nmod hook;\n";
        let problems = problems(&synthetic(&tree));
        assert_eq!(problems.len(), 1, "{how}: {problems:?}");
        let expected = format!(
            "src/record/hook.rs:{line}: record/ imports report/ (crate::report::render in \
             src/report/text.rs); record/ may import sys, unwind"
        );
        assert!(
            problems[0].starts_with(&format!(
                "src/record/hook.rs:{line}: record/ imports report/"
            )),
            "{how}: {problems:?} (expected {expected})"
        );
    }
}

#[test]
fn a_file_outside_the_floors_is_named() {
    let mut tree = clean_tree();
    tree.push(("helpers.rs", "pub fn h() {}\n"));
    let problems = problems(&synthetic(&tree));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("src/helpers.rs: not in a floor"),
        "{problems:?}"
    );
}

#[test]
fn a_circle_of_imports_is_named_file_by_file() {
    // Within one floor, through `super::`, a child module's name and `crate::`.
    let mut tree = clean_tree();
    tree[5].1 = "mod text;\nmod page;\npub use text::render;\n";
    tree[6].1 = "use super::page::Page;\npub fn render() {}\n";
    tree.push((
        "report/page.rs",
        "pub struct Page;\n\nfn f() { crate::report::render(); }\n",
    ));
    let problems = problems(&synthetic(&tree));
    assert_eq!(problems.len(), 1, "{problems:?}");
    let p = &problems[0];
    assert!(p.starts_with("import circle: "), "{p}");
    assert!(
        p.contains("src/report/text.rs:1 (crate::report::page::Page)"),
        "{p}"
    );
    assert!(
        p.contains("src/report/page.rs:3 (crate::report::render)"),
        "{p}"
    );
}

#[test]
fn a_long_file_is_named() {
    let long = "fn f() {}\n".repeat(MAX_LINES + 1);
    let mut tree = clean_tree();
    tree[2].1 = &long;
    let problems = problems(&synthetic(&tree));
    assert_eq!(
        problems,
        [format!(
            "src/sys/guard.rs: {} lines (at most 600; tests can move to a sibling file)",
            MAX_LINES + 1
        )]
    );
}
