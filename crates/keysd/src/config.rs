//! `--config FILE` (or `KEYSD_CONFIG`): a TOML file of settings, each key
//! the long name of a flag without its dashes (`listen = "0.0.0.0:8080"`,
//! `cache-ttl-ms = 250`, `jwt-require-exp = true`, a list for a repeatable
//! flag: `trusted-proxy = ["10.0.0.0/8"]`), at the top level.
//!
//! The keys are the flags of `serve` and the global ones. Every command
//! reads the whole file and refuses it for an unknown key or a bad value;
//! `serve` takes all of it, the other commands the global keys
//! (`database-url`, `log-format`), so one file serves the server and the
//! operator commands run beside it.
//!
//! A file's values become the flags' defaults before clap parses the
//! command line, so clap's own order makes the precedence: a flag beats
//! its environment variable, which beats the file, which beats the
//! built-in default. Each value is first checked with its flag's own
//! parser, so that a refusal names the file, the line and the key rather
//! than the flag.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail};
use clap::builder::ValueParser;
use clap::error::{ContextKind, ContextValue};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, Command, CommandFactory, FromArgMatches, ValueEnum};
use toml::de::{DeTable, DeValue};

use crate::output::LogFormat;
use crate::Cli;

/// The subcommand whose flags the file holds, beside the global ones.
const SERVE: &str = "serve";

/// The id of `--config` itself: a file does not name another.
const CONFIG: &str = "config";

/// The id of `--log-format`, read for the message of a refused file.
const LOG_FORMAT: &str = "log_format";

/// Why the command line gave no [`Cli`].
#[derive(Debug)]
pub enum Failure {
    /// clap's own answer: a usage error, or the `--help` and `--version`
    /// texts (`clap::Error::exit` prints it as clap always did).
    Usage(clap::Error),
    /// The config file cannot be read, or holds a key or a value keysd
    /// refuses; `log_format` is the one the flag or the environment chose,
    /// for the message.
    Settings { error: anyhow::Error, log_format: LogFormat },
}

/// Parses `arguments` (the program's name first), with the values of the
/// config file, if one is named, as the flags' defaults.
pub fn parse(arguments: Vec<OsString>) -> Result<Cli, Failure> {
    parse_with(arguments, |path| std::fs::read_to_string(path))
}

fn parse_with(arguments: Vec<OsString>, read: impl Fn(&Path) -> std::io::Result<String>) -> Result<Cli, Failure> {
    let matches = Cli::command().try_get_matches_from(&arguments).map_err(Failure::Usage)?;
    let Some(path) = matches.get_one::<PathBuf>(CONFIG) else {
        return Cli::from_arg_matches(&matches).map_err(Failure::Usage);
    };
    let chosen = matches.get_one::<LogFormat>(LOG_FORMAT).copied().unwrap_or_default();
    let explicit = matches.value_source(LOG_FORMAT).is_some_and(|source| source != ValueSource::DefaultValue);
    let text = read(path).map_err(|error| Failure::Settings {
        error: anyhow!("cannot read the config file {}: {error}", path.display()),
        log_format: chosen,
    })?;
    // A refused file's message comes in the format the flag or the
    // environment chose, else in the one the file itself asks for.
    let log_format = if explicit { chosen } else { file_log_format(&text).unwrap_or(chosen) };
    let refused = |error| Failure::Settings { error, log_format };
    let settings = read_settings(path, &text).map_err(refused)?;
    let serving = matches.subcommand_name() == Some(SERVE);
    let mut command = Cli::command();
    for Setting { id, scope, values } in settings {
        command = match scope {
            Scope::Global => command.mut_arg(id, |arg| arg.default_values(values)),
            Scope::Serve if serving => {
                command.mut_subcommand(SERVE, |serve| serve.mut_arg(id, |arg| arg.default_values(values)))
            }
            Scope::Serve => command,
        };
    }
    let matches = command.try_get_matches_from(&arguments).map_err(Failure::Usage)?;
    Cli::from_arg_matches(&matches).map_err(Failure::Usage)
}

/// The `log-format` a config file's text sets, if it parses and sets one.
fn file_log_format(text: &str) -> Option<LogFormat> {
    let table = DeTable::parse(text).ok()?;
    let value = table.get_ref().iter().find(|(key, _)| key.get_ref().as_ref() == "log-format")?.1;
    LogFormat::from_str(value.get_ref().as_str()?, true).ok()
}

