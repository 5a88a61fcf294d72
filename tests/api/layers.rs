//! The layer rules of docs/architecture.md, checked on the source: what each layer may import.

use std::path::{Path, PathBuf};

fn sources(folder: &str) -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                out.push((path, text));
            }
        }
    }
    let mut out = Vec::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(folder),
        &mut out,
    );
    assert!(!out.is_empty(), "no sources under src/{folder}");
    out
}

/// The lines of `folder` that name `crate::<one of forbidden>`.
fn imports_of(folder: &str, forbidden: &[&str]) -> Vec<String> {
    sources(folder)
        .into_iter()
        .flat_map(|(path, text)| {
            let lines: Vec<String> = text
                .lines()
                .filter(|line| forbidden.iter().any(|f| line.contains(&format!("crate::{f}"))))
                .map(|line| format!("{}: {}", path.display(), line.trim()))
                .collect();
            lines
        })
        .collect()
}

#[test]
fn the_domain_imports_no_other_layer() {
    let found = imports_of(
        "domain",
        &["crypto", "repo", "service", "http", "verify", "app", "config"],
    );

    assert_eq!(found, Vec::<String>::new());
}

#[test]
fn http_reaches_no_sql_and_no_crypto() {
    assert_eq!(imports_of("http", &["repo", "crypto"]), Vec::<String>::new());
}

#[test]
fn the_signing_library_stands_alone() {
    let found = imports_of(
        "signing",
        &["domain", "crypto", "repo", "service", "http", "verify", "app", "config"],
    );

    assert_eq!(found, Vec::<String>::new());
}

#[test]
fn nothing_below_the_app_imports_http_or_the_app() {
    for folder in ["domain", "repo", "service", "verify", "crypto", "signing"] {
        assert_eq!(
            imports_of(folder, &["http", "app::", "background"]),
            Vec::<String>::new(),
            "{folder}"
        );
    }
}
