//! The `cursor` of the organisation-key list: a position in the list
//! written as `<created_at in unix microseconds>-<key id>`, what
//! [`encode_cursor`] writes and [`decode_cursor`] reads back, and its
//! pattern for `/openapi.json` ([`CURSOR_PATTERN`]).

use keys_core::{KeyPosition, OrganisationKeyId};
use time::OffsetDateTime;

/// The pattern of a `cursor`: what [`encode_cursor`] writes, and every
/// text of that form names a position, so the document and the parser agree.
pub const CURSOR_PATTERN: &str = "^[0-9]{1,17}-[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$";

/// The `cursor` of a position: `<created_at in unix microseconds>-<key
/// id>`. Documented as opaque: clients pass it back as they got it.
pub fn encode_cursor(position: &KeyPosition) -> String {
    let micros = position.created_at.unix_timestamp_nanos() / 1_000;
    format!("{micros}-{}", position.id)
}

/// The position a cursor names, if it is of [`CURSOR_PATTERN`]'s form.
pub(crate) fn decode_cursor(cursor: &str) -> Option<KeyPosition> {
    let (micros, id) = cursor.split_once('-')?;
    if micros.is_empty() || micros.len() > 17 || !micros.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let micros: i128 = micros.parse().ok()?;
    let created_at = OffsetDateTime::from_unix_timestamp_nanos(micros.checked_mul(1_000)?).ok()?;
    Some(KeyPosition { created_at, id: OrganisationKeyId::parse(id).ok()? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_and_only_its_pattern_decodes() {
        let position = KeyPosition {
            created_at: time::macros::datetime!(2026-04-21 12:35:24.117631 UTC),
            id: OrganisationKeyId::parse("01ARZ3NDEKTSV4RRFFQ69G5FAV").expect("id"),
        };
        let cursor = encode_cursor(&position);
        assert_eq!(cursor, "1776774924117631-01ARZ3NDEKTSV4RRFFQ69G5FAV");
        assert_eq!(decode_cursor(&cursor), Some(position));
        for bad in
            ["", "abc", "12-nope", "-01ARZ3NDEKTSV4RRFFQ69G5FAV", "123456789012345678-01ARZ3NDEKTSV4RRFFQ69G5FAV"]
        {
            assert_eq!(decode_cursor(bad), None, "{bad}");
        }
    }
}
