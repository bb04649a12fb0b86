//! The router: a match on path segments, then on the method.
//!
//! Every route is a [`RouteKind`] with its OpenAPI path template (also the
//! `route` label of metrics) and its methods; path parameters are handed to
//! the handler as strings, parsed there. Resource paths of dialect 1 end in
//! `/` as in the seeds, and the same path without it is accepted too; `.json`
//! documents are served only without a final `/`.

use http::Method;

/// Every route of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteKind {
    Health,
    Ready,
    Metrics,
    OpenApi,
    Workspaces,
    WorkspaceJwks,
    ApiKeys,
    ApiKey,
    PublicKeys,
    PublicKey,
    PublicKeyRotate,
    SigningKeys,
    SigningKey,
    SigningKeyRoll,
    VerifyApiKey,
    VerifyPublicKey,
    VerifyJwt,
    ForwardAuth,
    OrganisationKeys,
    OrganisationKey,
    OrganisationJwks,
    PublicOrganisationKey,
}

impl RouteKind {
    /// Every route, for the OpenAPI completeness test and documentation.
    pub const ALL: [RouteKind; 22] = [
        Self::Health,
        Self::Ready,
        Self::Metrics,
        Self::OpenApi,
        Self::Workspaces,
        Self::WorkspaceJwks,
        Self::ApiKeys,
        Self::ApiKey,
        Self::PublicKeys,
        Self::PublicKey,
        Self::PublicKeyRotate,
        Self::SigningKeys,
        Self::SigningKey,
        Self::SigningKeyRoll,
        Self::VerifyApiKey,
        Self::VerifyPublicKey,
        Self::VerifyJwt,
        Self::ForwardAuth,
        Self::OrganisationKeys,
        Self::OrganisationKey,
        Self::OrganisationJwks,
        Self::PublicOrganisationKey,
    ];

    /// The OpenAPI path template of the route.
    pub fn pattern(self) -> &'static str {
        match self {
            Self::Health => "/health",
            Self::Ready => "/ready",
            Self::Metrics => "/metrics",
            Self::OpenApi => "/openapi.json",
            Self::Workspaces => "/v1/workspace/",
            Self::WorkspaceJwks => "/v1/workspace/{workspace_uid}/jwks.json",
            Self::ApiKeys => "/v1/{workspace}/ws_api_key/",
            Self::ApiKey => "/v1/{workspace}/ws_api_key/{api_key_id}/",
            Self::PublicKeys => "/v1/{workspace}/ws_public_key/",
            Self::PublicKey => "/v1/{workspace}/ws_public_key/{public_key_id}/",
            Self::PublicKeyRotate => "/v1/{workspace}/ws_public_key/{public_key_id}/rotate/",
            Self::SigningKeys => "/v1/{workspace}/ws_signing_key/",
            Self::SigningKey => "/v1/{workspace}/ws_signing_key/{signing_key_uid}/",
            Self::SigningKeyRoll => "/v1/{workspace}/ws_signing_key/{signing_key_uid}/roll/",
            Self::VerifyApiKey => "/v1/verify/api_key/",
            Self::VerifyPublicKey => "/v1/verify/public_key/",
            Self::VerifyJwt => "/v1/verify/jwt/",
            Self::ForwardAuth => "/v1/auth/forward",
            Self::OrganisationKeys => "/api/organisations/v1/organisations/{organisation_id}/keys",
            Self::OrganisationKey => "/api/organisations/v1/organisations/{organisation_id}/keys/{key_id}",
            Self::OrganisationJwks => "/api/organisations/v1/organisations/{organisation_id}/jwks.json",
            Self::PublicOrganisationKey => "/api/organisations/v1/keys/{key_id}",
        }
    }

    /// The methods the route answers.
    pub fn methods(self) -> &'static [Method] {
        const GET: &[Method] = &[Method::GET];
        const POST: &[Method] = &[Method::POST];
        const DELETE: &[Method] = &[Method::DELETE];
        const GET_POST: &[Method] = &[Method::GET, Method::POST];
        const PATCH: &[Method] = &[Method::PATCH];
        const PATCH_DELETE: &[Method] = &[Method::PATCH, Method::DELETE];
        const ANY: &[Method] =
            &[Method::GET, Method::HEAD, Method::POST, Method::PUT, Method::PATCH, Method::DELETE, Method::OPTIONS];
        match self {
            Self::ForwardAuth => ANY,
            Self::Health | Self::Ready | Self::Metrics | Self::OpenApi => GET,
            Self::WorkspaceJwks | Self::OrganisationJwks | Self::PublicOrganisationKey => GET,
            Self::Workspaces | Self::ApiKeys | Self::PublicKeys | Self::SigningKeys | Self::OrganisationKeys => {
                GET_POST
            }
            Self::ApiKey | Self::SigningKey | Self::OrganisationKey => DELETE,
            Self::PublicKey => PATCH_DELETE,
            Self::PublicKeyRotate => PATCH,
            Self::SigningKeyRoll | Self::VerifyApiKey | Self::VerifyPublicKey | Self::VerifyJwt => POST,
        }
    }

    /// Whether the route needs a service token.
    pub fn needs_service_token(self) -> bool {
        !matches!(
            self,
            Self::Health
                | Self::Ready
                | Self::Metrics
                | Self::OpenApi
                | Self::ForwardAuth
                | Self::WorkspaceJwks
                | Self::OrganisationJwks
                | Self::PublicOrganisationKey
        )
    }

    /// Whether the route is one of the verification endpoints.
    pub fn is_verification(self) -> bool {
        matches!(self, Self::VerifyApiKey | Self::VerifyPublicKey | Self::VerifyJwt)
    }

    /// Whether `Authorization: Bearer <token>` is accepted besides
    /// `ServiceToken <token>` (dialect 2 only).
    pub fn accepts_bearer(self) -> bool {
        matches!(self, Self::OrganisationKeys | Self::OrganisationKey)
    }
}

