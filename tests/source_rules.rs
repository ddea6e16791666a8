//! Rules about where things live in `src/` (issue 13), checked on the source text.
//!
//! * No import cycles between the library's top-level modules: each module may use only
//!   modules below it, so it can be read, tested and changed without the ones above. The
//!   graph has a node per top-level module of `src/` (a submodule counts under its parent,
//!   `src/net/dhcp.rs` is `net`) and an edge for every `crate::X` path in `use` lines and in
//!   code.
//! * Absolute paths are written only in `src/paths.rs` (the engine's URL paths only in
//!   `src/protocol.rs`).
//!
//! Comments and unit tests (`tests.rs` files, a trailing `#[cfg(test)] mod tests`) are left
//! out: a test may use anything, and its fixtures are its own.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// `from → to → where` (the first `file:line` seen for that edge).
type Graph = BTreeMap<String, BTreeMap<String, String>>;

#[test]
fn no_import_cycles_between_modules() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = module_graph(&src);
    assert!(
        graph.len() > 10,
        "read too few modules from {}",
        src.display()
    );
    let cycles: Vec<String> = strongly_connected(&graph)
        .iter()
        .filter(|c| c.len() > 1)
        .map(|c| describe(&graph, c))
        .collect();
    assert!(
        cycles.is_empty(),
        "import cycles between modules of src/ (move the shared piece down):\n{}",
        cycles.join("\n")
    );
}

/// The same rule one level down: the files of one folder (`src/flow/enroll.rs`,
/// `src/flow/install.rs`, …) do not use each other in a loop either. `mod.rs` (or `X.rs` of
/// `X/`) is the folder's parent and is left out: a child naming its parent is the module tree.
#[test]
fn no_import_cycles_between_the_files_of_a_folder() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut cycles = Vec::new();
    let mut folders = 0;
    for dir in folders_of(&src) {
        let graph = sibling_graph(&src, &dir);
        folders += 1;
        cycles.extend(
            strongly_connected(&graph)
                .iter()
                .filter(|c| c.len() > 1)
                .map(|c| describe(&graph, c)),
        );
    }
    assert!(folders >= 3, "read too few folders of {}", src.display());
    assert!(
        cycles.is_empty(),
        "import cycles between the files of a folder of src/ (move the shared piece into a file of its own):\n{}",
        cycles.join("\n")
    );
}

/// Edges `file → sibling` for each `super::sibling` in the folder's files.
fn sibling_graph(src: &Path, dir: &Path) -> Graph {
    let stem = |p: &Path| p.file_stem().and_then(|s| s.to_str()).map(str::to_string);
    let files: Vec<PathBuf> = fs::read_dir(dir)
        .expect("readable folder")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .filter(|p| !matches!(stem(p).as_deref(), Some("mod" | "tests")))
        .collect();
    let names: BTreeSet<String> = files.iter().filter_map(|p| stem(p)).collect();
    let mut graph = Graph::new();
    for file in &files {
        let name = stem(file).expect("a file name");
        let code = without_comments_and_tests(&fs::read_to_string(file).expect("readable source"));
        let shown = format!(
            "src/{}",
            file.strip_prefix(src).expect("under src/").display()
        );
        let edges = graph.entry(name.clone()).or_default();
        for (at, target) in paths_after(&code, "super::") {
            if names.contains(&target) && target != name {
                let line = code[..at].matches('\n').count() + 1;
                edges.entry(target).or_insert(format!("{shown}:{line}"));
            }
        }
    }
    graph
}

