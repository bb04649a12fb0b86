//! Every mutation of keysd: one type per command, each implementing
//! [`Command`], in the file of the entity it changes (`organisations`,
//! `service_tokens`, `workspaces`, `api_keys`, `public_keys`,
//! `signing_keys`, `organisation_keys`, `audit`).
//!
//! A command names, in its `command!` declaration (one line that makes its
//! struct and its `impl Command`; a change of something that exists
//! carries an [`Acting`]: its aggregate root, its actor and `now`):
//! - its **output** ([`Command::Output`]): what its caller gets back, fixed
//!   by its type, so asking a create-API-key command for a workspace does
//!   not compile;
//! - its **lock** ([`Command::lock`]): the aggregate root it serializes on
//!   (an organisation, a workspace, the bootstrap) or nothing;
//! - what it is for the caps ([`Command::mutation`]; keys-core's
//!   `Mutation::adds` decides what that adds);
//! - its **transition** ([`Command::apply`]): what it loads under the lock,
//!   the keys-core method that decides, and the generic per-entity
//!   statements of [`crate::repo`] (`insert_*`, `save_*`) that write the
//!   result, with its audit event ([`AuditAction`]) and its [`Change`].
//!
//! One function runs every command: `crate::pipeline::run` opens the write
//! transaction, takes the lock, calls [`Command::apply`], inserts the audit
//! events, announces the change and commits.
//!
//! **How a typed command crosses `dyn Store`.** The entry point must work
//! through `Arc<dyn Store>`, which keys-http holds, so it cannot be generic
//! over a command type. [`Queued::new`] therefore splits a command into the
//! object-safe [`Queued`] that [`crate::Mutations::execute`] runs (the
//! command behind a trait object, with the sender of its output) and a
//! [`Reply`] of the command's own output type, which the caller keeps
//! (`crate::Run::run` does both). The trait object reaches the generic
//! [`Command::apply`] through [`WriteConnection`], one arm per backend.
//!
//! **Adding an operation** touches the entity's file only: its
//! `command!` (the declaration, then the keys-core transition and
//! `repo::save_*`), an [`AuditAction`] if the action is new; callers run it with
//! `crate::Run::run`, or through a typed method of `crate::Mutations` if
//! one is wanted there. The pipeline, both backends, the cache and the SQL
//! stay as they are.

use std::future::Future;
use std::pin::Pin;

use keys_core::{Actor, ApiKey, CoreError, Mutation, Organisation, OrganisationId, QuotaKind, Workspace, WorkspaceUid};
use sqlx::{PgConnection, SqliteConnection};
use time::OffsetDateTime;
use tokio::sync::oneshot;

use crate::change::Change;
use crate::error::{StoreError, StoreResult};
use crate::repo::Sql;

