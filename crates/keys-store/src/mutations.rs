//! [`Mutations`], the store's writes: one object-safe entry point,
//! [`Mutations::execute`], which runs a [`Queued`] command; [`Run::run`],
//! the typed entry point over any store (`dyn Store` included), which
//! returns the command's own output; and a typed method per command for
//! callers. [`Attributed`] stamps who caused each change.

use std::future::Future;

use async_trait::async_trait;
use keys_core::{
    Actor, ApiKey, ApiKeyId, ApiKeyMaterial, GracePeriod, NewPublicKey, NewSigningKey, Organisation, OrganisationId,
    OrganisationKeyId, OrganisationSigningKey, PublicKey, PublicKeyId, RequestId, ServiceTokenId, ServiceTokenRecord,
    SigningKeyUid, Workspace, WorkspaceSigningKey, WorkspaceUid,
};
use time::OffsetDateTime;

use crate::change::Change;
use crate::commands::{
    Acting, ApiKeyChange, Bootstrap, ChangeApiKey, ChangePublicKey, Command, CreateApiKey, CreateOrganisation,
    CreateOrganisationKey, CreatePublicKey, CreateServiceToken, CreateSigningKey, CreateWorkspace,
    DeleteOrganisationKey, DeletePublicKey, DeleteSigningKey, Executed, PruneAuditEvents, PublicKeyChange, Queued,
    RevokeServiceToken, RollApiKey, RollSigningKey,
};
use crate::error::StoreResult;
use crate::meters::{MeterOf, TokensTaken};
use crate::usage::{UsageBatch, UsagePruned};
use keys_core::meter::{CreditPool, RateLimit, Reserved};
use keys_core::usage::Granularity;

/// Who caused a change, beyond its actor: the service token that acted and
/// the request it came in. The pipeline writes both into every audit event
/// of the command; the CLI's changes have neither.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attribution {
    pub token_id: Option<ServiceTokenId>,
    pub request_id: Option<RequestId>,
}

/// A store whose commands are attributed: [`Mutations::execute`] (and so
/// every typed method) runs each command with this attribution. What
/// keys-service hands its use cases, so none of their signatures names it.
pub struct Attributed<'a, S: ?Sized> {
    store: &'a S,
    attribution: Attribution,
}

impl<S: ?Sized> std::fmt::Debug for Attributed<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attributed").field("attribution", &self.attribution).finish_non_exhaustive()
    }
}

impl<'a, S: Mutations + ?Sized> Attributed<'a, S> {
    pub fn new(store: &'a S, attribution: Attribution) -> Self {
        Self { store, attribution }
    }
}

#[async_trait]
impl<S: Mutations + ?Sized> Mutations for Attributed<'_, S> {
    async fn execute(&self, command: Queued) -> StoreResult<Option<Change>> {
        self.store.execute_attributed(command, &self.attribution).await
    }

    async fn execute_attributed(&self, command: Queued, attribution: &Attribution) -> StoreResult<Option<Change>> {
        self.store.execute_attributed(command, attribution).await
    }

    async fn record_api_key_uses(&self, uses: &[(ApiKeyId, OffsetDateTime)]) -> StoreResult<u64> {
        self.store.record_api_key_uses(uses).await
    }

    async fn record_service_token_uses(&self, uses: &[(ServiceTokenId, OffsetDateTime)]) -> StoreResult<u64> {
        self.store.record_service_token_uses(uses).await
    }

    async fn record_usage(&self, batch: &UsageBatch) -> StoreResult<bool> {
        self.store.record_usage(batch).await
    }

    async fn prune_usage(
        &self,
        cutoffs: &[(Granularity, OffsetDateTime)],
        batches_before: OffsetDateTime,
        limit: u32,
    ) -> StoreResult<UsagePruned> {
        self.store.prune_usage(cutoffs, batches_before, limit).await
    }

    async fn reserve_credits(
        &self,
        workspace: &WorkspaceUid,
        of: &MeterOf,
        least: u64,
        want: u64,
        now: OffsetDateTime,
    ) -> StoreResult<Option<(Reserved, CreditPool)>> {
        self.store.reserve_credits(workspace, of, least, want, now).await
    }

    async fn hand_back_credits(
        &self,
        workspace: &WorkspaceUid,
        of: &MeterOf,
        epoch: u64,
        unspent: u64,
    ) -> StoreResult<()> {
        self.store.hand_back_credits(workspace, of, epoch, unspent).await
    }

    async fn take_tokens(
        &self,
        workspace: &WorkspaceUid,
        of: &MeterOf,
        limit: &RateLimit,
        least: u32,
        want: u32,
        now: OffsetDateTime,
    ) -> StoreResult<TokensTaken> {
        self.store.take_tokens(workspace, of, limit, least, want, now).await
    }

    async fn give_back_tokens(
        &self,
        workspace: &WorkspaceUid,
        of: &MeterOf,
        limit: &RateLimit,
        tokens: u32,
        taken_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        self.store.give_back_tokens(workspace, of, limit, tokens, taken_at, now).await
    }

    async fn exchange_tokens(
        &self,
        workspace: &WorkspaceUid,
        of: &MeterOf,
        limit: &RateLimit,
        returned: (u32, OffsetDateTime),
        least: u32,
        want: u32,
        now: OffsetDateTime,
    ) -> StoreResult<TokensTaken> {
        self.store.exchange_tokens(workspace, of, limit, returned, least, want, now).await
    }
}

