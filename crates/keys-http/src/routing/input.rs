//! What a handler reads of a request besides its path parameters
//! ([`Input`]: the query and the body), and how a JSON body becomes a wire
//! type: only `application/json` (or a `+json` type), a whole number written
//! `60.0` read as `60`, every problem told in the words of the request (the
//! field and what it must be, never serde's type names), and a member named
//! twice in one object refused ([`duplicate_json_key`]).

use bytes::Bytes;
use http::HeaderValue;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// The parts of a request a handler reads besides its path parameters.
#[derive(Default)]
pub(crate) struct Input {
    pub query: Option<String>,
    /// Shares the request's header bytes.
    content_type: Option<HeaderValue>,
    body: Bytes,
}

impl std::fmt::Debug for Input {
    // The body may hold a secret (a key to verify), so only its size shows.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Input")
            .field("query", &self.query)
            .field("content_type", &self.content_type)
            .field("body_bytes", &self.body.len())
            .finish()
    }
}

impl Input {
    pub fn new(query: Option<String>, content_type: Option<HeaderValue>, body: Bytes) -> Self {
        Self { query, content_type, body }
    }

    /// Whether the declared media type is JSON (`application/json`, any
    /// parameters, or a `+json` suffix type).
    fn is_json(&self) -> bool {
        let Some(content_type) = self.content_type.as_ref().and_then(|value| value.to_str().ok()) else {
            return false;
        };
        let media_type = content_type.split(';').next().unwrap_or_default().trim().as_bytes();
        let starts_with = |prefix: &str| {
            media_type.get(..prefix.len()).is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes()))
        };
        let ends_with = |suffix: &str| {
            media_type.len() >= suffix.len()
                && media_type[media_type.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
        };
        media_type.eq_ignore_ascii_case(b"application/json") || (starts_with("application/") && ends_with("+json"))
    }

    fn body_is_empty(&self) -> bool {
        self.body.iter().all(u8::is_ascii_whitespace)
    }

    /// The body as it arrived, for a handler that checks its signature
    /// before it parses it.
    pub fn raw_body(&self) -> &Bytes {
        &self.body
    }

    /// Whether the declared media type is JSON, for a handler that parses
    /// [`Input::raw_body`] itself.
    pub fn declares_json(&self) -> bool {
        self.is_json()
    }

    /// A required JSON body.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        if !self.is_json() {
            return Err(ApiError::UnsupportedMediaType);
        }
        if self.body_is_empty() {
            return Err(ApiError::validation("request body must be a JSON object"));
        }
        // Every request body is an object: serde would also fill a struct
        // from an array, field by field.
        if self.body.iter().find(|byte| !byte.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ApiError::validation(match serde_json::from_slice::<serde::de::IgnoredAny>(&self.body) {
                Ok(_) => "request body must be a JSON object",
                Err(_) => "request body is not valid JSON",
            }));
        }
        // The fast path for the bodies clients send; only a body that does
        // not fit takes the slow one, which also accepts `60.0` for `60`.
        let parsed = serde_json::from_slice(&self.body).or_else(|_| body_from_value(&self.body))?;
        // A name twice in one object (at any depth) is refused, whatever
        // `T` makes of it: serde_json would keep the last one silently.
        if let Some(path) = duplicate_json_key(&self.body) {
            return Err(ApiError::validation(format!("{path} appears twice in one object")));
        }
        Ok(parsed)
    }

    /// An optional JSON body: empty (with or without a content type) means
    /// the default.
    pub fn optional_json<T: DeserializeOwned + Default>(&self) -> Result<T, ApiError> {
        if self.body_is_empty() {
            return Ok(T::default());
        }
        self.json()
    }
}

/// Decodes a body that did not decode directly: as a JSON document first
/// (so a syntax error is told as such, without parser positions), then with
/// every number that has a zero fraction made that integer (docs/API.md,
/// Shared HTTP behaviour), then into `T`, telling which field did not fit and what it must be.
fn body_from_value<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let document: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| ApiError::validation("request body is not valid JSON"))?;
    // Every request body is an object (serde would also take an array for
    // a struct, field by field).
    if !document.is_object() {
        return Err(ApiError::validation("request body must be a JSON object"));
    }
    serde_path_to_error::deserialize(whole_numbers(document))
        .map_err(|error| ApiError::validation(body_error_message(&error)))
}

/// `document` with each float that is a whole number (`60.0`, `1e3`)
/// replaced by that integer.
fn whole_numbers(document: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match document {
        Value::Number(number) => {
            let whole = number.as_f64().filter(|float| number.is_f64() && float.fract() == 0.0).and_then(|float| {
                // Exact conversions only: floats beyond the integer types stay floats.
                if (0.0..18_446_744_073_709_551_616.0).contains(&float) {
                    Some(serde_json::Number::from(float as u64))
                } else if (-9_223_372_036_854_775_808.0..0.0).contains(&float) {
                    Some(serde_json::Number::from(float as i64))
                } else {
                    None
                }
            });
            Value::Number(whole.unwrap_or(number))
        }
        Value::Array(items) => Value::Array(items.into_iter().map(whole_numbers).collect()),
        Value::Object(fields) => {
            Value::Object(fields.into_iter().map(|(name, value)| (name, whole_numbers(value))).collect())
        }
        other => other,
    }
}