/// Declares a command in one line: its struct, its [`Command::Output`], its
/// [`Command::lock`] and its [`Command::mutation`] (a keys-core
/// `Mutation`); then its transition, `apply |pattern, sql, locked| { … }`
/// (the body of [`Command::apply`], with the command bound to the
/// pattern), and any other method of [`Command`] it overrides.
///
/// - `Name { field: Type, … } in Workspace(WorkspaceUid) -> Output, mutation;`
///   changes what exists under an aggregate root: its first field,
///   `acting`, is an [`Acting`] on that root, which it locks
///   (`in Organisation(OrganisationId, Option<Actor>)` where the actor is
///   optional). `…, |command| mutation;` where the command decides it.
/// - `Name(Record) in Organisation(organisation_id) -> Output, mutation;`
///   writes the record it carries, locking the root the record names
///   (`in Nothing`: no lock).
/// - `Name { … } -> Output, lock |command| …, mutation |command| …;` says
///   both in full.
macro_rules! command {
    (
        $(#[$meta:meta])*
        $name:ident { $($field:ident: $type:ty),* $(,)? } in $root:ident($($acting:ty),+) -> $output:ty,
        |$that:ident| $mutation:expr; $($rest:tt)*
    ) => {
        command! {
            $(#[$meta])*
            $name { acting: Acting<$($acting),+>, $($field: $type),* } -> $output,
            lock |command| Lock::$root(&command.acting.root), mutation |$that| $mutation; $($rest)*
        }
    };
    (
        $(#[$meta:meta])*
        $name:ident { $($field:ident: $type:ty),* $(,)? } in $root:ident($($acting:ty),+) -> $output:ty,
        $mutation:expr; $($rest:tt)*
    ) => {
        command! {
            $(#[$meta])*
            $name { acting: Acting<$($acting),+>, $($field: $type),* } -> $output,
            lock |command| Lock::$root(&command.acting.root), mutation |_command| $mutation; $($rest)*
        }
    };
    (
        $(#[$meta:meta])*
        $name:ident($record:ty) in Nothing -> $output:ty, $mutation:expr; $($rest:tt)*
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone)]
        pub struct $name(pub $record);

        command!(@impl $name -> $output, |_command| Lock::Nothing, |_command| $mutation; $($rest)*);
    };
    (
        $(#[$meta:meta])*
        $name:ident($record:ty) in $root:ident($path:ident) -> $output:ty, $mutation:expr; $($rest:tt)*
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone)]
        pub struct $name(pub $record);

        command!(@impl $name -> $output, |command| Lock::$root(&command.0.$path), |_command| $mutation; $($rest)*);
    };
    (
        $(#[$meta:meta])*
        $name:ident { $($field:ident: $type:ty),* $(,)? } -> $output:ty,
        lock |$this:ident| $lock:expr, mutation |$that:ident| $mutation:expr; $($rest:tt)*
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone)]
        pub struct $name { $(pub $field: $type),* }

        command!(@impl $name -> $output, |$this| $lock, |$that| $mutation; $($rest)*);
    };
    (
        @impl $name:ident -> $output:ty, |$this:ident| $lock:expr, |$that:ident| $mutation:expr;
        apply |$command:pat_param, $sql:ident, $locked:pat_param| $apply:block $($more:tt)*
    ) => {
        impl Command for $name {
            type Output = $output;

            fn lock(&self) -> Lock<'_> {
                let $this = self;
                $lock
            }

            fn mutation(&self) -> Mutation {
                let $that = self;
                $mutation
            }

            async fn apply<C: Sql + ?Sized>(self, $sql: &mut C, $locked: Locked) -> StoreResult<Applied<$output>> {
                let $command = self;
                $apply
            }

            $($more)*
        }
    };
}

mod api_keys;
mod audit;
mod meters;
mod organisation_keys;
mod organisations;
mod public_keys;
mod service_tokens;
mod signing_keys;
mod webhooks;
mod workspaces;

pub use api_keys::{
    ApiKeyChange, ChangeApiKey, CreateApiKey, ImportApiKeys, ImportedApiKeys, LeakedApiKey, ReportLeakedApiKey,
    RollApiKey, StoredDigests,
};
pub use audit::{AuditAction, AuditEvent, PruneAuditEvents, RecordedAuditEvent};
pub use meters::{ChangeCredits, CreateMeteredApiKey, CreditsOf, DeleteIdentity, PutIdentity, PutKeyMeter};
pub use organisation_keys::{CreateOrganisationKey, DeleteOrganisationKey};
pub use organisations::{Bootstrap, CreateOrganisation};
pub use public_keys::{ChangePublicKey, CreatePublicKey, DeletePublicKey, PublicKeyChange};
pub use service_tokens::{CreateServiceToken, RevokeServiceToken};
pub use signing_keys::{CreateSigningKey, DeleteSigningKey, RollSigningKey};
pub use webhooks::{
    ChangeWebhookEndpoint, CreateWebhookEndpoint, DeleteWebhookEndpoint, DisableFailingWebhookEndpoint, EndpointPatch,
};
pub use workspaces::{CreateWorkspace, PatchWorkspace};

/// One mutation of the store. Each carries what its transition needs,
/// `now` and the actor included (the store never reads the clock).
pub trait Command: Send + Sized + 'static {
    /// What the command returns to its caller.
    type Output: Send + 'static;

    /// The aggregate this command serializes on.
    fn lock(&self) -> Lock<'_>;

    /// What the command does, in the terms of keys-core's caps.
    fn mutation(&self) -> Mutation;

    /// Loads what the transition needs (the pipeline holds the lock and
    /// passes what it locked), applies the keys-core transition and writes
    /// the result. Returns the output, the audit events and the change.
    fn apply<C: Sql + ?Sized>(
        self,
        sql: &mut C,
        locked: Locked,
    ) -> impl Future<Output = StoreResult<Applied<Self::Output>>> + Send;

    /// The API key this command creates, where a backend can create it in
    /// one statement (PostgreSQL, `repo::create_api_key_at_once`); `None`
    /// for every other command.
    fn api_key_at_once(&self) -> Option<&ApiKey> {
        None
    }

    /// The output and change of a command the backend wrote in that one
    /// statement.
    fn written_at_once(self) -> Option<(Self::Output, Change)> {
        None
    }
}