/// The mutations of the store: one object-safe entry point,
/// [`Mutations::execute`], and a typed method per command for callers.
///
/// Mutations that target something missing (or already deleted) fail with
/// [`crate::StoreError::NotFound`]; taken names with
/// [`crate::StoreError::Conflict`]; domain refusals with
/// [`crate::StoreError::Refused`].
#[async_trait]
pub trait Mutations: Send + Sync {
    /// Runs one command in one transaction (see `crate::commands`), sends
    /// its output to the command's `Reply` and returns the change it
    /// committed; its audit events carry `attribution`.
    async fn execute_attributed(&self, command: Queued, attribution: &Attribution) -> StoreResult<Option<Change>>;

    /// [`Mutations::execute_attributed`] with no attribution (the CLI's
    /// changes), or with the one an [`Attributed`] store holds. Every typed
    /// method below goes through this.
    async fn execute(&self, command: Queued) -> StoreResult<Option<Change>> {
        self.execute_attributed(command, &Attribution::default()).await
    }

    /// Writes the bootstrap state if the database has no organisation yet;
    /// returns whether it did.
    async fn bootstrap_if_empty(&self, bootstrap: &Bootstrap) -> StoreResult<bool> {
        let done = self.run(bootstrap.clone()).await?.output;
        if done {
            tracing::info!(organisation = %bootstrap.organisation.id, "bootstrapped an empty database");
        }
        Ok(done)
    }

    async fn create_organisation(&self, organisation: &Organisation) -> StoreResult<()> {
        self.run(CreateOrganisation(organisation.clone())).await.map(drop)
    }

    async fn create_service_token(&self, token: &ServiceTokenRecord) -> StoreResult<()> {
        self.run(CreateServiceToken(token.clone())).await.map(drop)
    }

    /// Revokes a live token of the organisation; returns it as it now is.
    async fn revoke_service_token(
        &self,
        organisation: &OrganisationId,
        id: &ServiceTokenId,
        actor: Option<&Actor>,
        now: OffsetDateTime,
    ) -> StoreResult<ServiceTokenRecord> {
        let acting = Acting::new(organisation.clone(), actor.cloned(), now);
        Ok(self.run(RevokeServiceToken { acting, id: id.clone() }).await?.output)
    }

    async fn create_workspace(&self, workspace: &Workspace) -> StoreResult<()> {
        self.run(CreateWorkspace(workspace.clone())).await.map(drop)
    }

    async fn create_api_key(&self, key: &ApiKey) -> StoreResult<()> {
        self.run(CreateApiKey(key.clone())).await.map(drop)
    }