#[test]
fn the_checker_sees_a_cycle_and_grouped_imports() {
    let mut graph = Graph::new();
    let text = "use crate::{b::X, c};\n// crate::d in a comment\nfn f() { crate::a::g(); }\n\
                use crate::{\n    f::{G, H},\n    self,\n};\nmacro_rules! m { () => { $crate::h() } }\n\
                #[cfg(test)]\nmod tests {\n    use crate::e;\n}\n";
    add_edges(&mut graph, "a", "src/a.rs", text);
    let to: Vec<(&str, &str)> = graph["a"]
        .iter()
        .map(|(m, at)| (m.as_str(), at.as_str()))
        .collect();
    assert_eq!(
        to,
        [
            ("b", "src/a.rs:1"),
            ("c", "src/a.rs:1"),
            ("f", "src/a.rs:4")
        ]
    );
    add_edges(&mut graph, "b", "src/b/x.rs", "use crate::a;\n");
    let sccs = strongly_connected(&graph);
    let cycle = sccs.iter().find(|c| c.len() > 1).expect("a ↔ b is a cycle");
    let shown = describe(&graph, cycle);
    assert!(shown.contains("a → b (src/a.rs:1)"), "{shown}");
    assert!(shown.contains("b → a (src/b/x.rs:1)"), "{shown}");
}

/// Files allowed to write absolute paths, and literals allowed elsewhere with the reason.
const PATH_HOMES: [&str; 2] = ["paths.rs", "protocol.rs"];
const PATH_EXCEPTIONS: [(&str, &str); 1] = [
    // The form of a `root=` argument (`root=/dev/…`), not a file we open by name.
    ("init.rs", "\"/dev/\""),
];

#[test]
fn absolute_paths_only_in_paths_rs() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    for file in rust_files(&src) {
        let rel = file.strip_prefix(&src).expect("under src/");
        let name = rel.to_string_lossy().into_owned();
        if PATH_HOMES.contains(&name.as_str()) || name.ends_with("tests.rs") {
            continue;
        }
        let text = fs::read_to_string(&file).expect("readable source");
        for (line, literal) in path_literals(&without_comments_and_tests(&text)) {
            if !PATH_EXCEPTIONS.contains(&(name.as_str(), literal.as_str())) {
                found.push(format!("  src/{name}:{line}: {literal}"));
            }
        }
    }
    assert!(
        found.is_empty(),
        "absolute paths outside src/paths.rs (name them there):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_path_check_sees_literals_not_formats() {
    let code = "let a = \"/etc/x\";\nlet b = format!(\"{A}/b\");\nlet c = \"a/b\";\n";
    assert_eq!(path_literals(code), [(1, "\"/etc/x\"".to_string())]);
}

/// Rust ignores SIGPIPE, so the print macros panic when the reader has gone away
/// (`config show | head -1`); console output goes through `src/console.rs` instead.
const PRINT_MACROS: [&str; 4] = ["println!", "print!", "eprintln!", "eprint!"];