/// The log format a command line that clap refused asked for, so that its
/// usage error is one JSON object in JSON mode: `--log-format` (either
/// spelling), else `KEYSD_LOG_FORMAT`, else the config file's
/// `log-format` (`--config` or `KEYSD_CONFIG`).
pub fn requested_log_format(arguments: &[OsString]) -> LogFormat {
    let arguments: Vec<String> = arguments.iter().map(|argument| argument.to_string_lossy().into_owned()).collect();
    let flag = |name: &str| {
        arguments.iter().enumerate().find_map(|(index, argument)| match argument.strip_prefix(name) {
            Some("") => arguments.get(index + 1).cloned(),
            Some(rest) => rest.strip_prefix('=').map(str::to_owned),
            None => None,
        })
    };
    let parse = |value: String| LogFormat::from_str(&value, true).ok();
    if let Some(format) = flag("--log-format").and_then(parse) {
        return format;
    }
    if let Some(format) = std::env::var("KEYSD_LOG_FORMAT").ok().and_then(parse) {
        return format;
    }
    let file = flag("--config").or_else(|| std::env::var("KEYSD_CONFIG").ok());
    file.and_then(|path| std::fs::read_to_string(path).ok()).and_then(|text| file_log_format(&text)).unwrap_or_default()
}

/// Whose flag an argument is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// A global flag, given before or after any command.
    Global,
    /// A flag of `serve`.
    Serve,
}

/// The arguments the settings table of docs/OPERATIONS.md lists: the
/// global flags and those of `serve`, as clap knows them once the command
/// is built (defaults and value parsers filled in), `--help` and
/// `--version` left out.
pub fn arguments() -> Vec<(Scope, Arg)> {
    let mut command = Cli::command();
    command.build();
    let is_ours = |arg: &&Arg| !matches!(arg.get_id().as_str(), "help" | "version") && arg.get_long().is_some();
    let mut arguments: Vec<(Scope, Arg)> =
        command.get_arguments().filter(is_ours).map(|arg| (Scope::Global, arg.clone())).collect();
    if let Some(serve) = command.find_subcommand(SERVE) {
        let own = serve.get_arguments().filter(is_ours).filter(|arg| !arg.is_global_set());
        arguments.extend(own.map(|arg| (Scope::Serve, arg.clone())));
    }
    arguments
}

/// The key that sets `arg` in the file (its long name), or `None` for
/// `--config` itself.
pub fn file_key(arg: &Arg) -> Option<&str> {
    if arg.get_id() == CONFIG {
        return None;
    }
    arg.get_long()
}

/// A flag set by the file: clap's id, whose flag it is, and its values.
#[derive(Debug)]
struct Setting {
    id: String,
    scope: Scope,
    values: Vec<String>,
}

/// The file's settings, in the order they appear, each checked with its
/// flag's parser.
fn read_settings(path: &Path, text: &str) -> anyhow::Result<Vec<Setting>> {
    let file = path.display();
    let table = DeTable::parse(text).map_err(|error| {
        let line = error.span().map(|span| format!(", line {}", line_of(text, span.start))).unwrap_or_default();
        anyhow!("config file {file}{line}: not valid TOML: {}", one_line(error.message()))
    })?;
    let arguments = arguments();
    let mut entries: Vec<_> = table.get_ref().iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);
    let mut settings = Vec::with_capacity(entries.len());
    for (key, value) in entries {
        let at = format!("config file {file}, line {}", line_of(text, key.span().start));
        let key = key.get_ref().as_ref();
        let Some((scope, arg)) = arguments.iter().find(|(_, arg)| file_key(arg) == Some(key)) else {
            let sections =
                if value.get_ref().is_table() { "; settings are top-level keys, without [sections]" } else { "" };
            bail!(
                "{at}: unknown key '{key}' (a key is the long name of a flag of serve or of a global flag, without \
                 its dashes){sections}"
            );
        };
        let values = values_of(arg, value.get_ref()).map_err(|problem| anyhow!("{at}: key '{key}' {problem}"))?;
        for value in &values {
            check(arg.get_value_parser(), value)
                .map_err(|reason| anyhow!("{at}: key '{key}': invalid value '{value}': {reason}"))?;
        }
        settings.push(Setting { id: arg.get_id().to_string(), scope: *scope, values });
    }
    Ok(settings)
}

