//! The documentation stays true of the code where a test can tell:
//! docs/CONFIGURATION.md names every setting of `config/base.toml` and
//! only settings the settings struct has; the README stays a front door.

use std::collections::BTreeSet;
use std::path::Path;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `section.key` of every leaf of a TOML table; a table of per-role
/// settings (`auth.role_limits.<role>`) counts as one key.
fn leaf_keys(prefix: &str, table: &toml::Table, out: &mut BTreeSet<String>) {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            toml::Value::Table(inner) if path == "auth.role_limits" => {
                if !inner.is_empty() {
                    out.insert("auth.role_limits.<role>".into());
                }
            }
            toml::Value::Table(inner) => leaf_keys(&path, inner, out),
            _ => {
                out.insert(path);
            }
        }
    }
}

/// The keys the configuration reference documents: the backticked names in
/// the first column of its tables (`a` / `_file` means `a` and `a_file`).
fn documented_keys() -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo().join("docs/CONFIGURATION.md")).unwrap();
    let mut keys = BTreeSet::new();
    for line in text.lines().filter(|l| l.starts_with("| `")) {
        let first = line.split('|').nth(1).unwrap_or_default();
        let mut last = String::new();
        for name in first.split('`').skip(1).step_by(2) {
            let name = if name.starts_with('_') {
                format!("{last}{name}")
            } else {
                name.to_owned()
            };
            keys.insert(name.clone());
            last = name;
        }
    }
    keys
}

#[test]
fn the_configuration_reference_names_every_setting_and_only_real_ones() {
    let base: toml::Table =
        toml::from_str(&std::fs::read_to_string(repo().join("config/base.toml")).unwrap()).unwrap();
    let mut settings = BTreeSet::new();
    leaf_keys("", &base, &mut settings);
    let documented = documented_keys();
    let undocumented: Vec<&String> = settings.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "settings of config/base.toml missing from docs/CONFIGURATION.md: {undocumented:?}"
    );
    // A documented key that base.toml does not set must still be a field of
    // the settings struct (optional secrets and files).
    let source = std::fs::read_to_string(repo().join("src/config/mod.rs")).unwrap();
    for key in documented.difference(&settings) {
        let field = key.rsplit('.').next().unwrap();
        assert!(
            source.contains(&format!("pub {field}:")),
            "docs/CONFIGURATION.md documents {key}, which the settings struct does not have"
        );
    }
}

#[test]
fn the_readme_is_a_front_door_and_every_link_resolves() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines <= 300,
        "README.md has {lines} lines; keep it under 300"
    );
    assert!(readme.contains("cargo run --release -- demo"));
    assert!(readme.contains("scripts/test"));
    for doc in [
        "README.md",
        "docs/ARCHITECTURE.md",
        "docs/API.md",
        "docs/OPERATIONS.md",
    ] {
        let text = std::fs::read_to_string(repo().join(doc)).unwrap();
        let dir = repo().join(doc).parent().unwrap().to_owned();
        for target in text
            .split("](")
            .skip(1)
            .filter_map(|rest| rest.split(')').next())
        {
            if target.starts_with("http") || target.starts_with('#') {
                continue;
            }
            let path = target.split('#').next().unwrap();
            assert!(
                dir.join(path).exists(),
                "{doc} links to {target}, which does not exist"
            );
            assert!(
                !target.contains(".."),
                "{doc} links outside the repository: {target}"
            );
        }
    }
}
