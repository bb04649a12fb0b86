//! Validated values: parse, don't validate. Each type can only hold a value
//! that passed its `parse`.

use std::fmt;

use time::OffsetDateTime;

use crate::CoreError;

/// Slugs that would collide with routes of the HTTP API.
pub const RESERVED_SLUGS: [&str; 12] = [
    "workspace",
    "organisations",
    "keys",
    "verify",
    "health",
    "service_token",
    "audit_event",
    "auth",
    "console",
    "secret_scanning",
    "leak_report",
    "webhook_endpoint",
];

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
    if from == Source::Client {
        match invisible_text(checked) {
            Some(InvisibleText::Character) => return Err(CoreError::FormatCharacters { field }),
            Some(InvisibleText::StackedMarks) => {
                return Err(CoreError::CombiningMarks { field, max: MAX_COMBINING_MARKS });
            }
            None => {}
        }
    }
    Ok(trimmed.to_owned())
}

/// What makes a client's text unfit for a name or a description, beyond
/// control characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InvisibleText {
    /// A format or other invisible character ([`FORMAT_CHARACTERS`],
    /// [`INVISIBLE_CHARACTERS`]), or a presentation selector
    /// ([`PRESENTATION_SELECTORS`]) out of place.
    Character,
    /// More than [`MAX_COMBINING_MARKS`] combining marks in a row.
    StackedMarks,
}

/// One pass over the text: the first reason it is refused, if any.
fn invisible_text(text: &str) -> Option<InvisibleText> {
    let mut previous: Option<char> = None;
    let mut marks_in_a_row = 0;
    for character in text.chars() {
        if is_format_character(character) || in_ranges(&INVISIBLE_CHARACTERS, character) {
            return Some(InvisibleText::Character);
        }
        if in_ranges(&COMBINING_MARKS, character) {
            marks_in_a_row += 1;
            if marks_in_a_row > MAX_COMBINING_MARKS {
                return Some(InvisibleText::StackedMarks);
            }
        } else {
            marks_in_a_row = 0;
        }
        if in_ranges(&PRESENTATION_SELECTORS, character) && !previous.is_some_and(takes_presentation_selector) {
            return Some(InvisibleText::Character);
        }
        previous = Some(character);
    }
    None
}

/// Whether a presentation selector may follow `character`: a visible
/// character outside ASCII (an emoji such as U+2764 HEAVY BLACK HEART or a
/// CJK symbol) that is not itself a mark, a selector or whitespace. After
/// an ASCII letter or digit a selector changes nothing a reader sees, so
/// `key1` and `key1` + U+FE0F would be two names that look alike.
fn takes_presentation_selector(character: char) -> bool {
    !character.is_ascii()
        && !character.is_whitespace()
        && !in_ranges(&COMBINING_MARKS, character)
        && !in_ranges(&PRESENTATION_SELECTORS, character)
}

fn in_ranges(ranges: &[(u32, u32)], character: char) -> bool {
    let code = u32::from(character);
    ranges.iter().any(|&(first, last)| (first..=last).contains(&code))
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
    in_ranges(&FORMAT_CHARACTERS, character)
}

/// Invisible characters outside category `Cf` that names and descriptions
/// refuse too: the rest of Unicode's `Default_Ignorable_Code_Point` set
/// (U+034F COMBINING GRAPHEME JOINER, the Hangul fillers U+115F, U+1160,
/// U+3164 and U+FFA0, which render as blank space, the Khmer inherent
/// vowels, the Mongolian free variation selectors, variation selectors 1
/// to 14, U+2065, U+FFF0 to U+FFF8, and the whole tag and variation
/// selector supplement block U+E0000 to U+E0FFF), the line and paragraph
/// separators (categories `Zl` and `Zp`, which break a console's line),
/// and U+2800 BRAILLE PATTERN BLANK, a favourite for names that look empty.
pub const INVISIBLE_CHARACTERS: [(u32, u32); 12] = [
    (0x034F, 0x034F),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x2028, 0x2029),
    (0x2065, 0x2065),
    (0x2800, 0x2800),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0D),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0xE0000, 0xE0FFF),
];

/// U+FE0E and U+FE0F, the text and emoji presentation selectors: allowed
/// once, directly after a visible character outside ASCII (`❤` + U+FE0F
/// is how keyboards type ❤️), refused anywhere else.
pub const PRESENTATION_SELECTORS: [(u32, u32); 1] = [(0xFE0E, 0xFE0F)];