/// What was wrong with a JSON body, in the words of the request: the field
/// (`grace_period_seconds`, `allowed_domains[2]`) and what it must be,
/// never serde's type names (`u64`, `struct RollApiKey`).
fn body_error_message(error: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let path = error.path().to_string();
    let field = if path == "." { "request body".to_owned() } else { path };
    let serde = error.inner().to_string();
    let quoted = |text: &str| text.split('`').skip(1).step_by(2).map(str::to_owned).collect::<Vec<_>>();
    if let Some(rest) = serde.strip_prefix("missing field ") {
        let missing = quoted(rest).join("");
        return if field == "request body" {
            format!("{missing} is required")
        } else {
            format!("{field}.{missing} is required")
        };
    }
    if let Some(rest) = serde.strip_prefix("unknown field ") {
        let mut names = quoted(rest).into_iter();
        let unknown = names.next().unwrap_or_default();
        let accepted: Vec<String> = names.collect();
        // Inside an array of objects (an import's `keys`), the object at
        // fault is named: `keys[3]: unknown field …`.
        let owner = match field.strip_suffix(unknown.as_str()) {
            Some(rest) => rest.strip_suffix('.').unwrap_or_default(),
            None if field != "request body" => field.as_str(),
            None => "",
        };
        let at = if owner.is_empty() { String::new() } else { format!("{owner}: ") };
        return if accepted.is_empty() {
            format!("{at}unknown field {}: this request takes no fields", shortened(&unknown))
        } else {
            format!("{at}unknown field {}; the fields are {}", shortened(&unknown), accepted.join(", "))
        };
    }
    if let Some(rest) = serde.strip_prefix("unknown variant ") {
        let allowed: Vec<String> = quoted(rest).into_iter().skip(1).collect();
        return format!("{field} must be one of {}", allowed.join(", "));
    }
    if serde.starts_with("duplicate field ") {
        return format!("{} appears twice", quoted(&serde).join(""));
    }
    let expected = serde.rsplit_once(", expected ").map(|(_, expected)| expected).unwrap_or_default();
    format!("{field} must be {}", plain_expectation(expected))
}

/// serde's "expected …" in plain words.
fn plain_expectation(expected: &str) -> &'static str {
    let expected = expected.trim();
    match expected {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a whole number, 0 or more",
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number",
        "f32" | "f64" => "a number",
        "a string" | "a borrowed string" | "a character" => "a string",
        "a boolean" => "true or false",
        "a sequence" => "an array",
        _ if expected.starts_with("struct ") || expected.starts_with("a map") || expected == "map" => "a JSON object",
        _ if expected.starts_with("a sequence") || expected.starts_with("tuple") => "an array",
        _ => "of another type or value",
    }
}

/// Client text echoed in a message, shortened.
fn shortened(text: &str) -> String {
    // Echoed only when it could be a field's name: a name made of other
    // text (spaces, quotes, `invalid type: …`) could read as the server's
    // own words.
    let plain = text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '[' | ']'));
    if !plain {
        return "(a name no field has)".to_owned();
    }
    text.chars().take(100).collect()
}

/// Where a JSON document names one member of an object twice, as a path in
/// the words of the request (`name`, `meta.owner`, `keys[2].name`); `None`
/// when every object's names are distinct. Parsers keep the last of two
/// equal names (serde_json does), so a body with one could mean one thing
/// to keysd and another to a proxy or a log reader that keeps the first:
/// such a body is refused (RFC 8259 section 4, I-JSON).
///
/// One pass over the bytes, no allocation for objects with distinct plain
/// names beyond one set per object. It expects a document that already
/// parsed (so depth is within serde_json's limit of 128) and, on anything
/// else, returns without a verdict rather than failing.
fn duplicate_json_key(document: &[u8]) -> Option<String> {
    let mut scanner = DuplicateScanner { bytes: document, at: 0 };
    scanner.value().err().flatten()
}

/// The state of [`duplicate_json_key`]'s pass. Its methods answer
/// `Err(Some(path))` for a duplicate (the path built while unwinding),
/// `Err(None)` for a document that does not parse.
struct DuplicateScanner<'a> {
    bytes: &'a [u8],
    at: usize,
}

type Scanned<T> = Result<T, Option<String>>;