#[test]
fn console_output_only_through_console_rs() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    for file in rust_files(&src) {
        let rel = file.strip_prefix(&src).expect("under src/");
        let name = rel.to_string_lossy().into_owned();
        if name == "console.rs" || name.ends_with("tests.rs") {
            continue;
        }
        let text = fs::read_to_string(&file).expect("readable source");
        for (i, line) in without_comments_and_tests(&text).lines().enumerate() {
            if print_macro(line) {
                found.push(format!("  src/{name}:{}: {}", i + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "print macros outside src/console.rs (use console::line / console::err_line):\n{}",
        found.join("\n")
    );
}

/// A print macro called on `line` (not `writeln!` or a name that merely ends the same).
fn print_macro(line: &str) -> bool {
    PRINT_MACROS.iter().any(|m| {
        line.match_indices(m).any(|(at, _)| {
            let before = line[..at].chars().next_back();
            !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
        })
    })
}

#[test]
fn the_print_check_sees_macros_not_writes() {
    assert!(print_macro("    println!(\"x\");"));
    assert!(print_macro("Err(e) => eprintln!(\"{e}\"),"));
    assert!(!print_macro("writeln!(f, \"x\")?;"));
    assert!(!print_macro("console::line(\"x\")?;"));
}

/// `(line, literal)` of each string literal that starts with `/` and a letter.
fn path_literals(code: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, line) in code.lines().enumerate() {
        for (at, _) in line.match_indices("\"/") {
            let rest = &line[at + 1..];
            if !rest[1..].starts_with(|c: char| c.is_ascii_alphabetic()) {
                continue;
            }
            let end = rest.find('"').map_or(rest.len(), |e| e + 1);
            out.push((i + 1, format!("\"{}", &rest[..end])));
        }
    }
    out
}

/// Every top-level module's edges to the others.
fn module_graph(src: &Path) -> Graph {
    let mut graph = Graph::new();
    for file in rust_files(src) {
        let rel = file.strip_prefix(src).expect("under src/");
        let Some(module) = top_module(rel) else {
            continue;
        };
        if rel.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let text = fs::read_to_string(&file).expect("readable source");
        let shown = format!("src/{}", rel.display());
        graph.entry(module.clone()).or_default();
        add_edges(&mut graph, &module, &shown, &text);
    }
    graph
}

/// `src/X.rs` and `src/X/…` belong to `X`; the crate roots to none.
fn top_module(rel: &Path) -> Option<String> {
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_string())
}

/// Every path below `dir` (files and folders), sorted, depth first.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    let mut out = Vec::new();
    for path in entries {
        if path.is_dir() {
            out.extend(tree(&path));
        }
        out.push(path);
    }
    out
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    tree(dir)
        .into_iter()
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "rs"))
        .collect()
}

fn folders_of(dir: &Path) -> Vec<PathBuf> {
    tree(dir).into_iter().filter(|p| p.is_dir()).collect()
}

fn text_files(dir: &Path) -> Vec<PathBuf> {
    tree(dir).into_iter().filter(|p| p.is_file()).collect()
}

/// The edges `module → X` for each `crate::X` in `text`, outside comments and unit tests.
fn add_edges(graph: &mut Graph, module: &str, shown: &str, text: &str) {
    let code = without_comments_and_tests(text);
    for (at, target) in crate_paths(&code) {
        if target != module {
            let line = code[..at].matches('\n').count() + 1;
            let edges = graph.entry(module.to_string()).or_default();
            edges.entry(target).or_insert(format!("{shown}:{line}"));
        }
    }
}

/// `text` up to a `#[cfg(test)] mod tests {`, each line cut at `//` (lines kept, so the
/// line numbers still hold).
fn without_comments_and_tests(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let next_is_tests = lines
            .peek()
            .is_some_and(|l| l.trim_start().starts_with("mod tests {"));
        if line.trim() == "#[cfg(test)]" && next_is_tests {
            break;
        }
        out += line.split("//").next().unwrap_or("");
        out.push('\n');
    }
    out
}

/// Where each `crate::X` starts and its `X`; `crate::{a, b::{c, d}}` gives `a` and `b`.
fn crate_paths(code: &str) -> Vec<(usize, String)> {
    paths_after(code, "crate::")
}

/// [`crate_paths`] for any prefix (`super::` for the files of one folder).
fn paths_after(code: &str, prefix: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (at, _) in code.match_indices(prefix) {
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$' || c == ':') {
            continue; // `$crate::`, `other_crate::`, `super::super::`
        }
        let rest = &code[at + prefix.len()..];
        match rest.strip_prefix('{') {
            Some(group) => out.extend(
                top_level_items(group)
                    .filter_map(first_name)
                    .map(|n| (at, n)),
            ),
            None => out.extend(first_name(rest).map(|n| (at, n))),
        }
    }
    out
}

/// The comma-separated items of a `{…}` group (its opening brace already taken), nested
/// groups kept whole.
fn top_level_items(group: &str) -> impl Iterator<Item = &str> {
    let mut depth = 0;
    let mut start = 0;
    let mut items = Vec::new();
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                items.push(&group[start..i]);
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&group[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.into_iter()
}

fn first_name(path: &str) -> Option<String> {
    let name: String = path
        .trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty() && name != "self").then_some(name)
}