/// The blocks of combining diacritical marks (U+034F, in the first, is
/// refused outright). A few stacked on one letter are ordinary text (ệ,
/// Vietnamese); more are "Zalgo" text that spills over neighbouring lines.
pub const COMBINING_MARKS: [(u32, u32); 6] =
    [(0x0300, 0x034E), (0x0350, 0x036F), (0x1AB0, 0x1AFF), (0x1DC0, 0x1DFF), (0x20D0, 0x20FF), (0xFE20, 0xFE2F)];

/// The most [`COMBINING_MARKS`] a name or a description may hold in a row.
pub const MAX_COMBINING_MARKS: usize = 4;

/// A display name: 1 to 255 characters after trimming, no control
/// characters, and (from clients) no invisible ones: see
/// [`FORMAT_CHARACTERS`], [`INVISIBLE_CHARACTERS`],
/// [`PRESENTATION_SELECTORS`] and [`MAX_COMBINING_MARKS`].
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

/// A workspace's prefix for its new API keys (docs/API.md, Workspaces):
/// `^[a-z][a-z0-9]{1,15}_(live|test)$`, e.g. `acme_live`. Its keys are
/// `acme_live_` followed by the 43 characters every keysd key ends with, a
/// shape distinct enough for a secret scanner to register. The `_live` /
/// `_test` tail is required so that a leaked key says which it was.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ApiKeyPrefix(String);

impl ApiKeyPrefix {
    /// The longest prefix: 16 + `_live`.
    pub const MAX_LEN: usize = 21;

    pub fn parse(text: &str) -> Result<Self, CoreError> {
        if Self::is_valid(text) {
            Ok(Self(text.to_owned()))
        } else {
            Err(CoreError::InvalidApiKeyPrefix)
        }
    }

