//! The figures of the benchmark, each beside its baseline: one module per
//! group of figures, by what it measures (verification throughput, growing
//! sizes: key counts and audit pages, JWT verification, key creation,
//! management writes, the import of foreign keys, usage counts, metering,
//! webhooks),
//! what they share in [`drive`] and [`results`], the machine and its crypto
//! floors in [`machine`]. Memory (figure 6) is sampled here, between the
//! figures.

mod creation;
mod drive;
mod import;
mod jwt;
mod machine;
mod metering;
mod results;
mod scaling;
mod usage;
mod verification;
mod webhooks;
mod writes;

use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use super::procs::{self, ScratchDatabase, TempDir};
use super::{admin_url, random_suffix, Only, Options};
use drive::{memory_of, progress};

pub use creation::RSA_POOL_SIZE;
pub use import::keys_per_second;
pub use metering::{memory_keys, steady_windows, BURST_TIMES, GRANTED_CREDITS, OVERLOAD, SHARED_LIMIT, SHARED_SECONDS};
pub use results::{
    paired_ratios, round, CliRun, Import, ImportRun, MemorySample, Results, Series, SharedLimit, UsageWrites,
};
pub use usage::{BUCKETS_PER_KEY_PER_DAY, RETAINED_BUCKETS_PER_KEY};
pub use webhooks::{backlog_events, DEFAULT_IN_FLIGHT, WIDE_IN_FLIGHT, WRITER_KEYS, WRITER_LEAD, WRITER_RATE};

/// `--only`: one group of figures, nothing else: `metering`, the hello
/// baseline started (and its idle memory read) and figure 10; `webhooks`,
/// figure 11.
pub async fn run_only(options: &Options, keysd: &Path, only: Only) -> Result<Results> {
    let mut results = Results { machine: machine::machine(), keysd_built: built(keysd), ..Results::default() };
    progress(&format!(
        "{} cores, {}; {} mode, figure {} only: {} runs of {} s, concurrency {}",
        results.machine.cores,
        results.machine.cpu,
        if options.quick { "quick" } else { "full" },
        only.figure(),
        options.runs,
        options.duration.as_secs(),
        options.concurrency
    ));
    let suffix = random_suffix();
    let temp = TempDir::new(&suffix)?;
    let admin = admin_url();
    match only {
        Only::Metering => {
            let hello = procs::start_hello(&temp.path.join("hello.log"))?;
            tokio::time::sleep(Duration::from_secs(1)).await;
            results.idle.push(memory_of(&hello, "start")?);
            metering::metering(options, &mut results, keysd, &admin, &temp).await?;
            drop(hello);
        }
        Only::Webhooks => webhooks::webhooks(options, &mut results, keysd, &admin, &temp).await?,
    }
    drop(temp);
    Ok(results)
}

/// When the measured `keysd` binary was built (its mtime, RFC 3339).
fn built(keysd: &Path) -> String {
    std::fs::metadata(keysd)
        .and_then(|metadata| metadata.modified())
        .ok()
        .and_then(|modified| {
            time::OffsetDateTime::from(modified).format(&time::format_description::well_known::Rfc3339).ok()
        })
        .unwrap_or_default()
}