/// The values a TOML value gives `arg`, as the command line would spell
/// them: a list only for a repeatable flag (where one value is a list of
/// one).
fn values_of(arg: &Arg, value: &DeValue<'_>) -> Result<Vec<String>, String> {
    let repeatable = matches!(arg.get_action(), ArgAction::Append);
    match value.as_array() {
        Some(_) if !repeatable => Err("takes one value, not a list".to_owned()),
        Some(items) => items.iter().map(|item| scalar(item.get_ref())).collect(),
        None => Ok(vec![scalar(value)?]),
    }
}

/// One TOML value as command-line text.
fn scalar(value: &DeValue<'_>) -> Result<String, String> {
    Ok(match value {
        DeValue::String(text) => text.to_string(),
        DeValue::Integer(integer) => i128::from_str_radix(integer.as_str(), integer.radix())
            .map_or_else(|_| integer.to_string(), |number| number.to_string()),
        DeValue::Float(float) => float.to_string(),
        DeValue::Boolean(boolean) => boolean.to_string(),
        DeValue::Datetime(datetime) => datetime.to_string(),
        DeValue::Array(_) => return Err("takes a list of values, not a list of lists".to_owned()),
        DeValue::Table(_) => return Err("takes a value, not a table".to_owned()),
    })
}

/// Whether `parser` (a flag's own) accepts `value`; else its reason. The
/// value goes through a command of one argument with that parser and
/// nothing else of the flag (no environment variable, no relations to
/// other flags), so that only the value is judged.
fn check(parser: &ValueParser, value: &str) -> Result<(), String> {
    let probe = Command::new("keysd")
        .no_binary_name(true)
        .arg(Arg::new("value").long("value").action(ArgAction::Set).value_parser(parser.clone()));
    match probe.try_get_matches_from([format!("--value={value}")]) {
        Ok(_) => Ok(()),
        Err(error) => Err(reason(&error)),
    }
}

/// What a value parser said, without clap's framing around it.
fn reason(error: &clap::Error) -> String {
    if let Some(source) = std::error::Error::source(error) {
        return one_line(&source.to_string());
    }
    match error.get(ContextKind::ValidValue) {
        Some(ContextValue::Strings(valid)) => format!("expected one of {}", valid.join(", ")),
        _ => one_line(&error.kind().to_string()),
    }
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).unwrap_or(text).matches('\n').count() + 1
}

