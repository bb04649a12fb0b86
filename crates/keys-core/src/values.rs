//! Validated values: parse, don't validate. Each type can only hold a value
//! that passed its `parse`.

use std::fmt;

use time::OffsetDateTime;

use crate::CoreError;

/// Slugs that would collide with routes of the HTTP API.
pub const RESERVED_SLUGS: [&str; 9] =
    ["workspace", "organisations", "keys", "verify", "health", "service_token", "audit_event", "auth", "console"];

/// A workspace slug: `^[a-z0-9][a-z0-9_-]{0,62}$`, not reserved.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkspaceSlug(String);

impl WorkspaceSlug {
    pub fn parse(text: &str) -> Result<Self, CoreError> {
        let bytes = text.as_bytes();
        let well_formed = !bytes.is_empty()
            && bytes.len() <= 63
            && matches!(bytes[0], b'a'..=b'z' | b'0'..=b'9')
            && bytes.iter().all(|byte| matches!(byte, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'));
        if !well_formed {
            return Err(CoreError::InvalidSlug);
        }
        if RESERVED_SLUGS.contains(&text) {
            return Err(CoreError::ReservedSlug(text.to_owned()));
        }
        Ok(Self(text.to_owned()))
    }

    /// The slug a workspace gets when the client names it but gives no slug:
    /// the name lower-cased, every run of other characters turned into `-`.
    pub fn derive_from_name(name: &Name) -> Result<Self, CoreError> {
        let mut slug = String::new();
        for character in name.as_str().chars() {
            let lower = character.to_ascii_lowercase();
            if lower.is_ascii_lowercase() || lower.is_ascii_digit() || lower == '_' {
                slug.push(lower);
            } else if !slug.is_empty() && !slug.ends_with('-') {
                slug.push('-');
            }
        }
        while slug.ends_with('-') {
            slug.pop();
        }
        let slug = slug.trim_start_matches('_').to_owned();
        let mut slug: String = slug.chars().take(63).collect();
        while slug.ends_with('-') {
            slug.pop();
        }
        Self::parse(&slug)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for WorkspaceSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for WorkspaceSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WorkspaceSlug({})", self.0)
    }
}

/// Whether text read back from storage is held to the rule against format
/// characters, which came later: a name stored before must stay readable.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    Client,
    Storage,
}

fn checked_text(text: &str, field: &'static str, max: usize, from: Source) -> Result<String, CoreError> {
    let trimmed = text.trim();
    // What a client sends is held to its length and its characters as sent,
    // surrounding whitespace included, so that the OpenAPI document can say
    // exactly what is accepted (`maxLength`, and a pattern without control
    // or format characters); what storage holds was trimmed on the way in.
    let checked = if from == Source::Client { text } else { trimmed };
    if checked.chars().count() > max {
        return Err(CoreError::TooLong { field, max });
    }
    if checked.chars().any(char::is_control) {
        return Err(CoreError::ControlCharacters { field });
    }
    if from == Source::Client && checked.chars().any(is_format_character) {
        return Err(CoreError::FormatCharacters { field });
    }
    Ok(trimmed.to_owned())
}

/// The Unicode format characters (general category `Cf`, Unicode 15):
/// invisible, yet they reorder (U+202E RIGHT-TO-LEFT OVERRIDE) or split
/// (U+200B ZERO WIDTH SPACE) what a console shows, so a name holding one
/// can pass for another. The standard library has no category lookup and
/// the set is small and stable, so it is listed here.
pub const FORMAT_CHARACTERS: [(u32, u32); 21] = [
    (0x00AD, 0x00AD),
    (0x0600, 0x0605),
    (0x061C, 0x061C),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x180E, 0x180E),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x206F),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
];

fn is_format_character(character: char) -> bool {
    let code = u32::from(character);
    FORMAT_CHARACTERS.iter().any(|&(first, last)| (first..=last).contains(&code))
}

/// A display name: 1 to 255 characters after trimming, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Name(String);