pub async fn run_all(options: &Options, keysd: &Path) -> Result<Results> {
    let mut results = Results { machine: machine::machine(), keysd_built: built(keysd), ..Results::default() };
    progress(&format!(
        "{} cores, {}; {} mode: {} runs of {} s, concurrency {}",
        results.machine.cores,
        results.machine.cpu,
        if options.quick { "quick" } else { "full" },
        options.runs,
        options.duration.as_secs(),
        options.concurrency
    ));

    // The crypto baseline first, on a quiet machine.
    progress(&format!("openssl speed -seconds {} ecdsap256 rsa2048", options.openssl_seconds));
    results.openssl = machine::openssl_speed(options.openssl_seconds).await?;
    progress(&format!(
        "  openssl single-core verify: ecdsap256 {:.0}/s, rsa2048 {:.0}/s",
        results.openssl.ecdsap256_verify_per_s, results.openssl.rsa2048_verify_per_s
    ));

    let suffix = random_suffix();
    let temp = TempDir::new(&suffix)?;
    let admin = admin_url();
    let database = ScratchDatabase::create(&admin, &suffix)?;
    progress(&format!("scratch database {} and directory {}", database.name, temp.path.display()));
    let hello = procs::start_hello(&temp.path.join("hello.log"))?;
    let sqlite_url = format!("sqlite://{}", temp.path.join("keysd.db").display());
    let sqlite = procs::start_keysd(keysd, "keysd-sqlite", &sqlite_url, &temp.path.join("keysd-sqlite.log"))?;
    let postgres = procs::start_keysd(keysd, "keysd-postgres", &database.url, &temp.path.join("keysd-postgres.log"))?;
    let unrecorded_database = ScratchDatabase::create(&admin, &format!("{suffix}_unrecorded"))?;
    let unrecorded = procs::start_keysd_with(
        keysd,
        "keysd-postgres-unrecorded",
        &unrecorded_database.url,
        &temp.path.join("keysd-postgres-unrecorded.log"),
        &["--last-used-interval-seconds", "0"],
    )?;
    let uncounted_database = ScratchDatabase::create(&admin, &format!("{suffix}_uncounted"))?;
    let uncounted = procs::start_keysd_with(
        keysd,
        "keysd-postgres-uncounted",
        &uncounted_database.url,
        &temp.path.join("keysd-postgres-uncounted.log"),
        &["--usage-interval-seconds", "0"],
    )?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    results.idle.push(memory_of(&hello, "start")?);
    results.idle.push(memory_of(&sqlite, "start")?);
    results.idle.push(memory_of(&postgres, "start")?);

    let servers = verification::VerifyServers {
        sqlite: &sqlite,
        postgres: &postgres,
        unrecorded: &unrecorded,
        uncounted: &uncounted,
    };
    verification::verify_api_keys(options, &mut results, &hello, servers).await?;
    drop((uncounted, unrecorded));
    drop((uncounted_database, unrecorded_database));
    verification::last_used_flush(options, &mut results, keysd, &admin, &temp).await?;
    results.loaded.push(memory_of(&hello, "1. API-key verification")?);
    results.loaded.push(memory_of(&sqlite, "1. API-key verification")?);
    results.loaded.push(memory_of(&postgres, "1. API-key verification")?);

    scaling::key_count_scaling(options, &mut results, keysd, &admin, &temp).await?;

    let samples = jwt::cold_jwt(options, &mut results, &postgres).await?;
    results.loaded.push(memory_of(&postgres, "3. cold JWT verification")?);
    jwt::warm_jwt(options, &mut results, &hello, &postgres, samples).await?;
    results.loaded.push(memory_of(&postgres, "3c. warm JWT verification")?);
    jwt::warm_memory(options, &mut results, keysd, &temp).await?;
    results.sha256_api_key_us = machine::sha256_floor();

    creation::key_creation(options, &mut results, &postgres).await?;
    results.loaded.push(memory_of(&postgres, "4. key creation")?);

    writes::management_writes(options, &mut results, &postgres, &database, &temp).await?;
    results.loaded.push(memory_of(&postgres, "5. management writes")?);

    scaling::audit_trail(options, &mut results, keysd, &admin, &temp).await?;
    results.loaded.push(memory_of(&sqlite, "end")?);

    import::import(options, &mut results, keysd, &admin, &temp).await?;

    usage::usage_query(options, &mut results, keysd, &admin, &temp).await?;
    usage::usage_writes(options, &mut results, keysd, &admin, &temp).await?;

    metering::metering(options, &mut results, keysd, &admin, &temp).await?;

    webhooks::webhooks(options, &mut results, keysd, &admin, &temp).await?;

    // Guards stop the servers, drop the database and remove the directory,
    // in this order (reverse declaration order).
    drop((postgres, sqlite, hello));
    drop(database);
    drop(temp);
    Ok(results)
}