/// Who changes something that exists, when, and under which aggregate
/// root (a [`WorkspaceUid`] or an [`OrganisationId`], which the command
/// locks): the fields every such command shares, first in each.
#[derive(Debug, Clone)]
pub struct Acting<Root, Who = Actor> {
    pub root: Root,
    pub actor: Who,
    pub now: OffsetDateTime,
}

impl<Root, Who> Acting<Root, Who> {
    pub fn new(root: Root, actor: Who, now: OffsetDateTime) -> Self {
        Self { root, actor, now }
    }
}

impl<Root> Acting<Root> {
    /// The event of this actor's change of `target`, at `at`, in `scope`.
    fn event(&self, scope: &Scope, action: AuditAction, target: &str, at: OffsetDateTime) -> AuditEvent {
        scope.event(action, Some(&self.actor), target, at)
    }
}

/// What a command locks before it reads anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock<'a> {
    /// Nothing to lock (creating an organisation: the unique name decides).
    Nothing,
    /// Bootstrap attempts exclude each other across processes.
    Bootstrap,
    Organisation(&'a OrganisationId),
    Workspace(&'a WorkspaceUid),
}

/// What the pipeline found, and holds, under the lock.
#[derive(Debug)]
pub enum Locked {
    Nothing,
    Organisation(Organisation),
    Workspace(Workspace),
}

impl Locked {
    /// The workspace a workspace command locked.
    pub(crate) fn workspace(self) -> StoreResult<Workspace> {
        match self {
            Self::Workspace(workspace) => Ok(workspace),
            _ => Err(lost_lock()),
        }
    }

    /// The organisation an organisation command locked.
    pub(crate) fn organisation(self) -> StoreResult<Organisation> {
        match self {
            Self::Organisation(organisation) => Ok(organisation),
            _ => Err(lost_lock()),
        }
    }
}

/// The lock a command holds, when it is not the one the command named.
fn lost_lock() -> StoreError {
    StoreError::Inconsistent("a command ran without the lock it names".to_owned())
}

/// What [`Command::apply`] wrote: the output, the audit events to insert
/// beside it (none means nothing was written) and the change to announce.
#[derive(Debug)]
pub struct Applied<T> {
    pub(crate) output: T,
    pub(crate) events: Vec<AuditEvent>,
    pub(crate) change: Option<Change>,
}

impl<T> Applied<T> {
    fn one(output: T, event: AuditEvent, change: Change) -> Self {
        Self { output, events: vec![event], change: Some(change) }
    }

    /// The same writes, with the output `shape` makes of this one.
    fn map<U>(self, shape: impl FnOnce(T) -> StoreResult<U>) -> StoreResult<Applied<U>> {
        Ok(Applied { output: shape(self.output)?, events: self.events, change: self.change })
    }
}

/// What a committed command returns: its output, and what it changed (none
/// when it wrote nothing, as a bootstrap of a database that has one
/// already).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Executed<T> {
    pub output: T,
    pub change: Option<Change>,
}

/// A write connection of one backend, for [`Queued`] to reach the generic
/// [`Command::apply`] from behind its trait object.
#[derive(Debug)]
pub enum WriteConnection<'a> {
    Postgres(&'a mut PgConnection),
    Sqlite(&'a mut SqliteConnection),
}

/// What the pipeline keeps of an applied command once its output went to
/// its [`Reply`].
pub(crate) struct Written {
    pub(crate) events: Vec<AuditEvent>,
    pub(crate) change: Option<Change>,
}

type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A command with the sender of its output, behind [`Queued`].
trait Job: Send {
    fn lock(&self) -> Lock<'_>;
    fn mutation(&self) -> Mutation;
    fn api_key_at_once(&self) -> Option<&ApiKey>;
    fn written_at_once(self: Box<Self>) -> StoreResult<Change>;
    fn apply<'a>(self: Box<Self>, connection: WriteConnection<'a>, locked: Locked) -> Boxed<'a, StoreResult<Written>>;
}

struct Pending<C: Command> {
    command: C,
    reply: oneshot::Sender<C::Output>,
}

