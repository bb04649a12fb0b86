//! The origin matcher on arbitrary patterns and origins (the input is
//! `pattern` NEWLINE `origin`). Never a panic; a pattern's canonical text
//! parses back to the same pattern; an origin that a pattern allows has
//! that pattern's host, or is a subdomain of its wildcard's apex, and was
//! sent without userinfo, path, query or fragment.
#![no_main]

use keys_core::{DomainPattern, Origin};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (pattern_text, origin_text) = text.split_once('\n').unwrap_or((text, text));
    let pattern = DomainPattern::parse(pattern_text);
    if let Ok(pattern) = &pattern {
        assert_eq!(DomainPattern::parse(pattern.as_str()).as_ref(), Ok(pattern), "canonical text reparses");
        assert_eq!(DomainPattern::restore(pattern.as_str()).as_ref(), Ok(pattern));
    }
    let Some(origin) = Origin::parse(origin_text) else { return };
    let authority = origin_text.trim().split_once("://").map_or(origin_text.trim(), |(_, authority)| authority);
    assert!(!authority.contains(['@', '/', '\\', '?', '#']), "{origin_text:?} parsed as an origin");
    let Ok(pattern) = pattern else { return };
    if pattern.allows(&origin) {
        let host_part = pattern.as_str().split_once("://").map_or(pattern.as_str(), |(_, rest)| rest);
        let host_part = host_part.rsplit_once(':').map_or(host_part, |(host, _port)| host);
        match host_part.strip_prefix("*.") {
            Some(apex) => assert!(origin.host().ends_with(&format!(".{apex}")), "{origin:?} under {pattern:?}"),
            None => assert_eq!(origin.host(), host_part),
        }
    }
});
