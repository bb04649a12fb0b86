//! The contract suite of keys-store: every test is written once against
//! `&dyn Store` and runs on both backends (`sqlite::…` and `postgres::…`),
//! each on a fresh database. The single-store tests run a second time
//! behind the verification cache (`cached::sqlite::…`, `cached::postgres::…`):
//! a cached store must answer exactly as the store it wraps.

#![allow(clippy::unwrap_used)]

mod api_key_lifecycle;
mod audit;
mod cache;
mod concurrency;
mod imports;
mod lifecycle;
mod metering;
mod quotas;
mod secrets;
mod service_tokens;
mod support;
mod usage;
mod webhooks;

/// Instantiates `module::test(&TestDb)` for each backend, with the
/// databases `TestDb::$open` makes, as `sqlite::test` and `postgres::test`.
macro_rules! per_backend {
    ($open:ident; $($module:ident :: $test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let db = crate::support::TestDb::$open(crate::support::Kind::Sqlite).await;
                    crate::$module::$test(&db).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let db = crate::support::TestDb::$open(crate::support::Kind::Postgres).await;
                    crate::$module::$test(&db).await;
                }
            )*
        }
    };
}

/// Instantiates every test for each backend, as `sqlite::test` and
/// `postgres::test`, and those that read through lookups a second time
/// behind the verification cache, as `cached::sqlite::test` and
/// `cached::postgres::test`: each test is named once.
macro_rules! contract_suite {
    (
        also_through_the_cache: [$($cached_module:ident :: $cached_test:ident),* $(,)?],
        store_only: [$($module:ident :: $test:ident),* $(,)?] $(,)?
    ) => {
        per_backend!(new; $($cached_module::$cached_test,)* $($module::$test),*);
        mod cached {
            per_backend!(new_cached; $($cached_module::$cached_test),*);
        }
    };
}

contract_suite! {
    also_through_the_cache: [
        lifecycle::bootstrap_happens_once,
        lifecycle::service_tokens_by_digest,
        lifecycle::api_key_lifecycle,
        api_key_lifecycle::api_key_patches_each_field_and_null_clears,
        api_key_lifecycle::api_key_disable_and_enable,
        api_key_lifecycle::api_key_roll_with_grace,
        api_key_lifecycle::api_key_roll_without_grace,
        api_key_lifecycle::api_key_refusals_change_nothing,
        lifecycle::public_key_lifecycle,
        lifecycle::signing_key_lifecycle,
        lifecycle::organisation_key_lifecycle,
        lifecycle::missing_targets_are_not_found,
        lifecycle::timestamps_read_back_exactly,
        secrets::no_secret_reaches_the_database,
        service_tokens::service_tokens_read_back_as_made,
        service_tokens::revocation_is_audited_announced_and_final,
        service_tokens::the_last_live_admin_token_cannot_be_revoked,
        webhooks::deliveries_follow_each_endpoints_subscription,
        webhooks::claims_attempts_and_retries_move_a_delivery_on,
    ],
    store_only: [
        audit::audit_events_carry_their_attribution_and_filter,
        audit::audit_ties_of_at_are_paged_by_id,
        audit::audit_pages_stay_exact_under_concurrent_inserts,
        audit::audit_events_are_append_only_in_the_database,
        audit::audit_prune_deletes_older_events_and_records_itself,
        cache::cached_lookups_answer_as_the_store_does,
        cache::own_changes_are_seen_at_once,
        cache::other_stores_changes_are_seen_within_a_second,
        cache::the_cache_stays_within_its_capacity,
        lifecycle::opens_migrates_and_pings,
        lifecycle::organisations_and_name_refusal,
        lifecycle::workspaces_slugs_and_listing,
        lifecycle::lists_page_newest_first_with_ties,
        lifecycle::audit_trail_records_every_mutation,
        lifecycle::the_database_refuses_impossible_signing_key_lifecycles,
        api_key_lifecycle::api_key_changes_are_audited_once_each,
        api_key_lifecycle::the_database_refuses_impossible_api_key_rows,
        api_key_lifecycle::last_used_at_only_moves_forwards,
        api_key_lifecycle::concurrent_use_recording_never_moves_backwards,
        api_key_lifecycle::a_cancelled_write_leaves_the_store_writable,
        concurrency::concurrent_opens_migrate_once,
        concurrency::concurrent_bootstraps_elect_one,
        concurrency::concurrent_signing_key_creates_leave_one_active,
        concurrency::concurrent_rolls_leave_one_active,
        concurrency::concurrent_public_key_creates_keep_one_default,
        concurrency::concurrent_workspace_creates_refuse_taken_slug,
        concurrency::concurrent_revocations_keep_one_admin_token,
        service_tokens::service_token_uses_only_move_forwards,
        service_tokens::the_database_refuses_impossible_service_token_rows,
        quotas::every_cap_refuses_past_it_and_a_delete_frees_a_place,
        quotas::the_api_key_count_follows_every_write,
        quotas::concurrent_creates_never_pass_a_cap,
        quotas::organisation_keys_page_newest_first_with_a_cursor,
        imports::imports_are_all_or_nothing_and_audited_once,
        imports::imports_count_whole_against_the_key_cap,
        imports::concurrent_imports_of_one_key_store_it_once,
        imports::a_refused_batch_names_the_entry_another_import_stored,
        metering::metering_key_reads_back_reserves_hands_back_and_changes_its_balance,
        metering::metering_from_two_stores_at_once_never_oversells,
        metering::metering_root_passes_to_the_key_a_roll_makes,
        metering::metering_identities_are_put_listed_and_deleted_with_their_counters,
        metering::metering_refill_due_sets_the_balance_in_a_new_epoch_before_a_reservation,
        usage::usage_batches_add_to_minute_hour_and_day_buckets_once_each,
        usage::usage_totals_and_selections_read_the_right_rows,
        usage::usage_windows_include_since_and_exclude_until,
        usage::usage_pages_cover_every_row_once_newest_first,
        usage::usage_batches_from_two_stores_at_once_add_up,
        usage::usage_prune_deletes_only_what_is_past_each_cutoff_in_bounded_rounds,
        webhooks::warnings_are_stored_once_when_an_endpoint_subscribes,
        webhooks::concurrent_claims_never_take_a_delivery_twice,
        webhooks::expiring_keys_are_found_once_per_lead,
        webhooks::endpoint_commands_cascade_cap_and_disable_after_five_days,
        webhooks::prune_deletes_only_finished_deliveries_past_the_cutoff,
    ],
}
