//! The module graph of `src/` has no cycle, and nothing below `report` and `cli` imports them:
//! layers point one way (ARCHITECTURE.md). Read from the source text, so a new `use` that runs
//! back up the layers fails here with the path that closes the loop.

mod common;

use std::collections::{BTreeMap, BTreeSet};

/// Top-level module of each file → the top-level modules its non-test code names as `crate::x`.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = common::repo_file("src");
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(&src).unwrap();
            let module =
                rel.components().next().unwrap().as_os_str().to_string_lossy().trim_end_matches(".rs").to_string();
            if module == "main" || module == "lib" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            // Unit tests may reach anywhere; the layering is about the code that ships.
            let code = text.split("#[cfg(test)]").next().unwrap();
            let deps = g.entry(module.clone()).or_default();
            for (i, _) in code.match_indices("crate::") {
                let rest = &code[i + "crate::".len()..];
                let names: Vec<&str> = if let Some(inner) = rest.strip_prefix('{') {
                    inner.split('}').next().unwrap().split(',').map(|s| s.trim()).collect()
                } else {
                    vec![rest]
                };
                for n in names {
                    let name: String = n.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                    if !name.is_empty() && name != module {
                        deps.insert(name);
                    }
                }
            }
        }
    }
    g
}

/// A path from `from` back to itself, if any.
fn cycle_through(g: &BTreeMap<String, BTreeSet<String>>, from: &str) -> Option<Vec<String>> {
    let mut stack = vec![vec![from.to_string()]];
    let mut seen = BTreeSet::new();
    while let Some(path) = stack.pop() {
        let last = path.last().unwrap();
        for next in g.get(last).into_iter().flatten() {
            if next == from {
                let mut p = path.clone();
                p.push(next.clone());
                return Some(p);
            }
            if seen.insert(next.clone()) {
                let mut p = path.clone();
                p.push(next.clone());
                stack.push(p);
            }
        }
    }
    None
}

#[test]
fn no_import_cycle_among_modules() {
    let g = graph();
    assert!(g.len() > 10, "read too few modules: {g:?}");
    let cycles: Vec<String> = g.keys().filter_map(|m| cycle_through(&g, m)).map(|p| p.join(" → ")).collect();
    assert!(cycles.is_empty(), "import cycles in src/:\n{}", cycles.join("\n"));
}

#[test]
fn only_the_commands_use_reports() {
    let g = graph();
    for top in ["report", "cli"] {
        let users: Vec<&String> = g
            .iter()
            .filter(|(m, deps)| !["cli", "daemon"].contains(&m.as_str()) && deps.contains(top))
            .map(|(m, _)| m)
            .collect();
        assert!(users.is_empty(), "modules below the commands import `{top}`: {users:?}");
    }
}