impl Name {
    pub const MAX_CHARS: usize = 255;

    pub fn parse(text: &str) -> Result<Self, CoreError> {
        Self::checked(text, Source::Client)
    }

    /// A name as storage holds it (see `Source`).
    pub fn restore(text: &str) -> Result<Self, CoreError> {
        Self::checked(text, Source::Storage)
    }

    fn checked(text: &str, from: Source) -> Result<Self, CoreError> {
        let name = checked_text(text, "name", Self::MAX_CHARS, from)?;
        if name.is_empty() {
            return Err(CoreError::Blank { field: "name" });
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An optional free-text description: at most 1024 characters; blank means none.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Description(String);

impl Description {
    pub const MAX_CHARS: usize = 1024;

    /// `None` for an absent or blank description.
    pub fn parse(text: Option<&str>) -> Result<Option<Self>, CoreError> {
        Self::checked(text, Source::Client)
    }

    /// A description as storage holds it (see `Source`).
    pub fn restore(text: Option<&str>) -> Result<Option<Self>, CoreError> {
        Self::checked(text, Source::Storage)
    }

    fn checked(text: Option<&str>, from: Source) -> Result<Option<Self>, CoreError> {
        let Some(text) = text else { return Ok(None) };
        let description = checked_text(text, "description", Self::MAX_CHARS, from)?;
        Ok((!description.is_empty()).then_some(Self(description)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The workspace mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    Sandbox,
    Production,
}

impl Mode {
    pub fn parse(text: &str) -> Result<Self, CoreError> {
        match text {
            "sandbox" => Ok(Self::Sandbox),
            "production" => Ok(Self::Production),
            _ => Err(CoreError::InvalidMode),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sandbox => "sandbox",
            Self::Production => "production",
        }
    }
}

/// Who caused a change: `{name, email}`. Every `*_by` field holds one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Actor {
    name: String,
    email: String,
}

impl Actor {
    pub fn new(name: impl Into<String>, email: impl Into<String>) -> Self {
        Self { name: name.into(), email: email.into() }
    }

    /// The actor of an organisation's service tokens:
    /// `System User`, `org_<orgid>@systemuser.keysd.local`.
    pub fn system_user(organisation: &crate::OrganisationId) -> Self {
        Self::new("System User", format!("org_{organisation}@systemuser.keysd.local"))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn email(&self) -> &str {
        &self.email
    }
}

/// The moment a change happens, truncated to microseconds in UTC: the
/// precision every `*_at` field and both databases keep, so what is written
/// reads back equal.
pub fn timestamp(now: OffsetDateTime) -> OffsetDateTime {
    let utc = now.to_offset(time::UtcOffset::UTC);
    utc.replace_nanosecond(utc.nanosecond() / 1_000 * 1_000).unwrap_or(utc)
}

/// One page of a list: `limit` in 1..=100 (default 10), `offset` ≥ 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pagination {
    limit: u32,
    offset: u64,
}

impl Pagination {
    pub const DEFAULT_LIMIT: u32 = 10;
    pub const MAX_LIMIT: u32 = 100;
    /// Offsets past this are refused rather than sent to the database.
    pub const MAX_OFFSET: u64 = i64::MAX as u64;

    pub fn new(limit: u32, offset: u64) -> Result<Self, CoreError> {
        if limit == 0 || limit > Self::MAX_LIMIT {
            return Err(CoreError::InvalidLimit);
        }
        if offset > Self::MAX_OFFSET {
            return Err(CoreError::InvalidOffset);
        }
        Ok(Self { limit, offset })
    }

    pub fn limit(self) -> u32 {
        self.limit
    }

    pub fn offset(self) -> u64 {
        self.offset
    }
}

impl Default for Pagination {
    fn default() -> Self {
        Self { limit: Self::DEFAULT_LIMIT, offset: 0 }
    }
}

/// One page of results and the total count of the whole list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
    pub pagination: Pagination,
}