/// Tarjan's strongly connected components, each sorted.
fn strongly_connected(graph: &Graph) -> Vec<Vec<String>> {
    struct Walk<'a> {
        graph: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(w: &mut Walk<'a>, v: &'a str) {
        let n = w.index.len();
        w.index.insert(v, n);
        w.low.insert(v, n);
        w.stack.push(v);
        w.on_stack.insert(v);
        for to in w.graph.get(v).into_iter().flat_map(|e| e.keys()) {
            let to = to.as_str();
            if !w.index.contains_key(to) {
                visit(w, to);
                let low = w.low[v].min(w.low[to]);
                w.low.insert(v, low);
            } else if w.on_stack.contains(to) {
                let low = w.low[v].min(w.index[to]);
                w.low.insert(v, low);
            }
        }
        if w.low[v] == w.index[v] {
            let mut component = Vec::new();
            while let Some(x) = w.stack.pop() {
                w.on_stack.remove(x);
                component.push(x.to_string());
                if x == v {
                    break;
                }
            }
            component.sort();
            w.out.push(component);
        }
    }
    let mut w = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !w.index.contains_key(v.as_str()) {
            visit(&mut w, v);
        }
    }
    w.out
}

/// A cycle's modules and the edges between them, each with the first place it is made.
fn describe(graph: &Graph, component: &[String]) -> String {
    let mut out = format!("cycle among {}:", component.join(", "));
    for from in component {
        for (to, at) in graph.get(from).into_iter().flatten() {
            if component.contains(to) {
                out += &format!("\n  {from} → {to} ({at})");
            }
        }
    }
    out
}

/// Where the repository's text may point for its facts: its own `docs/`, never a folder
/// outside the checkout, and only at documents that exist.
const CITING_DIRS: &[&str] = &[
    "src",
    "tests",
    "docs",
    "build-support",
    "image",
    "dracut",
    "fuzz/fuzz_targets",
    "qemu-tests/src",
    "qemu-tests/tests",
];

#[test]
fn citations_stay_inside_the_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = CITING_DIRS
        .iter()
        .flat_map(|d| text_files(&root.join(d)))
        .collect();
    files.extend(["README.md", "qemu-tests/README.md", "Cargo.toml"].map(|f| root.join(f)));
    let mut found = Vec::new();
    for file in files {
        let text = fs::read_to_string(&file).unwrap_or_default();
        let rel = file
            .strip_prefix(root)
            .expect("in the repo")
            .display()
            .to_string();
        if rel == "tests/source_rules.rs" {
            continue; // its own examples of bad citations
        }
        for (n, line) in text.lines().enumerate() {
            for bad in bad_citations(root, line) {
                found.push(format!("  {rel}:{}: {bad}", n + 1));
            }
        }
    }
    assert!(
        found.is_empty(),
        "citations outside docs/:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_citation_check_sees_outside_and_missing_documents() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert_eq!(bad_citations(root, "see docs/design.md §4").len(), 0);
    assert_eq!(bad_citations(root, "see ../shared/docs/design.md").len(), 1);
    assert_eq!(bad_citations(root, "(docs/no-such-file.md §2)").len(), 1);
}

/// A line's citations that leave the repository or name a `docs/*.md` that is not there.
fn bad_citations(root: &Path, line: &str) -> Vec<String> {
    let mut bad = Vec::new();
    if line.contains("shared/docs") || line.contains("../shared") {
        bad.push("a folder outside the repository".to_string());
    }
    for (at, _) in line.match_indices("docs/") {
        let name: String = line[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || "/._-".contains(*c))
            .collect();
        let name = name.trim_end_matches('.');
        let preceded = line[..at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '/');
        if name.ends_with(".md") && !preceded && !root.join(name).is_file() {
            bad.push(format!("{name} does not exist"));
        }
    }
    bad
}
