//! The core's modules depend on each other one way only (issue 8): what
//! everything stands on (stanzas, the store, the config) at the bottom, then
//! classification, the context the services share, the services, the router,
//! and the shell on top. This reads every `crate::` and `super::` path in
//! `src/` and fails on a module that reaches up or sideways, on a cycle, and
//! on a module whose layer is not declared here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Bottom first. A module may use modules of lower layers; within a layer
/// only the first one, whose modules share what the whole crate stands on,
/// may use each other (cycles are still refused there).
const LAYERS: &[&[&str]] = &[
    &[
        "address",
        "allocator",
        "capabilities",
        "config",
        "metrics",
        "rate_limit",
        "stanza",
        "status",
        "store",
        "tls",
        "wire",
    ],
    // Issue 10: the conversation list as read from the store, which the
    // effects render after a stanza's writes.
    &["inbox::view"],
    &["inbox::render"],
    &["inbox::push"],
    // What the core hands the shell.
    &["effects"],
    // Classification: every stanza is read once, here.
    &["incoming"],
    // What the services share, so that they need not import each other.
    &["context"],
    // The services, in the one order in which they may use each other.
    &["presence"],
    &["contact_query"],
    &["conversation::direct"],
    &["conversation::room"],
    // Issue 10: the list's service, its IQs and commands.
    &["inbox"],
    &["query"],
    // Issue 11: the team desks (they extend the service's command list).
    &["desk"],
    // The router.
    &["service"],
    // The shell: sockets, the clock, durability.
    &["component"],
];

/// Parent modules that only gather their children.
const CONTAINERS: &[&str] = &["conversation"];

fn layer_of(unit: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&unit))
}

/// The declared unit a module path belongs to (the longest declared prefix).
fn unit_of(path: &[String]) -> Option<String> {
    (1..=path.len()).rev().find_map(|n| {
        let p = path[..n].join("::");
        layer_of(&p).map(|_| p)
    })
}

/// The module path of a file under `src/`.
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_owned());
    }
    parts
}

/// Code without its comments (line and block), string contents kept out.
fn code_only(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let b = src.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            i += 2;
            while i < b.len() && !b[i..].starts_with(b"*/") {
                i += 1;
            }
            i += 2;
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The paths a `crate::`/`super::` path names, braces expanded:
/// `a::{b, c::d}` gives `a::b` and `a::c::d`.
fn expand(rest: &str) -> Vec<Vec<String>> {
    fn tree(s: &[char], i: &mut usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
        let mut path = prefix;
        loop {
            while *i < s.len() && s[*i].is_whitespace() {
                *i += 1;
            }
            if *i < s.len() && s[*i] == '{' {
                *i += 1;
                loop {
                    tree(s, i, path.clone(), out);
                    while *i < s.len() && s[*i].is_whitespace() {
                        *i += 1;
                    }
                    match s.get(*i) {
                        Some(',') => *i += 1,
                        Some('}') => {
                            *i += 1;
                            return;
                        }
                        _ => return,
                    }
                    while *i < s.len() && s[*i].is_whitespace() {
                        *i += 1;
                    }
                    if s.get(*i) == Some(&'}') {
                        *i += 1;
                        return;
                    }
                }
            }
            let start = *i;
            while *i < s.len() && is_ident(s[*i]) {
                *i += 1;
            }
            if *i > start {
                path.push(s[start..*i].iter().collect());
            }
            if s[*i..].starts_with(&[':', ':']) {
                *i += 2;
                continue;
            }
            out.push(path);
            return;
        }
    }
    let chars: Vec<char> = rest.chars().collect();
    let mut out = Vec::new();
    tree(&chars, &mut 0, Vec::new(), &mut out);
    out
}

/// Every module path `code` (in module `here`) names through `crate::` or
/// `super::`.
fn references(code: &str, here: &[String]) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(pos) = code[from..].find("crate::").map(|p| p + from) {
        let before = code[..pos].chars().next_back();
        from = pos + "crate::".len();
        if before.is_some_and(|c| is_ident(c) || c == '$') {
            continue;
        }
        found.extend(expand(&code[from..]));
    }
    let mut from = 0;
    while let Some(pos) = code[from..].find("super::").map(|p| p + from) {
        let before = code[..pos].chars().next_back();
        from = pos + "super::".len();
        if before.is_some_and(|c| is_ident(c) || c == ':') {
            continue;
        }
        // The parent of the file's module (`here` already names `foo` for
        // `foo/mod.rs`). `super::*` in an inline test module names the
        // parent too, which is at worst stricter.
        let mut base: Vec<String> = here.to_vec();
        base.pop();
        let mut rest = &code[from..];
        while let Some(r) = rest.strip_prefix("super::") {
            base.pop();
            rest = r;
        }
        for p in expand(rest) {
            let mut full = base.clone();
            full.extend(p);
            found.push(full);
        }
    }
    found
}