/// A resolved path: the route and its parameters in path order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    pub kind: RouteKind,
    pub params: Vec<String>,
}

impl Matched {
    /// The `index`-th path parameter (the router guarantees the count).
    pub fn param(&self, index: usize) -> &str {
        self.params.get(index).map(String::as_str).unwrap_or_default()
    }
}

/// Resolves a path (without query) to a route, regardless of method.
pub fn resolve(path: &str) -> Option<Matched> {
    let rest = path.strip_prefix('/')?;
    let (rest, trailing_slash) = match rest.strip_suffix('/') {
        Some(stripped) => (stripped, true),
        None => (rest, false),
    };
    if rest.is_empty() {
        return None;
    }
    // Routes have at most seven segments, and a path with more matches
    // none: the segments fit on the stack (this runs for every request).
    let mut buffer = [""; 8];
    let mut count = 0;
    for segment in rest.split('/') {
        if segment.is_empty() {
            return None;
        }
        match buffer.get_mut(count) {
            Some(slot) => *slot = segment,
            None => return None,
        }
        count += 1;
    }
    let segments = &buffer[..count];
    if trailing_slash && segments.last().is_some_and(|last| last.ends_with(".json")) {
        return None;
    }
    let matched = |kind: RouteKind, params: &[&str]| {
        Some(Matched { kind, params: params.iter().map(|param| (*param).to_owned()).collect() })
    };
    use RouteKind as R;
    match segments {
        ["health"] => matched(R::Health, &[]),
        ["ready"] => matched(R::Ready, &[]),
        ["metrics"] => matched(R::Metrics, &[]),
        ["openapi.json"] => matched(R::OpenApi, &[]),
        ["v1", "workspace"] => matched(R::Workspaces, &[]),
        ["v1", "workspace", uid, "jwks.json"] => matched(R::WorkspaceJwks, &[uid]),
        ["v1", "verify", "api_key"] => matched(R::VerifyApiKey, &[]),
        ["v1", "verify", "public_key"] => matched(R::VerifyPublicKey, &[]),
        ["v1", "verify", "jwt"] => matched(R::VerifyJwt, &[]),
        ["v1", "auth", "forward"] => matched(R::ForwardAuth, &[]),
        ["v1", workspace, "ws_api_key"] => matched(R::ApiKeys, &[workspace]),
        ["v1", workspace, "ws_api_key", id] => matched(R::ApiKey, &[workspace, id]),
        ["v1", workspace, "ws_public_key"] => matched(R::PublicKeys, &[workspace]),
        ["v1", workspace, "ws_public_key", id] => matched(R::PublicKey, &[workspace, id]),
        ["v1", workspace, "ws_public_key", id, "rotate"] => matched(R::PublicKeyRotate, &[workspace, id]),
        ["v1", workspace, "ws_signing_key"] => matched(R::SigningKeys, &[workspace]),
        ["v1", workspace, "ws_signing_key", uid] => matched(R::SigningKey, &[workspace, uid]),
        ["v1", workspace, "ws_signing_key", uid, "roll"] => matched(R::SigningKeyRoll, &[workspace, uid]),
        ["api", "organisations", "v1", "organisations", organisation, "keys"] => {
            matched(R::OrganisationKeys, &[organisation])
        }
        ["api", "organisations", "v1", "organisations", organisation, "keys", key] => {
            matched(R::OrganisationKey, &[organisation, key])
        }
        ["api", "organisations", "v1", "organisations", organisation, "jwks.json"] => {
            matched(R::OrganisationJwks, &[organisation])
        }
        ["api", "organisations", "v1", "keys", key] => matched(R::PublicOrganisationKey, &[key]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_with_and_without_trailing_slash() {
        for path in ["/v1/staging/ws_api_key/", "/v1/staging/ws_api_key"] {
            let matched = resolve(path).expect("routed");
            assert_eq!(matched.kind, RouteKind::ApiKeys);
            assert_eq!(matched.param(0), "staging");
        }
        let roll = resolve("/v1/prod/ws_signing_key/signing_key_X/roll/").expect("routed");
        assert_eq!(roll.kind, RouteKind::SigningKeyRoll);
        assert_eq!(roll.params, vec!["prod".to_owned(), "signing_key_X".to_owned()]);
    }

    #[test]
    fn json_documents_have_no_trailing_slash() {
        assert_eq!(resolve("/openapi.json").map(|m| m.kind), Some(RouteKind::OpenApi));
        assert_eq!(resolve("/openapi.json/"), None);
        assert_eq!(resolve("/v1/workspace/wksp_X/jwks.json/"), None);
    }

    #[test]
    fn rejects_empty_segments_and_unknown_paths() {
        for path in ["", "/", "//v1/workspace/", "/v1//ws_api_key/", "/v2/workspace/", "/v1/a/b/c/d/e/f"] {
            assert_eq!(resolve(path), None, "{path}");
        }
    }

    #[test]
    fn every_pattern_resolves_to_its_route() {
        for kind in RouteKind::ALL {
            let concrete = kind
                .pattern()
                .split('/')
                .map(|segment| if segment.starts_with('{') { "x" } else { segment })
                .collect::<Vec<_>>()
                .join("/");
            assert_eq!(resolve(&concrete).map(|m| m.kind), Some(kind), "{concrete}");
        }
    }
}
