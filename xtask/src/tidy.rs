//! Tidy checks that run as ordinary `#[test]`s: the crate boundaries of
//! docs/ARCHITECTURE.md, checked against the `Cargo.toml` files, and the
//! one-way module dependencies inside keys-store.

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::PathBuf;

    fn manifest(krate: &str) -> String {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("crates").join(krate).join("Cargo.toml");
        std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("reading {}: {error}", path.display()))
    }

    /// The dependency names of a manifest's `[dependencies]` and
    /// `[dev-dependencies]` sections (or only the former).
    fn dependencies(text: &str, include_dev: bool) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        let mut in_section = false;
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('[') {
                in_section = line == "[dependencies]" || (include_dev && line == "[dev-dependencies]");
                continue;
            }
            if in_section && !line.is_empty() && !line.starts_with('#') {
                if let Some((name, _)) = line.split_once('=') {
                    let name = name.trim().split('.').next().unwrap_or_default();
                    names.insert(name.trim_matches('"').to_owned());
                }
            }
        }
        names
    }

    #[test]
    fn keys_core_stays_pure() {
        let forbidden = [
            "tokio",
            "sqlx",
            "hyper",
            "hyper-util",
            "http",
            "serde_json",
            "reqwest",
            "async-std",
            "mio",
            "socket2",
            "getrandom",
            "rand",
            "chrono",
            "tracing",
            "keys-crypto",
            "keys-store",
            "keys-http",
        ];
        let deps = dependencies(&manifest("keys-core"), false);
        for name in forbidden {
            assert!(!deps.contains(name), "keys-core must not depend on {name} (it is the pure domain)");
        }
        // rand_core without getrandom: randomness is a parameter, never the OS.
        let text = manifest("keys-core");
        assert!(!text.contains("getrandom"), "keys-core must not reach the OS RNG");
    }

    #[test]
    fn dependency_direction_is_core_crypto_store_http() {
        let order = ["keys-core", "keys-crypto", "keys-store", "keys-http"];
        for (position, krate) in order.iter().enumerate() {
            let deps = dependencies(&manifest(krate), true);
            for later in &order[position + 1..] {
                assert!(
                    !deps.contains(*later),
                    "{krate} must not depend on {later}: the direction is core <- crypto <- store <- http"
                );
            }
        }
    }

    #[test]
    fn only_keys_http_knows_http_and_only_keys_store_knows_sql() {
        for krate in ["keys-core", "keys-crypto", "keys-store"] {
            let deps = dependencies(&manifest(krate), false);
            for name in ["hyper", "hyper-util", "http", "http-body-util"] {
                assert!(!deps.contains(name), "{krate} must not know HTTP ({name})");
            }
        }
        for krate in ["keys-core", "keys-crypto", "keys-http"] {
            let deps = dependencies(&manifest(krate), false);
            assert!(!deps.contains("sqlx"), "{krate} must not know SQL (sqlx)");
        }
    }

    #[test]
    fn the_parser_sees_real_dependencies() {
        // Guards the guards: if the parser read nothing, every check above
        // would pass vacuously.
        let deps = dependencies(&manifest("keys-store"), false);
        assert!(deps.contains("sqlx") && deps.contains("keys-core"), "{deps:?}");
    }

    /// The modules of keys-store (file stems of `src/`, the crate root and
    /// its unit tests left out) and, for each, the modules it names with
    /// `crate::module`, outside comments.
    fn keys_store_module_imports() -> std::collections::BTreeMap<String, BTreeSet<String>> {
        let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crates/keys-store/src");
        let mut texts = std::collections::BTreeMap::new();
        for entry in std::fs::read_dir(&source).unwrap_or_else(|error| panic!("reading {}: {error}", source.display()))
        {
            let path = entry.map(|entry| entry.path()).unwrap_or_default();
            let stem = path.file_stem().and_then(|stem| stem.to_str()).unwrap_or_default().to_owned();
            if path.extension().is_some_and(|extension| extension == "rs") && stem != "lib" && stem != "tests" {
                texts.insert(stem, std::fs::read_to_string(&path).unwrap_or_default());
            }
        }
        let modules: BTreeSet<String> = texts.keys().cloned().collect();
        texts
            .iter()
            .map(|(module, text)| {
                let mut named = BTreeSet::new();
                for line in text.lines().filter(|line| !line.trim_start().starts_with("//")) {
                    for (_, rest) in
                        line.match_indices("crate::").map(|(index, found)| line.split_at(index + found.len()))
                    {
                        let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                        if modules.contains(&name) && &name != module {
                            named.insert(name);
                        }
                    }
                }
                (module.clone(), named)
            })
            .collect()
    }

    #[test]
    fn keys_store_modules_depend_on_each_other_one_way() {
        let imports = keys_store_module_imports();
        // Guards the guard: the cache does name the PostgreSQL backend.
        assert!(imports.get("cache").is_some_and(|named| named.contains("postgres")), "{imports:?}");
        // Depth-first search for a cycle, reporting the path that closes it.
        fn visit<'a>(
            module: &'a str,
            imports: &'a std::collections::BTreeMap<String, BTreeSet<String>>,
            path: &mut Vec<&'a str>,
            done: &mut BTreeSet<&'a str>,
        ) {
            if let Some(start) = path.iter().position(|seen| *seen == module) {
                panic!("keys-store modules import each other: {} -> {module}", path[start..].join(" -> "));
            }
            if !done.insert(module) {
                return;
            }
            path.push(module);
            for named in imports.get(module).into_iter().flatten() {
                visit(named, imports, path, done);
            }
            path.pop();
        }
        let mut done = BTreeSet::new();
        for module in imports.keys() {
            visit(module, &imports, &mut Vec::new(), &mut done);
        }
    }
}