impl<'a> DuplicateScanner<'a> {
    fn skip_whitespace(&mut self) {
        while self.bytes.get(self.at).is_some_and(|byte| matches!(byte, b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn value(&mut self) -> Scanned<()> {
        self.skip_whitespace();
        match self.bytes.get(self.at) {
            Some(b'{') => self.object(),
            Some(b'[') => self.array(),
            Some(b'"') => self.string().map(drop),
            Some(_) => {
                while self
                    .bytes
                    .get(self.at)
                    .is_some_and(|byte| !matches!(byte, b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r'))
                {
                    self.at += 1;
                }
                Ok(())
            }
            None => Err(None),
        }
    }

    /// A string, from its opening quote: its text, borrowed unless it holds
    /// escapes (`"a"` and `"\u0061"` are one name).
    fn string(&mut self) -> Scanned<std::borrow::Cow<'a, str>> {
        let start = self.at;
        self.at += 1;
        let mut escaped = false;
        loop {
            match self.bytes.get(self.at) {
                Some(b'"') => break,
                Some(b'\\') => {
                    escaped = true;
                    self.at += 2;
                }
                Some(_) => self.at += 1,
                None => return Err(None),
            }
        }
        self.at += 1;
        let quoted = &self.bytes[start..self.at];
        if escaped {
            serde_json::from_slice::<String>(quoted).map(std::borrow::Cow::Owned).map_err(|_| None)
        } else {
            std::str::from_utf8(&quoted[1..quoted.len() - 1]).map(std::borrow::Cow::Borrowed).map_err(|_| None)
        }
    }

    fn object(&mut self) -> Scanned<()> {
        self.at += 1;
        let mut names = std::collections::HashSet::new();
        loop {
            self.skip_whitespace();
            match self.bytes.get(self.at) {
                Some(b'}') => {
                    self.at += 1;
                    return Ok(());
                }
                Some(b',') => self.at += 1,
                Some(b'"') => {
                    let name = self.string()?;
                    if names.contains(&name) {
                        return Err(Some(echo_key(&name)));
                    }
                    self.skip_whitespace();
                    if self.bytes.get(self.at) != Some(&b':') {
                        return Err(None);
                    }
                    self.at += 1;
                    self.value().map_err(|inner| inner.map(|inner| joined(&echo_key(&name), &inner)))?;
                    names.insert(name);
                }
                _ => return Err(None),
            }
        }
    }

    fn array(&mut self) -> Scanned<()> {
        self.at += 1;
        let mut index = 0usize;
        loop {
            self.skip_whitespace();
            match self.bytes.get(self.at) {
                Some(b']') => {
                    self.at += 1;
                    return Ok(());
                }
                Some(b',') => {
                    self.at += 1;
                    index += 1;
                }
                Some(_) => {
                    self.value().map_err(|inner| inner.map(|inner| joined(&format!("[{index}]"), &inner)))?;
                }
                None => return Err(None),
            }
        }
    }
}

/// `outer` then `inner` as one path: `meta` and `owner` make `meta.owner`,
/// `keys` and `[2].name` make `keys[2].name`.
fn joined(outer: &str, inner: &str) -> String {
    let separator = if inner.starts_with('[') { "" } else { "." };
    format!("{outer}{separator}{inner}")
}

/// A member name as a 400 echoes it: shortened, and quoted when it is not
/// a plain field name.
fn echo_key(name: &str) -> String {
    let short: String = name.chars().take(64).collect();
    if !short.is_empty() && short.chars().all(|character| character.is_ascii_alphanumeric() || character == '_') {
        short
    } else {
        format!("{short:?}")
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_json_keys_are_found_at_any_depth_and_garbage_has_no_verdict() {
        assert_eq!(duplicate_json_key(br#"{"a":1,"b":{"c":[1,{"d":2,"d":3}]}}"#).as_deref(), Some("b.c[1].d"));
        assert_eq!(duplicate_json_key(br#"[{"x":1},{"y":[[{"z":0,"z":0}]]}]"#).as_deref(), Some("[1].y[0][0].z"));
        assert_eq!(duplicate_json_key(br#"{"a\"b":1,"a\u0022b":2}"#).as_deref(), Some(r#""a\"b""#));
        assert_eq!(duplicate_json_key(br#" { "a" : "}" , "b" : "{\"a\":1}" } "#), None);
        for garbage in [&b""[..], b"{", b"{\"a", b"{\"a\":", b"[1,", b"\"\\", b"{1:2}", b"}", b"{\"a\" 1}"] {
            assert_eq!(duplicate_json_key(garbage), None, "{:?}", String::from_utf8_lossy(garbage));
        }
    }

    /// An unknown field is named when it could be a name, and not echoed
    /// when it holds text that could read as the server's (the fuzzer's
    /// `{"grace_period_secinvalid type: onds": 60}`).
    #[test]
    fn an_unknown_field_is_echoed_only_when_it_could_be_a_name() {
        assert_eq!(shortened("grace_period"), "grace_period");
        assert_eq!(shortened("keys[3].name"), "keys[3].name");
        for odd in ["grace_period_secinvalid type: onds", "a b", "\"x\"", "struct RollApiKey", "é"] {
            assert_eq!(shortened(odd), "(a name no field has)", "{odd}");
        }
    }
}
