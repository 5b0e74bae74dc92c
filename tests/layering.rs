//! Arrows point down only (doc/DESIGN.md, "Layout"): a shared foundation
//! never uses a program's folder, and one program's folder never uses
//! another's. A new program folder goes into `PROGRAMS`.

use std::path::Path;

/// The folders of src/ that belong to one program each.
const PROGRAMS: &[&str] = &["smtpd", "queuerun", "remote", "supervise", "tlswrap", "checkpw", "authcheck", "deliver", "metrics"];

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The program folders a file's code names (`crate::remote::...`).
fn used_programs(text: &str) -> Vec<&'static str> {
    PROGRAMS.iter().copied().filter(|p| text.contains(&format!("crate::{p}::")) || text.contains(&format!("crate::{p}::{{")) || text.contains(&format!("crate::{p};"))).collect()
}

#[test]
fn no_module_imports_one_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut bad = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        let top = rel.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
        let own = PROGRAMS.iter().find(|p| top == **p || top == format!("{p}.rs"));
        if top == "bin" || top == "lib.rs" {
            continue;
        }
        let text = std::fs::read_to_string(f).unwrap();
        for used in used_programs(&text) {
            if own != Some(&used) {
                let what = match own {
                    Some(o) => format!("program folder `{o}`"),
                    None => "a shared foundation".to_string(),
                };
                bad.push(format!("src/{}: {what} uses `crate::{used}`", rel.display()));
            }
        }
    }
    assert!(bad.is_empty(), "imports that point up or sideways:\n{}", bad.join("\n"));
}

#[test]
fn the_check_can_fail() {
    assert_eq!(used_programs("use crate::smtpd::session::Peer;"), ["smtpd"]);
    assert_eq!(used_programs("crate::smtpd::received::rfc5322_date(x)"), ["smtpd"]);
    assert!(used_programs("use crate::envelope::Attrs; use crate::queue::format;").is_empty());
}
