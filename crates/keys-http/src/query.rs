//! Query strings: their `name=value` pairs, decoded by the `url` crate's
//! `form_urlencoded` (`application/x-www-form-urlencoded`, as browsers and
//! HTTP clients write them), with a name given twice refused; and the list
//! query of dialect 1 (`limit`, `offset`, `include_deleted`).

use keys_core::{CoreError, Pagination};

use crate::error::ApiError;

/// The list query: `limit`, `offset`, `include_deleted`. Out-of-range or
/// non-numeric values are refused, never clamped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListQuery {
    pub pagination: Pagination,
    pub include_deleted: bool,
}

impl ListQuery {
    pub fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let mut limit = None;
        let mut offset = None;
        let mut include_deleted = false;
        let mut problems = Vec::new();
        for (key, value) in pairs(query)? {
            match key.as_str() {
                "limit" => match value.parse::<u32>() {
                    Ok(parsed) => limit = Some(parsed),
                    Err(_) => problems.push(CoreError::InvalidLimit.to_string()),
                },
                "offset" => match value.parse::<u64>() {
                    Ok(parsed) => offset = Some(parsed),
                    Err(_) => problems.push(CoreError::InvalidOffset.to_string()),
                },
                "include_deleted" => match value.as_str() {
                    "true" => include_deleted = true,
                    "false" => include_deleted = false,
                    _ => problems.push("include_deleted must be true or false".to_owned()),
                },
                // Other parameters (cache busters, tracing) are ignored.
                _ => {}
            }
        }
        if !problems.is_empty() {
            return Err(ApiError::Validation(problems));
        }
        let pagination = Pagination::new(limit.unwrap_or(Pagination::DEFAULT_LIMIT), offset.unwrap_or(0))?;
        Ok(Self { pagination, include_deleted })
    }
}

/// The `name=value` pairs of a query, names and values percent-decoded
/// (`+` is a space; an invalid escape is kept as it is). A name given twice
/// (`?limit=1&limit=100`, or `?limit=1&l%69mit=100`) is a 400: which one
/// counts would be a guess, and a proxy or a log may have read the other.
pub(crate) fn pairs(query: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut names = std::collections::HashSet::new();
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if !names.insert(name.clone()) {
            let shown: String = name.chars().take(64).collect();
            return Err(ApiError::validation(format!("query parameter {shown:?} is given more than once")));
        }
        pairs.push((name.into_owned(), value.into_owned()));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_query_validates_without_clamping() {
        let default = ListQuery::parse(None).expect("default");
        assert_eq!(default.pagination, Pagination::default());
        assert!(!default.include_deleted);
        let explicit = ListQuery::parse(Some("limit=100&offset=5&include_deleted=true")).expect("valid");
        assert_eq!((explicit.pagination.limit(), explicit.pagination.offset()), (100, 5));
        assert!(explicit.include_deleted);
        for bad in ["limit=0", "limit=101", "limit=abc", "offset=-1", "offset=x", "include_deleted=yes", "limit="] {
            assert!(ListQuery::parse(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn pairs_are_percent_decoded_and_a_name_given_twice_is_refused() {
        let decoded = pairs(Some("a=a%20b+c&b=100%&c=%zz&&d")).expect("pairs");
        let expected = [("a", "a b c"), ("b", "100%"), ("c", "%zz"), ("d", "")];
        assert_eq!(decoded, expected.map(|(name, value)| (name.to_owned(), value.to_owned())));
        assert!(pairs(Some("limit=1&limit=100")).is_err());
        assert!(pairs(Some("limit=1&l%69mit=100")).is_err());
        assert_eq!(pairs(None).expect("none"), Vec::new());
    }
}