    /// Whether `text` has the shape of a prefix (also what verification asks
    /// of the part of a presented key before its last 44 characters).
    pub fn is_valid(text: &str) -> bool {
        let Some(head) = text.strip_suffix("_live").or_else(|| text.strip_suffix("_test")) else {
            return false;
        };
        let bytes = head.as_bytes();
        (2..=16).contains(&bytes.len())
            && bytes[0].is_ascii_lowercase()
            && bytes.iter().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ApiKeyPrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a workspace does when one of its API keys is reported leaked
/// (docs/API.md, Leaked keys): disable it at once (the default), or only
/// report it (audit and webhooks), for operators who rotate by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum OnLeak {
    #[default]
    Disable,
    Notify,
}

impl OnLeak {
    pub fn parse(text: &str) -> Result<Self, CoreError> {
        match text {
            "disable" => Ok(Self::Disable),
            "notify" => Ok(Self::Notify),
            _ => Err(CoreError::InvalidOnLeak),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Notify => "notify",
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

/// RFC 3339 in UTC with exactly six fractional digits, as every `*_at`
/// field of the API shows a time: `2026-04-21T12:35:24.117631Z`.
pub fn format_timestamp(at: OffsetDateTime) -> String {
    let utc = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        utc.year(),
        u8::from(utc.month()),
        utc.day(),
        utc.hour(),
        utc.minute(),
        utc.second(),
        utc.microsecond()
    )
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

#[cfg(test)]
mod tests {
    //! The rules against invisible text: a table of spoofs and of ordinary
    //! text, and a property over text drawn around the edges of the rules.

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn names_and_descriptions_refuse_blank_lookalikes_separators_and_stacked_marks() {
        let invisible = [
            "\u{3164}",                 // HANGUL FILLER alone: a name that looks empty
            "admin\u{3164}",            // and one that looks like "admin"
            "\u{115F}ops",              // HANGUL CHOSEONG FILLER
            "ops\u{1160}",              // HANGUL JUNGSEONG FILLER
            "a\u{FFA0}b",               // HALFWIDTH HANGUL FILLER
            "line\u{2028}break",        // LINE SEPARATOR (Zl)
            "para\u{2029}graph",        // PARAGRAPH SEPARATOR (Zp)
            "gra\u{034F}pheme",         // COMBINING GRAPHEME JOINER
            "mongol\u{180B}",           // MONGOLIAN FREE VARIATION SELECTOR ONE
            "vs\u{FE00}",               // VARIATION SELECTOR-1
            "ideograph\u{E0100}",       // VARIATION SELECTOR-17
            "tag\u{E0000}",             // an unassigned tag-block code point
            "\u{2800}",                 // BRAILLE PATTERN BLANK
            "key1\u{FE0F}",             // an emoji selector after ASCII: looks like "key1"
            "\u{FE0F}start",            // a selector with nothing before it
            "\u{2764}\u{FE0F}\u{FE0F}", // two selectors in a row
            "\u{3000}\u{FE0F}x",        // a selector after whitespace
        ];
        for spoof in invisible {
            assert_eq!(Name::parse(spoof), Err(CoreError::FormatCharacters { field: "name" }), "{spoof:?}");
            assert_eq!(
                Description::parse(Some(spoof)),
                Err(CoreError::FormatCharacters { field: "description" }),
                "{spoof:?}"
            );
        }
        let zalgo = format!("z{}", "\u{0301}".repeat(250));
        for stacked in
            [zalgo.as_str(), "a\u{0300}\u{0301}\u{0302}\u{0303}\u{0304}", "\u{20D0}\u{1DC0}\u{1AB0}\u{FE20}\u{0300}x"]
        {
            assert_eq!(Name::parse(stacked), Err(CoreError::CombiningMarks { field: "name", max: 4 }), "{stacked:?}");
            assert_eq!(
                Description::parse(Some(stacked)),
                Err(CoreError::CombiningMarks { field: "description", max: 4 }),
                "{stacked:?}"
            );
        }
        // Ordinary text with marks, emoji typed with their presentation selector
        // and a keycap stay valid; four marks in a row is the bound, inclusive.
        for fine in [
            "Tie\u{0302}\u{0323}ng Vie\u{0323}\u{0302}t",
            "\u{2764}\u{FE0F} billing",
            "\u{2601}\u{FE0E} cloud",
            "a\u{0300}\u{0301}\u{0302}\u{0303} b\u{0300}\u{0301}\u{0302}\u{0303}",
            "\u{2764}\u{FE0F}\u{20E3}",
            "\u{0301}",
        ] {
            assert!(Name::parse(fine).is_ok(), "{fine:?}");
            assert!(Description::parse(Some(fine)).is_ok(), "{fine:?}");
        }
        // What storage holds was accepted under the rules of its day and stays
        // readable.
        assert!(Name::restore("admin\u{3164}").is_ok());
        assert!(Description::restore(Some(&zalgo)).is_ok());
    }

    /// Text drawn mostly from the characters the rules are about, so that
    /// runs of marks and selectors after every kind of character occur.
    fn text() -> impl Strategy<Value = String> {
        let interesting = prop_oneof![
            Just('a'),
            Just(' '),
            Just('\u{2764}'),
            Just('\u{6771}'),
            Just('\u{0301}'),
            Just('\u{20E3}'),
            Just('\u{FE0F}'),
            Just('\u{3164}'),
            Just('\u{2028}'),
            Just('\u{200B}'),
            any::<char>(),
        ];
        proptest::collection::vec(interesting, 0..24).prop_map(|characters| characters.into_iter().collect())
    }

    proptest! {
        /// A name that parses holds no refused character, never more than
        /// four marks in a row, and a selector only right after a visible
        /// non-ASCII character; and putting a refused character anywhere in
        /// it makes it fail.
        #[test]
        fn an_accepted_name_is_visible_text(text in text(), at in any::<prop::sample::Index>(), which in 0..4usize) {
            let Ok(name) = Name::parse(&text) else { return Ok(()) };
            let characters: Vec<char> = text.chars().collect();
            let mut run = 0;
            for (index, &character) in characters.iter().enumerate() {
                prop_assert!(!in_ranges(&FORMAT_CHARACTERS, character) && !in_ranges(&INVISIBLE_CHARACTERS, character));
                run = if in_ranges(&COMBINING_MARKS, character) { run + 1 } else { 0 };
                prop_assert!(run <= MAX_COMBINING_MARKS);
                if in_ranges(&PRESENTATION_SELECTORS, character) {
                    let before = index.checked_sub(1).map(|index| characters[index]);
                    prop_assert!(before.is_some_and(|before| !before.is_ascii() && !before.is_whitespace()));
                }
            }
            let refused = ['\u{3164}', '\u{2028}', '\u{E0001}', '\u{034F}'][which];
            let mut spoof: Vec<char> = name.as_str().chars().collect();
            spoof.insert(at.index(spoof.len() + 1), refused);
            prop_assert!(Name::parse(&spoof.into_iter().collect::<String>()).is_err());
        }
    }
}