/// `text` on one line, whatever line breaks it had.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::Command as Subcommand;

    const FILE: &str = "/etc/keysd/keysd.toml";

    #[test]
    fn a_refused_command_line_is_told_in_the_format_it_asked_for() {
        let format =
            |arguments: &[&str]| requested_log_format(&arguments.iter().map(OsString::from).collect::<Vec<_>>());
        assert_eq!(format(&["keysd", "--log-format", "json", "serve", "--nope"]), LogFormat::Json);
        assert_eq!(format(&["keysd", "serve", "--log-format=JSON"]), LogFormat::Json);
        assert_eq!(format(&["keysd", "serve", "--log-format", "yaml"]), LogFormat::Text);
        let file = std::env::temp_dir().join(format!("keysd-log-format-{}.toml", std::process::id()));
        std::fs::write(&file, "log-format = \"json\"\nbogus = 1\n").expect("writes");
        let file = file.to_string_lossy().into_owned();
        assert_eq!(format(&["keysd", "--config", &file, "serve", "--nope"]), LogFormat::Json);
        assert_eq!(format(&["keysd", "--config", &file, "--log-format", "text"]), LogFormat::Text);
        let _ = std::fs::remove_file(&file);
        assert_eq!(
            crate::output::one_line("error: unexpected argument '--nope' found\n\nUsage: keysd serve\n"),
            "unexpected argument '--nope' found Usage: keysd serve"
        );
    }

    fn parsed(arguments: &[&str], file: &str) -> Result<Cli, Failure> {
        let arguments = ["keysd", "--config", FILE].iter().chain(arguments).map(OsString::from).collect();
        let file = file.to_owned();
        parse_with(arguments, move |path| {
            assert_eq!(path, Path::new(FILE));
            Ok(file.clone())
        })
    }

    fn serve(arguments: &[&str], file: &str) -> crate::serve::ServeArgs {
        let cli = parsed(&[&["serve"], arguments].concat(), file).expect("parses");
        match cli.command {
            Subcommand::Serve(args) => *args,
            other => panic!("not serve: {other:?}"),
        }
    }

    /// The one-line message of a refused file.
    fn refused(arguments: &[&str], file: &str) -> String {
        match parsed(arguments, file) {
            Err(Failure::Settings { error, .. }) => {
                let message = format!("{error:#}");
                assert!(!message.contains('\n'), "{message}");
                assert!(message.contains(FILE), "{message}");
                message
            }
            Err(Failure::Usage(error)) => panic!("a usage error instead: {error}"),
            Ok(cli) => panic!("accepted: {cli:?}"),
        }
    }

    #[test]
    fn the_file_beats_the_default_and_a_flag_beats_the_file() {
        let file = "listen = \"127.0.0.1:0\"\ncache-ttl-ms = 100\njwt-require-exp = true\n\
                    jwt-audience = [\"a\", \"b\"]\nmax-keys-per-workspace = 7\ndatabase-url = \"sqlite://f.db\"\n";
        let args = serve(&[], file);
        assert_eq!(args.listen, "127.0.0.1:0");
        assert_eq!(args.cache_ttl_ms, 100);
        assert!(args.jwt_require_exp);
        assert_eq!(args.jwt_audiences, ["a", "b"]);
        assert_eq!(args.quotas.max_keys_per_workspace, 7);
        // Untouched flags keep their built-in defaults.
        assert_eq!(args.rsa_pool_threads, 1);
        assert_eq!(args.rate_limit, None);
        let args = serve(&["--cache-ttl-ms", "200", "--jwt-audience", "c"], file);
        assert_eq!(args.cache_ttl_ms, 200);
        assert_eq!(args.jwt_audiences, ["c"], "the command line's list replaces the file's");
        let cli = parsed(&["serve", "--database-url", "sqlite://flag.db"], file).expect("parses");
        assert_eq!(cli.database_url, "sqlite://flag.db");
        let cli = parsed(&["serve"], file).expect("parses");
        assert_eq!(cli.database_url, "sqlite://f.db");
        assert_eq!(cli.config.as_deref(), Some(Path::new(FILE)));
    }

    #[test]
    fn operator_commands_take_the_global_keys_and_check_the_rest() {
        let file = "database-url = \"sqlite://f.db\"\nlog-format = \"json\"\ncache-ttl-ms = 100\n";
        let cli = parsed(&["token", "list", "--org", "acme"], file).expect("parses");
        assert_eq!(cli.database_url, "sqlite://f.db");
        assert_eq!(cli.log_format, LogFormat::Json);
        // A bad serve value stops them too: the file is checked whole.
        let message = refused(&["token", "list", "--org", "acme"], "cache-ttl-ms = 5000\n");
        assert!(message.contains("'cache-ttl-ms'"), "{message}");
    }

    #[test]
    fn without_a_file_nothing_changes() {
        let cli =
            parse_with(["keysd", "serve"].map(OsString::from).to_vec(), |_| panic!("no file is read")).expect("parses");
        let Subcommand::Serve(args) = cli.command else { panic!("serve") };
        assert_eq!(args.cache_ttl_ms, 500);
        assert_eq!(cli.log_format, LogFormat::Text);
        assert_eq!(cli.config, None);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_by_name() {
        let message = refused(&["serve"], "listen = \"127.0.0.1:0\"\n\ncache-ttl = 100\n");
        assert!(message.contains("line 3") && message.contains("unknown key 'cache-ttl'"), "{message}");
        let message = refused(&["serve"], "[serve]\nlisten = \"127.0.0.1:0\"\n");
        assert!(message.contains("unknown key 'serve'") && message.contains("top-level"), "{message}");
        for (file, key, reason) in [
            ("cache-ttl-ms = 1001\n", "cache-ttl-ms", "1001 is not in 0..=1000"),
            ("cache-ttl-ms = \"soon\"\n", "cache-ttl-ms", "invalid digit"),
            ("rate-limit = 0\n", "rate-limit", "0 is not in 1.."),
            ("jwt-require-exp = \"yes\"\n", "jwt-require-exp", "invalid value 'yes'"),
            ("log-format = \"xml\"\n", "log-format", "text, json"),
            ("trusted-proxy = [\"10.0.0.0/8\", \"nonsense\"]\n", "trusted-proxy", "nonsense"),
            ("listen = [\"127.0.0.1:0\"]\n", "listen", "one value, not a list"),
            ("max-keys-per-workspace = 1.5\n", "max-keys-per-workspace", "1.5"),
        ] {
            let message = refused(&["serve"], file);
            assert!(message.contains(&format!("key '{key}'")) && message.contains(reason), "{file}: {message}");
        }
        let message = refused(&["serve"], "config = \"other.toml\"\n");
        assert!(message.contains("unknown key 'config'"), "{message}");
        let message = refused(&["serve"], "listen = \n");
        assert!(message.contains("line 1") && message.contains("not valid TOML"), "{message}");
    }

    #[test]
    fn a_refused_file_is_reported_in_the_chosen_format() {
        let arguments = ["keysd", "--log-format", "json", "--config", FILE, "serve"].map(OsString::from).to_vec();
        match parse_with(arguments, |_| Ok("nonsense = 1\n".to_owned())) {
            Err(Failure::Settings { log_format, .. }) => assert_eq!(log_format, LogFormat::Json),
            other => panic!("{other:?}"),
        }
        let arguments = ["keysd", "--config", FILE, "serve"].map(OsString::from).to_vec();
        match parse_with(arguments, |_| Err(std::io::Error::from(std::io::ErrorKind::NotFound))) {
            Err(Failure::Settings { error, .. }) => {
                assert!(error.to_string().starts_with(&format!("cannot read the config file {FILE}")), "{error}")
            }
            other => panic!("{other:?}"),
        }
    }

    // ------------------------------------------- the settings table

    /// A row of the settings table: its cells, backticks and all.
    #[derive(Debug)]
    struct Row {
        flag: String,
        environment: String,
        file_key: String,
        default: String,
    }

    fn document(name: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs").join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
    }

    /// The text of section `## {title}` of a Markdown document.
    fn section<'a>(text: &'a str, title: &str) -> &'a str {
        let heading = format!("\n## {title}\n");
        let start = text.find(&heading).unwrap_or_else(|| panic!("no section '{title}'")) + heading.len();
        let rest = &text[start..];
        rest.find("\n## ").map_or(rest, |end| &rest[..end])
    }

    /// The long name of the flag a table row is about (`| `--listen ADDR` |
    /// …` gives `listen`), if the row is about one.
    fn flag_of(line: &str) -> Option<&str> {
        let rest = line.strip_prefix("| `--")?;
        rest.split([' ', '`']).next()
    }

    fn rows(section: &str) -> BTreeMap<String, Row> {
        let mut rows = BTreeMap::new();
        for line in section.lines() {
            let Some(flag) = flag_of(line) else { continue };
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            assert_eq!(cells.len(), 5, "a row of the settings table has 5 cells (no `|` inside one): {line}");
            let row = Row {
                flag: cells[0].to_owned(),
                environment: cells[1].to_owned(),
                file_key: cells[2].to_owned(),
                default: cells[3].to_owned(),
            };
            assert!(rows.insert(flag.to_owned(), row).is_none(), "--{flag} has two rows");
        }
        rows
    }

    /// The row `arg` should have, as far as clap decides it: the flag, its
    /// environment variable, file key and default (the meaning is prose).
    fn expected_row(arg: &Arg) -> (String, String, String, Option<String>) {
        let long = arg.get_long().expect("a long flag");
        let takes_value = !matches!(arg.get_action(), ArgAction::SetTrue);
        let value_name = arg.get_value_names().and_then(|names| names.first()).map(ToString::to_string);
        let flag = match value_name {
            Some(name) if takes_value => format!("`--{long} {name}`"),
            _ => format!("`--{long}`"),
        };
        let environment =
            arg.get_env().map_or_else(|| "none".to_owned(), |name| format!("`{}`", name.to_string_lossy()));
        let file_key = file_key(arg).map_or_else(|| "none".to_owned(), |key| format!("`{key}`"));
        let defaults: Vec<String> =
            arg.get_default_values().iter().map(|value| value.to_string_lossy().into_owned()).collect();
        let default = (!defaults.is_empty()).then(|| format!("`{}`", defaults.join(",")));
        (flag, environment, file_key, default)
    }

    /// Checks `rows` against every global flag and flag of serve, both
    /// ways; the list of what differs.
    fn differences(rows: &BTreeMap<String, Row>) -> Vec<String> {
        let arguments = arguments();
        let mut differences = Vec::new();
        for (_, arg) in &arguments {
            let long = arg.get_long().expect("a long flag");
            let (flag, environment, file_key, default) = expected_row(arg);
            let Some(row) = rows.get(long) else {
                let default = default.unwrap_or_else(|| "none".to_owned());
                differences
                    .push(format!("no row for --{long}: | {flag} | {environment} | {file_key} | {default} | … |"));
                continue;
            };
            // A value name in the table that clap does not know is fine
            // (clap's is the field's name unless one is given); the flag is not.
            if !(row.flag == flag || (flag.contains(' ') && row.flag.starts_with(&format!("`--{long} ")))) {
                differences.push(format!("--{long}: flag cell {} (expected {flag})", row.flag));
            }
            // An environment cell may say more after the name: "(comma-separated)".
            if !(row.environment == environment || row.environment.starts_with(&format!("{environment} "))) {
                differences.push(format!("--{long}: environment {} (expected {environment})", row.environment));
            }
            if row.file_key != file_key {
                differences.push(format!("--{long}: file key {} (expected {file_key})", row.file_key));
            }
            match default {
                Some(default) if !row.default.starts_with(&default) => {
                    differences.push(format!("--{long}: default {} (expected {default} first)", row.default));
                }
                None if row.default.starts_with('`') => {
                    differences
                        .push(format!("--{long}: default {} but clap has none (write it in words)", row.default));
                }
                _ => {}
            }
        }
        for long in rows.keys() {
            if !arguments.iter().any(|(_, arg)| arg.get_long() == Some(long.as_str())) {
                differences.push(format!("a row for --{long}, which is neither a global flag nor a flag of serve"));
            }
        }
        differences
    }

    #[test]
    fn the_settings_table_is_every_global_flag_and_flag_of_serve() {
        let operations = document("OPERATIONS.md");
        let rows = rows(section(&operations, "Settings"));
        // Guards the guard: the reader sees the table's rows.
        assert!(rows.len() > 30 && rows.contains_key("cache-ttl-ms"), "read only {:?}", rows.keys());
        let differences = differences(&rows);
        assert!(
            differences.is_empty(),
            "docs/OPERATIONS.md, Settings, and the flags differ (each flag of serve and each global one has one \
             row there, with its environment variable, file key and default):\n{}",
            differences.join("\n")
        );
    }

    #[test]
    fn the_table_check_finds_a_missing_a_wrong_and_an_extra_row() {
        let table = "| `--listen ADDR` | `KEYSD_LISTEN` | `listen` | `127.0.0.1:9` | address |\n\
                     | `--jwt-require-exp` | `KEYSD_JWT_REQUIRE_EXP` | `jwt-require-exp` | `false` | refuse |\n\
                     | `--config FILE` | `KEYSD_CONFIG` | `config` | none | the file |\n\
                     | `--no-such-flag` | none | `no-such-flag` | none | nothing |\n";
        let differences = differences(&rows(table));
        let about = |needle: &str| differences.iter().filter(|line| line.contains(needle)).count();
        assert_eq!(about("--listen: default"), 1, "{differences:#?}");
        assert_eq!(about("--config: file key"), 1, "{differences:#?}");
        assert_eq!(about("--no-such-flag"), 1, "{differences:#?}");
        assert_eq!(about("no row for --cache-ttl-ms"), 1, "{differences:#?}");
        assert_eq!(about("--jwt-require-exp"), 0, "{differences:#?}");
    }

    #[test]
    fn cli_md_leaves_the_settings_to_the_table() {
        // One table, so that the two cannot drift: CLI.md points to it and
        // repeats none of its rows.
        let cli = document("CLI.md");
        assert!(cli.contains("OPERATIONS.md#settings"), "docs/CLI.md does not point to the settings table");
        let repeated: Vec<&str> = cli
            .lines()
            .filter(|line| {
                flag_of(line).is_some_and(|long| arguments().iter().any(|(_, arg)| arg.get_long() == Some(long)))
            })
            .collect();
        assert!(
            repeated.is_empty(),
            "docs/CLI.md repeats rows of the settings table (the flags of serve and the global ones are \
             documented once, in docs/OPERATIONS.md, Settings):\n{}",
            repeated.join("\n")
        );
    }

    #[test]
    fn integers_in_any_base_and_numbers_with_underscores_read_as_decimals() {
        let args = serve(&[], "max-request-head-bytes = 0x4000\nmax-response-bytes = 1_048_576\n");
        assert_eq!(args.max_request_head_bytes, 16_384);
        assert_eq!(args.max_response_bytes, 1_048_576);
    }
}
