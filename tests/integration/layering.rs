//! The module layering of ARCHITECTURE.md holds: every `crate::<module>` path in a module of
//! `src/` (outside its `#[cfg(test)]` code) names a module its row allows, every module has a
//! row, and the rows allow no cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A room's row: the modules it may import, or `None` for "everything".
type Rows = BTreeMap<String, Option<BTreeSet<String>>>;

/// Reads the "may import" column of ARCHITECTURE.md's rooms table.
fn rows(architecture: &str) -> Rows {
    let table = architecture
        .split("## Rooms")
        .nth(1)
        .expect("ARCHITECTURE.md has a Rooms section");
    let mut rows = Rows::new();
    for line in table.lines().filter(|line| line.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (module, allowed) = (cells[1].trim_matches('`'), cells[3]);
        let allowed = match allowed {
            "everything" => None,
            "(none)" => Some(BTreeSet::new()),
            list => Some(
                list.split(',')
                    .map(|name| name.trim().trim_matches('`').to_owned())
                    .collect(),
            ),
        };
        rows.insert(module.to_owned(), allowed);
    }
    rows
}

/// The top-level modules of `src/` and, for each, the files it is made of.
fn modules(src: &Path) -> BTreeMap<String, Vec<PathBuf>> {
    let mut modules: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for entry in std::fs::read_dir(src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            modules.insert(name, rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") && name != "lib" && name != "main" {
            modules.insert(name, vec![path]);
        }
    }
    modules
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// The modules of this crate a file names: `crate::x` and each `x` of `crate::{x, y::z}`.
fn imports(text: &str) -> BTreeSet<String> {
    names_after(text, "crate::")
}

/// The first path segments after each `prefix` (`super::`, say), grouped ones included.
fn names_after(text: &str, prefix: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (at, _) in text.match_indices(prefix) {
        let rest = &text[at + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level names only: the first path segment of each item at brace depth 0.
            let (mut depth, mut item_start) = (0, true);
            let mut name = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && (c.is_alphanumeric() || c == '_') => name.push(c),
                    _ if item_start && !name.is_empty() => {
                        found.insert(std::mem::take(&mut name));
                        item_start = false;
                    }
                    _ => {}
                }
            }
            if !name.is_empty() {
                found.insert(name);
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            found.insert(name);
        }
    }
    found
}

#[test]
fn every_module_imports_only_what_architecture_md_allows() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let architecture = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let rows = rows(&architecture);
    let modules = modules(&root.join("src"));
    let mut errors = Vec::new();
    for (module, files) in &modules {
        let Some(allowed) = rows.get(module) else {
            errors.push(format!("src/{module} has no row in ARCHITECTURE.md"));
            continue;
        };
        let Some(allowed) = allowed else { continue };
        for file in files {
            // Unit tests may build their fixtures with any module; the rows bind the code.
            let code = code(file);
            let mut named = imports(&code);
            // In a module's root file (`src/x.rs`, `src/x/mod.rs`), `super::` is the crate.
            if is_module_root(file, root) {
                named.extend(names_after(&code, "super::"));
            }
            for import in named {
                if import != *module && !allowed.contains(&import) {
                    errors.push(format!(
                        "{} imports crate::{import}, which the {module} row does not allow",
                        file.strip_prefix(root).unwrap().display()
                    ));
                }
            }
        }
    }
    for module in rows.keys().filter(|m| !modules.contains_key(*m)) {
        errors.push(format!(
            "ARCHITECTURE.md has a row for {module}, which src/ lacks"
        ));
    }
    assert!(errors.is_empty(), "layering errors:\n{}", errors.join("\n"));
}

#[test]
fn the_allowed_imports_form_no_cycle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rows = rows(&std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap());
    // Kahn's algorithm over the listed edges ("everything" rows import, nothing imports them).
    let mut remaining: BTreeMap<&str, BTreeSet<&str>> = rows
        .iter()
        .filter_map(|(module, allowed)| {
            Some((
                module.as_str(),
                allowed.as_ref()?.iter().map(String::as_str).collect(),
            ))
        })
        .collect();
    while let Some(leaf) = remaining
        .iter()
        .find(|(_, deps)| deps.is_empty())
        .map(|(module, _)| *module)
    {
        remaining.remove(leaf);
        for deps in remaining.values_mut() {
            deps.remove(leaf);
        }
    }
    assert!(
        remaining.is_empty(),
        "these rows import each other: {remaining:?}"
    );
}

/// The code of a file, without its unit tests.
///
/// The code ends where its unit-test module starts (`#[cfg(test)]` on a `mod`); a
/// `#[cfg(test)]` item elsewhere does not exempt what follows it.
fn code(file: &Path) -> String {
    let text = std::fs::read_to_string(file).unwrap();
    let tests = text
        .match_indices("#[cfg(test)]")
        .map(|(at, attribute)| at + attribute.len())
        .find(|&after| {
            let next = text[after..].trim_start();
            next.starts_with("mod ") || next.starts_with("pub(crate) mod ")
        });
    match tests {
        Some(after) => text[..after - "#[cfg(test)]".len()].to_owned(),
        None => text,
    }
}

/// Whether `file` is the root of its top-level module (`src/x.rs` or `src/x/mod.rs`).
fn is_module_root(file: &Path, root: &Path) -> bool {
    let relative = file.strip_prefix(root.join("src")).unwrap();
    relative.components().count() == 1
        || relative.ends_with("mod.rs") && relative.components().count() == 2
}

#[test]
fn no_file_imports_a_sibling_that_imports_it_back() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cycles = Vec::new();
    for (module, files) in modules(&root.join("src")) {
        let stem = |file: &PathBuf| file.file_stem().unwrap().to_string_lossy().into_owned();
        let siblings: BTreeSet<String> = files.iter().map(stem).collect();
        let uses: BTreeMap<String, BTreeSet<String>> = files
            .iter()
            .map(|file| {
                let code = code(file);
                let mut named = names_after(&code, "super::");
                named.extend(names_after(&code, &format!("crate::{module}::")));
                named.retain(|name| siblings.contains(name) && *name != stem(file));
                (stem(file), named)
            })
            .collect();
        for (file, named) in &uses {
            for other in named.iter().filter(|other| *other > file) {
                if uses[other].contains(file) {
                    cycles.push(format!("src/{module}: {file} <-> {other}"));
                }
            }
        }
    }
    assert!(
        cycles.is_empty(),
        "files importing each other:\n{}",
        cycles.join("\n")
    );
}

#[test]
fn imports_are_read_from_paths_and_groups() {
    let text = "use crate::table::{A, B};\nuse crate::{api::{x, y}, snapshot};\ncrate::net::f();";
    let found: Vec<String> = imports(text).into_iter().collect();
    assert_eq!(found, ["api", "net", "snapshot", "table"]);
}
