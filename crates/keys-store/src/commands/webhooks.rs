//! Webhook endpoints: [`CreateWebhookEndpoint`], [`ChangeWebhookEndpoint`]
//! (a patch, a secret rotation), [`DeleteWebhookEndpoint`] and
//! [`DisableFailingWebhookEndpoint`], each audited under the
//! organisation's lock. Nothing cached depends on endpoints: no change
//! is announced.

use keys_core::webhook::{
    failed_too_long, EndpointSecret, EndpointStatus, EventFilter, WebhookEndpoint, WebhookEndpointId, WebhookUrl,
};
use keys_core::{Actor, CoreError, Description, EntityKind, Mutation, OrganisationId, WorkspaceUid};

use super::{Acting, Applied, AuditAction, Command, Lock, Locked, Scope};
use crate::error::{StoreError, StoreResult};
use crate::repo::{self, Sql};
use crate::webhooks::StoredEndpoint;

/// What a change of an endpoint sets: each `Some` replaces a field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointPatch {
    pub url: Option<WebhookUrl>,
    pub events: Option<EventFilter>,
    pub workspaces: Option<Option<Vec<WorkspaceUid>>>,
    pub description: Option<Option<Description>>,
    pub status: Option<EndpointStatus>,
    /// A new signing secret: the current one keeps signing for a day.
    pub secret: Option<EndpointSecret>,
}

impl EndpointPatch {
    fn apply(self, stored: &mut StoredEndpoint, now: time::OffsetDateTime) {
        let endpoint = &mut stored.endpoint;
        if let Some(url) = self.url {
            endpoint.url = url;
        }
        if let Some(events) = self.events {
            endpoint.events = events;
        }
        if let Some(workspaces) = self.workspaces {
            endpoint.workspaces = workspaces;
        }
        if let Some(description) = self.description {
            endpoint.description = description;
        }
        if let Some(status) = self.status {
            // Enabled again: its run of failures starts over.
            if status == EndpointStatus::Enabled && endpoint.status == EndpointStatus::Disabled {
                endpoint.failing_since = None;
            }
            endpoint.status = status;
        }
        if let Some(fresh) = self.secret {
            stored.secrets = stored.secrets.clone().rotated(fresh, now);
        }
        stored.endpoint.updated_at = now;
    }
}

command! {
    /// A new endpoint, at most `WebhookEndpoint::MAX_PER_ORGANISATION` in
    /// an organisation.
    CreateWebhookEndpoint { stored: StoredEndpoint } -> (),
        lock |command| Lock::Organisation(&command.stored.endpoint.organisation_id),
        mutation |_command| Mutation::Create(EntityKind::WebhookEndpoint);
    apply |Self { stored }, sql, locked| {
        let organisation = locked.organisation()?;
        let count = repo::count_webhook_endpoints(sql, &organisation.id).await?.unwrap_or(0);
        let max = WebhookEndpoint::MAX_PER_ORGANISATION;
        if count >= max as u64 {
            return Err(StoreError::Refused(CoreError::TooMany { field: "webhook endpoints in an organisation", max }));
        }
        repo::insert_webhook_endpoint(sql, &stored).await?;
        let endpoint = &stored.endpoint;
        let scope = Scope::of_organisation(&organisation.id);
        let event = scope.event(
            AuditAction::WebhookEndpointCreated,
            endpoint.created_by.as_ref(),
            endpoint.id.as_str(),
            endpoint.created_at,
        );
        Ok(Applied { output: (), events: vec![event], change: None })
    }
}

command! {
    /// Patches an endpoint of the organisation, or rotates its secret
    /// (`patch.secret`); returns it as it now is.
    ChangeWebhookEndpoint { id: WebhookEndpointId, patch: EndpointPatch }
        in Organisation(OrganisationId) -> StoredEndpoint, Mutation::Update(EntityKind::WebhookEndpoint);
    apply |Self { acting: Acting { actor, now, .. }, id, patch }, sql, locked| {
        let organisation = locked.organisation()?;
        let mut stored = repo::webhook_endpoint(sql, &organisation.id, &id)
            .await?
            .ok_or(StoreError::NotFound { kind: "webhook endpoint" })?;
        let action = if patch.secret.is_some() {
            AuditAction::WebhookEndpointSecretRotated
        } else {
            AuditAction::WebhookEndpointUpdated
        };
        patch.apply(&mut stored, now);
        repo::save_webhook_endpoint(sql, &stored).await?;
        let event = Scope::of_organisation(&organisation.id).event(action, Some(&actor), id.as_str(), now);
        Ok(Applied { output: stored, events: vec![event], change: None })
    }
}

command! {
    /// Deletes an endpoint of the organisation, its deliveries and their
    /// attempts.
    DeleteWebhookEndpoint { id: WebhookEndpointId } in Organisation(OrganisationId) -> (),
        Mutation::Delete(EntityKind::WebhookEndpoint);
    apply |Self { acting: Acting { actor, now, .. }, id }, sql, locked| {
        let organisation = locked.organisation()?;
        if repo::webhook_endpoint(sql, &organisation.id, &id).await?.is_none() {
            return Err(StoreError::NotFound { kind: "webhook endpoint" });
        }
        repo::delete_webhook_endpoint(sql, &id).await?;
        let scope = Scope::of_organisation(&organisation.id);
        let event = scope.event(AuditAction::WebhookEndpointDeleted, Some(&actor), id.as_str(), now);
        Ok(Applied { output: (), events: vec![event], change: None })
    }
}

command! {
    /// Disables an endpoint that has failed every attempt for
    /// `keys_core::webhook::DISABLE_AFTER`, decided again under the lock
    /// (a success meanwhile, or another replica first, leaves it be).
    /// Returns whether this command disabled it.
    DisableFailingWebhookEndpoint { id: WebhookEndpointId }
        in Organisation(OrganisationId, Option<Actor>) -> bool, Mutation::Update(EntityKind::WebhookEndpoint);
    apply |Self { acting: Acting { now, .. }, id }, sql, locked| {
        let organisation = locked.organisation()?;
        let Some(mut stored) = repo::webhook_endpoint(sql, &organisation.id, &id).await? else {
            return Ok(Applied { output: false, events: Vec::new(), change: None });
        };
        let endpoint = &stored.endpoint;
        if endpoint.status != EndpointStatus::Enabled || !failed_too_long(endpoint.failing_since, now) {
            return Ok(Applied { output: false, events: Vec::new(), change: None });
        }
        stored.endpoint.status = EndpointStatus::Disabled;
        stored.endpoint.updated_at = now;
        repo::save_webhook_endpoint(sql, &stored).await?;
        let scope = Scope::of_organisation(&organisation.id);
        let event = scope.event(AuditAction::WebhookEndpointDisabled, None, id.as_str(), now);
        Ok(Applied { output: true, events: vec![event], change: None })
    }
}