    /// Patches, disables, enables or deletes a live API key; returns it as
    /// it now is.
    async fn change_api_key(
        &self,
        workspace: &WorkspaceUid,
        id: &ApiKeyId,
        change: ApiKeyChange,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> StoreResult<ApiKey> {
        let acting = Acting::new(workspace.clone(), actor.clone(), now);
        Ok(self.run(ChangeApiKey { acting, id: id.clone(), change }).await?.output)
    }

    async fn delete_api_key(
        &self,
        workspace: &WorkspaceUid,
        id: &ApiKeyId,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> StoreResult<ApiKey> {
        self.change_api_key(workspace, id, ApiKeyChange::Delete, actor, now).await
    }

    /// Returns (the rolled key, the key that replaces it).
    async fn roll_api_key(
        &self,
        workspace: &WorkspaceUid,
        id: &ApiKeyId,
        grace: Option<GracePeriod>,
        material: ApiKeyMaterial,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> StoreResult<(ApiKey, ApiKey)> {
        let acting = Acting::new(workspace.clone(), actor.clone(), now);
        Ok(self.run(RollApiKey { acting, id: id.clone(), grace, material }).await?.output)
    }

    /// Moves each key's `last_used_at` forwards to the use given, never
    /// backwards, in one transaction; not an audited change, and nothing
    /// cached depends on it. Returns how many rows moved.
    async fn record_api_key_uses(&self, uses: &[(ApiKeyId, OffsetDateTime)]) -> StoreResult<u64>;

    /// As [`Mutations::record_api_key_uses`], for service tokens.
    async fn record_service_token_uses(&self, uses: &[(ServiceTokenId, OffsetDateTime)]) -> StoreResult<u64>;

    /// Adds a batch of usage counts to their minute, hour and day buckets,
    /// in one transaction with the batch's id; not an audited change.
    /// `false`: the batch's id was recorded already, and nothing was added
    /// (a retry of a write whose answer was lost).
    async fn record_usage(&self, batch: &UsageBatch) -> StoreResult<bool>;

    /// Deletes up to `limit` rows of each granularity's counts older than
    /// its cutoff, and of batch ids recorded before `batches_before`, each
    /// delete its own short transaction.
    async fn prune_usage(
        &self,
        cutoffs: &[(Granularity, OffsetDateTime)],
        batches_before: OffsetDateTime,
        limit: u32,
    ) -> StoreResult<UsagePruned>;

    /// Reserves a slice of at most `want` credits (nothing unless `least`
    /// are there) of a metered subject for this replica, in one transaction under the subject's row lock
    /// ([`CreditPool::reserve`], a refill due applied first): the slice and
    /// the pool after it. `None`: the subject spends no credits (or is gone).
    async fn reserve_credits(
        &self,
        workspace: &WorkspaceUid,
        of: &MeterOf,
        least: u64,
        want: u64,
        now: OffsetDateTime,
    ) -> StoreResult<Option<(Reserved, CreditPool)>>;

    /// Hands back the unspent part of a slice ([`CreditPool::hand_back`]).
    async fn hand_back_credits(
        &self,
        workspace: &WorkspaceUid,
        of: &MeterOf,
        epoch: u64,
        unspent: u64,
    ) -> StoreResult<()>;

    /// Takes a batch of `least` to `want` tokens from the shared counter of
    /// `limit` ([`RateLimit::take_up_to`]) under the subject's row lock.
    async fn take_tokens(
        &self,
        workspace: &WorkspaceUid,
        of: &MeterOf,
        limit: &RateLimit,
        least: u32,
        want: u32,
        now: OffsetDateTime,
    ) -> StoreResult<TokensTaken>;

    /// Gives tokens taken at `taken_at` and not used back to the shared
    /// counter ([`RateLimit::give_back`]).
    async fn give_back_tokens(
        &self,
        workspace: &WorkspaceUid,
        of: &MeterOf,
        limit: &RateLimit,
        tokens: u32,
        taken_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> StoreResult<()>;

    /// Gives back `returned` (tokens and when they were taken) and takes a
    /// new batch as [`Mutations::take_tokens`] does, in one transaction
    /// where the backend can (a batch past its horizon, replaced).
    #[allow(clippy::too_many_arguments)]
    async fn exchange_tokens(
        &self,
        workspace: &WorkspaceUid,
        of: &MeterOf,
        limit: &RateLimit,
        returned: (u32, OffsetDateTime),
        least: u32,
        want: u32,
        now: OffsetDateTime,
    ) -> StoreResult<TokensTaken> {
        self.give_back_tokens(workspace, of, limit, returned.0, returned.1, now).await?;
        self.take_tokens(workspace, of, limit, least, want, now).await
    }

    async fn create_public_key(&self, new: NewPublicKey, actor: &Actor, now: OffsetDateTime) -> StoreResult<PublicKey> {
        Ok(self.run(CreatePublicKey { new, actor: actor.clone(), now }).await?.output)
    }

    async fn change_public_key(
        &self,
        workspace: &WorkspaceUid,
        id: &PublicKeyId,
        change: PublicKeyChange,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> StoreResult<PublicKey> {
        let acting = Acting::new(workspace.clone(), actor.clone(), now);
        Ok(self.run(ChangePublicKey { acting, id: id.clone(), change }).await?.output)
    }

    async fn delete_public_key(
        &self,
        workspace: &WorkspaceUid,
        id: &PublicKeyId,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> StoreResult<PublicKey> {
        let acting = Acting::new(workspace.clone(), actor.clone(), now);
        Ok(self.run(DeletePublicKey { acting, id: id.clone() }).await?.output)
    }

    async fn create_signing_key(
        &self,
        workspace: &WorkspaceUid,
        new: NewSigningKey,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> StoreResult<WorkspaceSigningKey> {
        let acting = Acting::new(workspace.clone(), actor.clone(), now);
        Ok(self.run(CreateSigningKey { acting, new }).await?.output)
    }

    /// Returns (the rolled key, the new active key).
    async fn roll_signing_key(
        &self,
        workspace: &WorkspaceUid,
        uid: &SigningKeyUid,
        grace: Option<GracePeriod>,
        new: NewSigningKey,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> StoreResult<(WorkspaceSigningKey, WorkspaceSigningKey)> {
        let acting = Acting::new(workspace.clone(), actor.clone(), now);
        Ok(self.run(RollSigningKey { acting, uid: uid.clone(), grace, new }).await?.output)
    }

    async fn delete_signing_key(
        &self,
        workspace: &WorkspaceUid,
        uid: &SigningKeyUid,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> StoreResult<WorkspaceSigningKey> {
        let acting = Acting::new(workspace.clone(), actor.clone(), now);
        Ok(self.run(DeleteSigningKey { acting, uid: uid.clone() }).await?.output)
    }

    async fn create_organisation_key(&self, key: &OrganisationSigningKey) -> StoreResult<()> {
        self.run(CreateOrganisationKey(key.clone())).await.map(drop)
    }

    async fn delete_organisation_key(
        &self,
        organisation: &OrganisationId,
        id: &OrganisationKeyId,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> StoreResult<OrganisationSigningKey> {
        let acting = Acting::new(organisation.clone(), actor.clone(), now);
        Ok(self.run(DeleteOrganisationKey { acting, id: id.clone() }).await?.output)
    }

    /// Deletes the organisation's audit events older than `before` in one
    /// transaction, recording one `audit.pruned`; returns how many went.
    async fn prune_audit_events(
        &self,
        organisation: &OrganisationId,
        before: OffsetDateTime,
        now: OffsetDateTime,
    ) -> StoreResult<u64> {
        Ok(self.run(PruneAuditEvents { organisation: organisation.clone(), before, now }).await?.output)
    }
}

/// The typed entry point of every store, `dyn Store` included: runs a
/// command through [`Mutations::execute`] and returns the output its type
/// names, with the change it committed.
pub trait Run: Mutations {
    fn run<C: Command>(&self, command: C) -> impl Future<Output = StoreResult<Executed<C::Output>>> + Send;
}

impl<M: Mutations + ?Sized> Run for M {
    fn run<C: Command>(&self, command: C) -> impl Future<Output = StoreResult<Executed<C::Output>>> + Send {
        let (queued, reply) = Queued::new(command);
        async move {
            let change = self.execute(queued).await?;
            Ok(Executed { output: reply.output()?, change })
        }
    }
}