/// What each unit uses, from `(path under src/, source)` pairs.
fn graph(files: &[(String, String)]) -> Result<BTreeMap<String, BTreeSet<String>>, Vec<String>> {
    let mut problems = Vec::new();
    let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rel, src) in files {
        let here = module_of(Path::new(rel));
        if here.is_empty() {
            continue;
        }
        let Some(unit) = unit_of(&here) else {
            if !(here.len() == 1 && CONTAINERS.contains(&here[0].as_str())) {
                problems.push(format!(
                    "src/{rel}: module {} has no declared layer in tests/layers.rs",
                    here.join("::")
                ));
            }
            continue;
        };
        let entry = uses.entry(unit.clone()).or_default();
        for path in references(&code_only(src), &here) {
            if let Some(other) = unit_of(&path)
                && other != unit
            {
                entry.insert(other);
            }
        }
    }
    if problems.is_empty() {
        Ok(uses)
    } else {
        Err(problems)
    }
}

/// Every way `uses` breaks the declared order, and any cycle.
fn violations(uses: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut out = Vec::new();
    for (unit, used) in uses {
        let mine = layer_of(unit).expect("units are declared");
        for other in used {
            let theirs = layer_of(other).expect("units are declared");
            if theirs > mine || (theirs == mine && mine != 0) {
                out.push(format!(
                    "{unit} uses {other}, which is not below it (layer {mine} uses layer {theirs})"
                ));
            }
        }
    }
    // Depth-first search for a cycle.
    fn visit(
        u: &str,
        uses: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        out: &mut Vec<String>,
    ) {
        if let Some(at) = stack.iter().position(|s| s == u) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(u.to_owned());
            out.push(format!("cycle: {}", cycle.join(" -> ")));
            return;
        }
        if done.contains(u) {
            return;
        }
        stack.push(u.to_owned());
        for v in uses.get(u).into_iter().flatten() {
            visit(v, uses, stack, done, out);
        }
        stack.pop();
        done.insert(u.to_owned());
    }
    let mut done = BTreeSet::new();
    for u in uses.keys() {
        visit(u, uses, &mut Vec::new(), &mut done, &mut out);
    }
    out
}

fn sources(dir: &Path, root: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        let rel = path.strip_prefix(root).expect("under src/");
        // Binaries are crates of their own, over the library's public API.
        if rel.starts_with("bin") || rel == Path::new("main.rs") {
            continue;
        }
        if path.is_dir() {
            sources(&path, root, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("a source file");
            out.push((rel.to_string_lossy().into_owned(), text));
        }
    }
}

#[test]
fn the_core_depends_one_way_only() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &root, &mut files);
    files.sort();
    let uses = graph(&files).unwrap_or_else(|p| panic!("{}", p.join("\n")));
    // The reading itself works: the router sees the services.
    assert!(
        uses["service"].contains("conversation::room") && uses["service"].contains("incoming"),
        "the router's imports were not read: {uses:?}"
    );
    let bad = violations(&uses);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