impl<C: Command> Pending<C> {
    async fn run<S: Sql + ?Sized>(self, sql: &mut S, locked: Locked) -> StoreResult<Written> {
        let applied = self.command.apply(sql, locked).await?;
        // A caller that stopped waiting has no use for the output.
        let _ = self.reply.send(applied.output);
        Ok(Written { events: applied.events, change: applied.change })
    }
}

impl<C: Command> Job for Pending<C> {
    fn lock(&self) -> Lock<'_> {
        self.command.lock()
    }

    fn mutation(&self) -> Mutation {
        self.command.mutation()
    }

    fn api_key_at_once(&self) -> Option<&ApiKey> {
        self.command.api_key_at_once()
    }

    fn written_at_once(self: Box<Self>) -> StoreResult<Change> {
        let (output, change) = self
            .command
            .written_at_once()
            .ok_or_else(|| StoreError::Inconsistent("a command was written at once that cannot be".to_owned()))?;
        let _ = self.reply.send(output);
        Ok(change)
    }

    fn apply<'a>(self: Box<Self>, connection: WriteConnection<'a>, locked: Locked) -> Boxed<'a, StoreResult<Written>> {
        match connection {
            WriteConnection::Postgres(sql) => Box::pin(self.run(sql, locked)),
            WriteConnection::Sqlite(sql) => Box::pin(self.run(sql, locked)),
        }
    }
}

/// A command on its way to the pipeline: what the object-safe
/// [`crate::Mutations::execute`] takes. Its output goes to the [`Reply`]
/// made with it.
pub struct Queued(Box<dyn Job>);

impl std::fmt::Debug for Queued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Queued").field(&self.0.mutation()).finish()
    }
}

impl Queued {
    /// The command, ready for the pipeline, and where its output arrives.
    pub fn new<C: Command>(command: C) -> (Self, Reply<C::Output>) {
        let (reply, receiver) = oneshot::channel();
        (Self(Box::new(Pending { command, reply })), Reply(receiver))
    }

    pub fn lock(&self) -> Lock<'_> {
        self.0.lock()
    }

    /// What the command adds to a count a cap holds (keys-core decides).
    pub(crate) fn adds(&self) -> Option<QuotaKind> {
        self.0.mutation().adds()
    }

    pub(crate) fn api_key_at_once(&self) -> Option<&ApiKey> {
        self.0.api_key_at_once()
    }

    pub(crate) fn written_at_once(self) -> StoreResult<Change> {
        self.0.written_at_once()
    }

    pub(crate) async fn apply(self, connection: WriteConnection<'_>, locked: Locked) -> StoreResult<Written> {
        self.0.apply(connection, locked).await
    }
}

/// Where the output of a [`Queued`] command arrives, typed by its command.
#[derive(Debug)]
pub struct Reply<T>(oneshot::Receiver<T>);

impl<T> Reply<T> {
    /// The output, once the command ran and the store returned `Ok`.
    pub fn output(mut self) -> StoreResult<T> {
        self.0.try_recv().map_err(|_| StoreError::Inconsistent("a command returned without its output".to_owned()))
    }
}

/// Where the events of a command belong: an organisation and, for what
/// happens inside one, a workspace.
struct Scope {
    organisation: OrganisationId,
    workspace: Option<WorkspaceUid>,
}

impl Scope {
    fn of_workspace(workspace: &Workspace) -> Self {
        Self { organisation: workspace.organisation_id.clone(), workspace: Some(workspace.uid.clone()) }
    }

    fn of_organisation(organisation: &OrganisationId) -> Self {
        Self { organisation: organisation.clone(), workspace: None }
    }

    fn event(&self, action: AuditAction, actor: Option<&Actor>, target_id: &str, at: OffsetDateTime) -> AuditEvent {
        AuditEvent {
            organisation_id: self.organisation.clone(),
            workspace: self.workspace.clone(),
            actor: actor.cloned(),
            token_id: None,
            request_id: None,
            action,
            target_id: target_id.to_owned(),
            at,
            detail: None,
        }
    }
}

/// The refusal of the domain for something missing, as the store's outcome:
/// the rings of keys-core answer `CoreError::NotFound` for a key that is not
/// in them. Applied once, where the pipeline returns.
pub(crate) fn store_outcome(error: StoreError) -> StoreError {
    match error {
        StoreError::Refused(CoreError::NotFound { kind }) => StoreError::NotFound { kind },
        other => other,
    }
}
