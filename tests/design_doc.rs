//! doc/DESIGN.md's map from the man pages to the code names modules and
//! functions that exist, and the README points at documents that exist.

use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The backticked words of a table cell (or any text).
fn ticked(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).collect()
}

/// Does `text` define `name` (a function, a type, or `Type::method`)?
fn defines(text: &str, name: &str) -> bool {
    let item = |n: &str| {
        ["fn ", "struct ", "enum ", "type ", "trait ", "const ", "mod "]
            .iter()
            .any(|k| text.contains(&format!("{k}{n}(")) || text.contains(&format!("{k}{n} ")) || text.contains(&format!("{k}{n}<")) || text.contains(&format!("{k}{n};")))
    };
    match name.split_once("::") {
        Some((ty, f)) => (item(ty) || text.contains(&format!("impl {ty} "))) && item(f),
        None => item(name),
    }
}

#[test]
fn every_entry_of_the_map_exists() {
    let doc = std::fs::read_to_string(root().join("doc/DESIGN.md")).expect("doc/DESIGN.md");
    let map = doc.split("## 5.").nth(1).expect("section 5 of doc/DESIGN.md");
    let map = map.split("\n## ").next().unwrap();
    let mut rows = 0;
    let mut bad = Vec::new();
    for line in map.lines().filter(|l| l.starts_with("| ") && l.contains("`src/")) {
        let cells: Vec<&str> = line.split(" | ").collect();
        assert_eq!(cells.len(), 3, "three cells: {line}");
        let files = ticked(cells[1]);
        let names = ticked(cells[2]);
        assert!(!files.is_empty() && !names.is_empty(), "{line}");
        let mut text = String::new();
        for f in &files {
            match std::fs::read_to_string(root().join(f)) {
                Ok(t) => text.push_str(&t),
                Err(e) => bad.push(format!("{f}: {e}")),
            }
        }
        for n in names {
            if !defines(&text, n) {
                bad.push(format!("`{n}` is not defined in {files:?}"));
            }
        }
        rows += 1;
    }
    assert!(rows >= 30, "only {rows} rows in the map");
    assert!(bad.is_empty(), "doc/DESIGN.md names what does not exist:\n{}", bad.join("\n"));
}

#[test]
fn the_check_can_fail() {
    assert!(defines("impl Policy {\n    pub fn check_rcpt(&self", "Policy::check_rcpt"));
    assert!(!defines("impl Policy {\n    pub fn check(&self", "Policy::check_rcpt"));
    assert!(!defines("fn other() {}", "serve"));
}

#[test]
fn readme_and_protocols_point_at_files_that_exist() {
    for doc in ["README.md", "doc/PROTOCOLS.md", "doc/DESIGN.md"] {
        let text = std::fs::read_to_string(root().join(doc)).unwrap();
        let words = text.split(|c: char| c.is_whitespace() || "()[]`'\"".contains(c));
        for word in words {
            let w = word.trim_matches(|c: char| ",.:;".contains(c));
            let is_path = (w.starts_with("src/") || w.starts_with("doc/") || w.starts_with("tests/") || w.starts_with("man/") || w.starts_with("conf-examples/"))
                && !w.contains('<')
                && !w.contains('*');
            if is_path {
                assert!(root().join(w).exists(), "{doc} names {w}, which does not exist");
            }
        }
        assert!(!text.contains(" DESIGN.md") || doc == "doc/DESIGN.md" || text.contains("doc/DESIGN.md"), "{doc}: DESIGN.md is doc/DESIGN.md");
    }
}