fn files(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(p, s)| (p.to_string(), s.to_string()))
        .collect()
}

#[test]
fn a_cycle_between_services_is_found() {
    let uses = graph(&files(&[
        (
            "conversation/direct.rs",
            "use crate::presence::{self, Gate};\nuse crate::context::Context;",
        ),
        (
            "presence.rs",
            "fn f() { crate::conversation::direct::release_waiting(); }",
        ),
    ]))
    .unwrap();
    let bad = violations(&uses);
    assert!(
        bad.iter()
            .any(|b| b.contains("presence uses conversation::direct")),
        "{bad:?}"
    );
    assert!(bad.iter().any(|b| b.starts_with("cycle:")), "{bad:?}");
}

#[test]
fn grouped_and_relative_paths_count() {
    let uses = graph(&files(&[
        (
            "incoming.rs",
            "use crate::{stanza::ns, query::commands::COMMANDS};",
        ),
        (
            "conversation/room/frontier.rs",
            "use super::Frontier;\nuse super::super::super::service::Tidemark; // crate::query is only a comment\nlet s = \"crate::query\";",
        ),
    ]))
    .unwrap();
    assert_eq!(
        uses["incoming"],
        BTreeSet::from(["stanza".to_owned(), "query".to_owned()])
    );
    assert_eq!(
        uses["conversation::room"],
        BTreeSet::from(["service".to_owned()])
    );
    assert_eq!(violations(&uses).len(), 2, "{:?}", violations(&uses));
}

#[test]
fn a_module_without_a_layer_is_refused() {
    let problems = graph(&files(&[("kiosk.rs", "use crate::store::Store;")])).unwrap_err();
    assert!(problems[0].contains("kiosk"), "{problems:?}");
}

/// The store's write operations, as the core would call them through its
/// handle on the store (`cx.store.put_message(`, however rustfmt breaks it).
const STORE_WRITES: &[&str] = &[
    "put_message",
    "put_refused_message",
    "advance_mark",
    "set_presence_allowed",
    "enqueue",
    "dequeue",
    "put_room",
    "set_membership",
    "put_room_message",
    "add_room_creator",
    "set_read_receipts_pref",
    "apply",
    "expire",
    "import_record",
    "import_mark",
    "import_mark_moved",
    "import_inbox_entry",
    "continue_after",
    "put_desk_conversation",
    "put_desk_event",
    "put_desk_author",
];

/// Where a unit between classification and the router calls a store write.
fn direct_writes(files: &[(String, String)]) -> Vec<String> {
    let mut found = Vec::new();
    for (rel, src) in files {
        let here = module_of(Path::new(rel));
        let Some(layer) = unit_of(&here).and_then(|u| layer_of(&u)) else {
            continue;
        };
        let services = layer_of("incoming").unwrap()..layer_of("service").unwrap();
        if !services.contains(&layer) {
            continue;
        }
        let code: String = code_only(src)
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        for call in STORE_WRITES {
            if code.contains(&format!("store.{call}(")) {
                found.push(format!("src/{rel} calls store.{call}("));
            }
        }
    }
    found
}

/// Issue 8: the services return their writes as values (`Write`), for the
/// shell to apply; none of them writes the store itself.
#[test]
fn the_services_write_nothing_themselves() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut src = Vec::new();
    sources(&root, &root, &mut src);
    let found = direct_writes(&src);
    assert!(found.is_empty(), "{}", found.join("\n"));
    // The check sees a write where there is one.
    let planted = direct_writes(&files(&[
        (
            "conversation/direct.rs",
            "fn f(cx: &Context) { cx\n    .store\n    .put_message(&c, 1, &r)?; }",
        ),
        // Not the store: a service's own state may have such names.
        ("presence.rs", "fn g(q: &mut Relayed) { q.expire(now); }"),
    ]));
    assert_eq!(
        planted,
        vec!["src/conversation/direct.rs calls store.put_message("]
    );
}
