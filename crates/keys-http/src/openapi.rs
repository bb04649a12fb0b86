//! The OpenAPI 3.1 document served at `/openapi.json`, written by hand and
//! checked by a test against the router: every routed path and method is
//! described.

/// The document, as served.
pub const DOCUMENT: &str = include_str!("openapi.json");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::RouteKind;

    #[test]
    fn document_is_openapi_3_1_json() {
        let document: serde_json::Value = serde_json::from_str(DOCUMENT).expect("valid JSON");
        assert_eq!(document["openapi"], "3.1.0");
        assert!(document["components"]["schemas"].is_object());
    }

    #[test]
    fn every_route_and_method_is_documented() {
        let document: serde_json::Value = serde_json::from_str(DOCUMENT).expect("valid JSON");
        for kind in RouteKind::ALL {
            let path = &document["paths"][kind.pattern()];
            assert!(path.is_object(), "{} is not documented", kind.pattern());
            for method in kind.methods() {
                let operation = &path[method.as_str().to_ascii_lowercase()];
                assert!(operation.is_object(), "{} {} is not documented", method, kind.pattern());
                assert!(operation["responses"].is_object(), "{} {} has no responses", method, kind.pattern());
            }
        }
    }

    #[test]
    fn every_reference_resolves() {
        let document: serde_json::Value = serde_json::from_str(DOCUMENT).expect("valid JSON");
        let mut references = Vec::new();
        collect_references(&document, &mut references);
        assert!(!references.is_empty());
        for reference in references {
            let pointer = reference.strip_prefix('#').expect("local reference");
            assert!(document.pointer(pointer).is_some(), "{reference} does not resolve");
        }
    }

    fn collect_references(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("$ref", serde_json::Value::String(reference)) => out.push(reference.clone()),
                        _ => collect_references(value, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|item| collect_references(item, out)),
            _ => {}
        }
    }
}
