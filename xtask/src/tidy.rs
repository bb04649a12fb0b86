//! Tidy checks that run as ordinary `#[test]`s: the crate boundaries of
//! docs/ARCHITECTURE.md, read from `cargo metadata`; a `//!` doc at the top
//! of every module; every code symbol ARCHITECTURE.md names exists; and
//! nothing points at a contract outside the repository (the reference is
//! docs/API.md, docs/CLI.md and docs/GUARANTEES.md).
//! (The route-table checks — reserved slugs, the reason enum of the OpenAPI
//! document — live in keys-http's tests, beside what they check.)

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::sync::OnceLock;

    use serde_json::Value;

    /// The crates of the workspace, in dependency order: each may depend on
    /// the ones before it, never on the ones after.
    const LAYERS: [&str; 6] = ["keys-core", "keys-crypto", "keys-store", "keys-service", "keys-http", "keysd"];

    /// The dev-only test kit: it may use every layer, and only
    /// `[dev-dependencies]` may name it.
    const TEST_KIT: &str = "keys-testkit";

    fn root() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    /// Each workspace package's dependencies as (name, kind) pairs, kind
    /// `normal`, `dev` or `build`, as `cargo metadata` reports them.
    fn dependencies() -> &'static BTreeMap<String, BTreeSet<(String, String)>> {
        static DEPENDENCIES: OnceLock<BTreeMap<String, BTreeSet<(String, String)>>> = OnceLock::new();
        DEPENDENCIES.get_or_init(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
            let output = Command::new(cargo)
                .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
                .current_dir(root())
                .output()
                .expect("cargo metadata runs");
            assert!(output.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&output.stderr));
            let metadata: Value = serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
            let mut by_package = BTreeMap::new();
            for package in metadata["packages"].as_array().expect("packages") {
                let name = package["name"].as_str().expect("a package name").to_owned();
                let deps = package["dependencies"]
                    .as_array()
                    .expect("dependencies")
                    .iter()
                    .map(|dependency| {
                        let name = dependency["name"].as_str().expect("a dependency name").to_owned();
                        let kind = dependency["kind"].as_str().unwrap_or("normal").to_owned();
                        (name, kind)
                    })
                    .collect();
                by_package.insert(name, deps);
            }
            by_package
        })
    }

    fn depends_on(krate: &str, dependency: &str, include_dev: bool) -> bool {
        dependencies()
            .get(krate)
            .unwrap_or_else(|| panic!("{krate} is not a workspace package"))
            .iter()
            .any(|(name, kind)| name == dependency && (include_dev || kind != "dev"))
    }

    #[test]
    fn every_layer_is_a_workspace_package_and_the_reader_sees_dependencies() {
        // Guards the guards: if the reader saw nothing, every check below
        // would pass vacuously.
        for krate in LAYERS {
            assert!(dependencies().contains_key(krate), "{krate} missing from cargo metadata");
        }
        assert!(depends_on("keys-store", "sqlx", false));
        assert!(depends_on("keys-store", "keys-core", false));
        assert!(depends_on("keys-http", "keys-service", false));
        assert!(depends_on("keysd", "keys-http", false));
    }

    #[test]
    fn keys_core_stays_pure() {
        let forbidden = [
            "tokio",
            "sqlx",
            "hyper",
            "hyper-util",
            "http",
            "serde",
            "serde_json",
            "reqwest",
            "async-std",
            "mio",
            "socket2",
            "getrandom",
            "rand",
            "chrono",
            "tracing",
        ];
        for name in forbidden.iter().chain(&LAYERS[1..]) {
            assert!(
                !depends_on("keys-core", name, false),
                "keys-core must not depend on {name} (it is the pure domain)"
            );
        }
        // rand_core without getrandom: randomness is a parameter, never the OS.
        let manifest = std::fs::read_to_string(root().join("crates/keys-core/Cargo.toml")).expect("manifest");
        assert!(!manifest.contains("getrandom"), "keys-core must not reach the OS RNG");
    }

    #[test]
    fn dependency_direction_is_core_crypto_store_service_http() {
        for (position, krate) in LAYERS.iter().enumerate() {
            for later in &LAYERS[position + 1..] {
                assert!(
                    !depends_on(krate, later, true),
                    "{krate} must not depend on {later}: the direction is core <- crypto <- store <- service <- http <- keysd"
                );
            }
        }
    }

    #[test]
    fn the_test_kit_is_a_dev_dependency_only_and_keys_core_does_without_it() {
        assert!(dependencies().contains_key(TEST_KIT), "{TEST_KIT} missing from cargo metadata");
        assert!(depends_on("keys-store", TEST_KIT, true), "the reader sees the kit's dev edges");
        for krate in LAYERS.iter().chain(["xtask"].iter()) {
            assert!(!depends_on(krate, TEST_KIT, false), "{krate} may name {TEST_KIT} only as a dev-dependency");
        }
        assert!(!depends_on("keys-core", TEST_KIT, true), "keys-core's tests stay free of the store and the kit");
        let manifest =
            std::fs::read_to_string(root().join("crates").join(TEST_KIT).join("Cargo.toml")).expect("manifest");
        assert!(manifest.contains("publish = false"), "{TEST_KIT} is never published");
    }

    #[test]
    fn only_keys_http_knows_http_and_only_keys_store_knows_sql() {
        for krate in &LAYERS[..4] {
            for name in ["hyper", "hyper-util", "http", "http-body-util"] {
                assert!(!depends_on(krate, name, false), "{krate} must not know HTTP ({name})");
            }
        }
        for krate in ["keys-core", "keys-crypto", "keys-service", "keys-http", "keysd"] {
            assert!(!depends_on(krate, "sqlx", false), "{krate} must not know SQL (sqlx)");
        }
        // The binary runs the server; it speaks no HTTP of its own.
        for name in ["hyper", "hyper-util", "http-body-util"] {
            assert!(!depends_on("keysd", name, false), "keysd must leave HTTP to keys-http ({name})");
        }
    }

    fn rust_files(directory: &Path, found: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(directory) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                rust_files(&path, found);
            } else if path.extension().is_some_and(|extension| extension == "rs") {
                found.push(path);
            }
        }
    }

    /// Every `.rs` file under the crates' `src/` and xtask's `src/`.
    fn source_files() -> Vec<PathBuf> {
        let mut found = Vec::new();
        for krate in LAYERS.iter().chain(&[TEST_KIT]) {
            rust_files(&root().join("crates").join(krate).join("src"), &mut found);
        }
        rust_files(&root().join("xtask").join("src"), &mut found);
        found
    }

    #[test]
    fn every_module_starts_with_its_doc() {
        let files = source_files();
        assert!(files.len() > 20, "found only {} source files", files.len());
        let undocumented: Vec<_> = files
            .iter()
            .filter(|path| {
                let text = std::fs::read_to_string(path).unwrap_or_default();
                !text.trim_start().starts_with("//!")
            })
            .collect();
        assert!(undocumented.is_empty(), "modules without a `//!` doc at the top: {undocumented:?}");
    }

    /// Names of the standard library, of dependencies and of HTTP headers
    /// ARCHITECTURE.md may mention.
    const STD_NAMES: [&str; 11] =
        ["Deref", "Debug", "Display", "Clone", "Arc", "TryFrom", "From", "Option", "Result", "ToSchema", "ETag"];

    /// The code symbols ARCHITECTURE.md names in backticks: `Type`,
    /// `Type::function`, `function(…)`-free identifiers with an underscore
    /// such as `decide_api_key`. File names, SQL and flags are left alone.
    fn architecture_symbols() -> BTreeSet<String> {
        let text = std::fs::read_to_string(root().join("docs/ARCHITECTURE.md")).expect("ARCHITECTURE.md");
        let mut symbols = BTreeSet::new();
        for (index, chunk) in text.split('`').enumerate() {
            // Odd chunks are inside backticks.
            if index % 2 == 0 || chunk.contains(' ') || chunk.contains('/') || chunk.contains('.') {
                continue;
            }
            let symbol = chunk.trim_end_matches("()");
            let is_identifier =
                |part: &str| !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            let parts: Vec<&str> = symbol.split("::").collect();
            if !parts.iter().all(|part| is_identifier(part)) {
                continue;
            }
            let last = parts.last().copied().unwrap_or_default();
            let is_type = last.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                && last.chars().any(|c| c.is_ascii_lowercase());
            let is_function = last.contains('_') && last.chars().all(|c| !c.is_ascii_uppercase());
            // Prefixes (`wksp_`) are formats, not symbols; std names are not ours.
            let is_prefix = symbol.ends_with('_');
            let is_std = STD_NAMES.contains(&last);
            if (is_type || is_function) && !is_prefix && !is_std && !symbol.starts_with("KEYSD_") {
                // A crate name in a path (`keys_store::open`) is not a symbol.
                let ours: Vec<&str> = parts.into_iter().filter(|part| !part.starts_with("keys_")).collect();
                symbols.insert(ours.join("::"));
            }
        }
        symbols
    }

    #[test]
    fn symbols_named_in_architecture_exist() {
        let sources: String =
            source_files().iter().map(|path| std::fs::read_to_string(path).unwrap_or_default()).collect();
        // Constraint and index names are defined by the migrations.
        let mut migrations = Vec::new();
        for backend in ["postgres", "sqlite"] {
            let directory = root().join("crates/keys-store/migrations").join(backend);
            for entry in std::fs::read_dir(&directory).into_iter().flatten().flatten() {
                migrations.push(std::fs::read_to_string(entry.path()).unwrap_or_default());
            }
        }
        let schema = migrations.concat();
        let defines = |name: &str| {
            ["fn ", "struct ", "enum ", "trait ", "type ", "const ", "static ", "mod ", "macro_rules! "]
                .iter()
                .any(|keyword| sources.contains(&format!("{keyword}{name}")))
                || sources.contains(&format!("{name}("))
                || sources.contains(&format!("{name} {{"))
                || sources.contains(&format!("{name},"))
                || sources.contains(&format!("pub {name}:"))
                || sources.contains(&format!("pub(crate) {name}:"))
                || (name.contains('_') && schema.contains(name))
        };
        let symbols = architecture_symbols();
        assert!(symbols.len() >= 10, "ARCHITECTURE.md names only {symbols:?}");
        let missing: Vec<_> = symbols.iter().filter(|symbol| !symbol.split("::").all(&defines)).collect();
        assert!(missing.is_empty(), "ARCHITECTURE.md names symbols the code does not define: {missing:?}");
    }

    /// For each module of a crate (the file stems and directories directly
    /// under `src/`, the root and its unit tests left out), the modules it
    /// names with `crate::module`, outside comments. A directory module's
    /// files all count as that module, except its unit tests (`tests.rs`).
    fn module_imports(krate: &str) -> BTreeMap<String, BTreeSet<String>> {
        let source = root().join("crates").join(krate).join("src");
        let mut texts: BTreeMap<String, String> = BTreeMap::new();
        for entry in std::fs::read_dir(&source).unwrap_or_else(|error| panic!("reading {}: {error}", source.display()))
        {
            let path = entry.map(|entry| entry.path()).unwrap_or_default();
            let stem = path.file_stem().and_then(|stem| stem.to_str()).unwrap_or_default().to_owned();
            if matches!(stem.as_str(), "lib" | "main" | "tests") {
                continue;
            }
            let mut files = Vec::new();
            if path.is_dir() {
                rust_files(&path, &mut files);
                // A module's own unit tests may use any module.
                files.retain(|file| file.file_stem().is_none_or(|stem| stem != "tests"));
            } else if path.extension().is_some_and(|extension| extension == "rs") {
                files.push(path.clone());
            }
            let text: String = files.iter().map(|file| std::fs::read_to_string(file).unwrap_or_default()).collect();
            texts.entry(stem).or_default().push_str(&text);
        }
        let modules: BTreeSet<String> = texts.keys().cloned().collect();
        texts
            .iter()
            .map(|(module, text)| {
                let mut named = BTreeSet::new();
                for line in text.lines().filter(|line| !line.trim_start().starts_with("//")) {
                    for (index, found) in line.match_indices("crate::") {
                        let rest = &line[index + found.len()..];
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

    /// The first import cycle among a crate's modules, as a path.
    fn import_cycle(imports: &BTreeMap<String, BTreeSet<String>>) -> Option<String> {
        fn visit<'a>(
            module: &'a str,
            imports: &'a BTreeMap<String, BTreeSet<String>>,
            path: &mut Vec<&'a str>,
            done: &mut BTreeSet<&'a str>,
        ) -> Option<String> {
            if let Some(start) = path.iter().position(|seen| *seen == module) {
                return Some(format!("{} -> {module}", path[start..].join(" -> ")));
            }
            if !done.insert(module) {
                return None;
            }
            path.push(module);
            for named in imports.get(module).into_iter().flatten() {
                if let Some(cycle) = visit(named, imports, path, done) {
                    return Some(cycle);
                }
            }
            path.pop();
            None
        }
        let mut done = BTreeSet::new();
        imports.keys().find_map(|module| visit(module, imports, &mut Vec::new(), &mut done))
    }

    #[test]
    fn no_two_modules_of_a_crate_import_each_other() {
        // Guards the guard: a planted cycle is found, and the reader sees
        // real imports (keys-store's cache names its PostgreSQL backend).
        let planted: BTreeMap<String, BTreeSet<String>> =
            [("a".to_owned(), BTreeSet::from(["b".to_owned()])), ("b".to_owned(), BTreeSet::from(["a".to_owned()]))]
                .into();
        assert!(import_cycle(&planted).is_some());
        let store = module_imports("keys-store");
        assert!(store.get("cache").is_some_and(|named| named.contains("postgres")), "{store:?}");
        for krate in LAYERS.iter().chain(&[TEST_KIT]) {
            if let Some(cycle) = import_cycle(&module_imports(krate)) {
                panic!("modules of {krate} import each other: {cycle}");
            }
        }
    }

    /// Every text file under `directory`, build output and installed
    /// packages left out.
    fn text_files(directory: &Path, found: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(directory) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if path.is_dir() {
                if name != "target" && name != "node_modules" && name != ".git" {
                    text_files(&path, found);
                }
            } else if std::fs::read_to_string(&path).is_ok() {
                found.push(path);
            }
        }
    }

    /// Applied migrations are never edited (sqlx refuses a database whose
    /// applied migration's checksum changed, and a comment is part of it),
    /// so the comments written in them before the reference existed stay.
    const APPLIED_MIGRATIONS: &str = "crates/keys-store/migrations/";

    /// Whether `text` points at the contract file that lived outside the
    /// repository, or at a section of it. Comment markers are dropped and
    /// lines joined, so that a mention wrapped across two comment lines is
    /// found too.
    fn points_outside(text: &str) -> bool {
        // Built from parts, so that this file does not name what it looks for.
        let spec = ["SPEC", ".md"].concat();
        let section = ["SPEC", " section"].concat();
        let words: Vec<&str> =
            text.split_whitespace().filter(|word| !matches!(*word, "//" | "///" | "//!" | "--" | "#" | "*")).collect();
        let joined = words.join(" ");
        joined.contains(&spec) || joined.contains(&section)
    }

    #[test]
    fn nothing_points_at_a_contract_outside_the_repository() {
        // Guards the guard: a wrapped mention is found, a pointer into docs/ is not.
        assert!(points_outside(&["/// the least role it needs (SPEC\n", "/// section 6)"].concat()));
        assert!(points_outside(&["-- see ", "SPEC", ".md"].concat()));
        assert!(!points_outside("/// the least role it needs (docs/API.md,\n/// Authentication and roles)"));
        let mut files = vec![root().join("README.md")];
        for directory in ["crates", "xtask", "docs"] {
            text_files(&root().join(directory), &mut files);
        }
        assert!(files.len() > 50, "found only {} files", files.len());
        let mut pointing = Vec::new();
        for path in &files {
            let relative = path.strip_prefix(root()).unwrap_or(path).to_string_lossy().replace('\\', "/");
            if relative.starts_with(APPLIED_MIGRATIONS) {
                continue;
            }
            if points_outside(&std::fs::read_to_string(path).unwrap_or_default()) {
                pointing.push(relative);
            }
        }
        assert!(
            pointing.is_empty(),
            "these files point at a contract outside the repository; point them at docs/API.md, docs/CLI.md or \
             docs/GUARANTEES.md instead: {pointing:?}"
        );
    }

    /// The newest migration of the release that introduced the upgrade
    /// policy of docs/OPERATIONS.md; the policy binds every later one.
    const POLICY_FLOOR: u32 = 7;

    /// What is wrong with the migration `name` (its file name) holding
    /// `sql`, under the upgrade policy: after the floor, its name ends
    /// `_needs_NNNN` with the floor ≤ NNNN < its own version (the schema
    /// whose binaries still serve the database after it), and it adds no
    /// `NOT NULL` column without a `DEFAULT` (the previous release's
    /// inserts would fail).
    fn policy_breach(name: &str, sql: &str) -> Option<String> {
        let version: u32 = name.split('_').next()?.parse().ok()?;
        if version <= POLICY_FLOOR {
            return None;
        }
        let needs = name.strip_suffix(".sql")?.rsplit_once("_needs_").and_then(|(_, needs)| needs.parse::<u32>().ok());
        match needs {
            Some(needs) if (POLICY_FLOOR..version).contains(&needs) => {}
            Some(needs) => return Some(format!("needs {needs}, outside {POLICY_FLOOR}..{version}")),
            None => return Some("no `_needs_NNNN` at the end of its name".to_owned()),
        }
        let sql: String =
            sql.lines().map(|line| line.split("--").next().unwrap_or_default()).collect::<Vec<_>>().join(" ");
        let sql = sql.to_ascii_uppercase().split_whitespace().collect::<Vec<_>>().join(" ");
        sql.split(';')
            .flat_map(|statement| statement.split("ADD COLUMN").skip(1))
            .find(|column| {
                let column = column.split(',').next().unwrap_or_default();
                column.contains("NOT NULL") && !column.contains("DEFAULT")
            })
            .map(|column| {
                format!("adds a NOT NULL column without a DEFAULT:{}", column.split(',').next().unwrap_or_default())
            })
    }

    #[test]
    fn later_migrations_say_which_schema_they_need_and_only_expand_safely() {
        // Guards the guard.
        assert_eq!(policy_breach("0007_api_key_counts.sql", "ALTER TABLE a DROP COLUMN b"), None);
        assert!(policy_breach("0008_usage.sql", "CREATE TABLE usage (id TEXT)").is_some());
        assert!(policy_breach("0008_usage_needs_abc.sql", "CREATE TABLE usage (id TEXT)").is_some());
        assert!(policy_breach("0008_usage_needs_0001.sql", "CREATE TABLE usage (id TEXT)").is_some());
        assert!(policy_breach("0008_usage_needs_0008.sql", "CREATE TABLE usage (id TEXT)").is_some());
        assert_eq!(policy_breach("0008_usage_needs_0007.sql", "CREATE TABLE usage (id TEXT NOT NULL)"), None);
        assert!(policy_breach("0008_x_needs_0007.sql", "ALTER TABLE a ADD COLUMN b\n TEXT NOT NULL;").is_some());
        assert_eq!(policy_breach("0008_x_needs_0007.sql", "ALTER TABLE a ADD COLUMN b TEXT NOT NULL DEFAULT ''"), None);
        let mut seen = 0;
        let mut breaches = Vec::new();
        for backend in ["sqlite", "postgres"] {
            let directory = root().join("crates/keys-store/migrations").join(backend);
            for entry in std::fs::read_dir(&directory).expect("migrations") {
                let path = entry.expect("entry").path();
                let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
                seen += 1;
                if let Some(breach) = policy_breach(&name, &std::fs::read_to_string(&path).expect("readable")) {
                    breaches.push(format!("{backend}/{name}: {breach}"));
                }
            }
        }
        assert!(seen >= 2 * POLICY_FLOOR, "found only {seen} migrations");
        assert!(breaches.is_empty(), "these migrations break the upgrade policy of docs/OPERATIONS.md: {breaches:?}");
    }
}
