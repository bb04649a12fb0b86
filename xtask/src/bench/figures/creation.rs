//! Figure 4: creating a workspace signing key (P-256) and an organisation
//! key (RSA-2048), at a steady rate and in bursts, beside key generation
//! alone in this process.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::json;

use super::drive::{log_run, progress, text};
use super::results::{Results, Run, Series};
use crate::bench::load::{self, Api, Job};
use crate::bench::procs::Server;
use crate::bench::{median, Options};

/// Figure 4: creating a workspace signing key (P-256) and an organisation
/// key (RSA-2048), at a steady rate and in bursts; only the create request
/// is timed.
pub(super) async fn key_creation(options: &Options, results: &mut Results, server: &Server) -> Result<()> {
    progress(&format!("4. key creation at {} req/s and in bursts of {} (PostgreSQL)", options.rate, options.burst));
    // The floor: generating the key pair alone, in this process, one at a
    // time, with the same library keysd uses.
    let rsa_samples = if options.quick { 4 } else { 24 };
    let (p256, rsa) = tokio::task::spawn_blocking(move || {
        let time = |generate: &dyn Fn()| {
            let started = Instant::now();
            generate();
            started.elapsed().as_secs_f64() * 1000.0
        };
        // Generation plus the PEMs a create returns and stores.
        let p256: Vec<f64> = (0..200)
            .map(|_| {
                time(&|| {
                    let pair = keys_crypto::EcKeyPair::generate(&mut rand_core::OsRng);
                    drop((pair.private_key_pem(), pair.public_key_pem()));
                })
            })
            .collect();
        let rsa: Vec<f64> = (0..rsa_samples)
            .map(|_| {
                time(&|| {
                    let pair = keys_crypto::RsaKeyPair::generate(&mut rand_core::OsRng);
                    drop((pair.private_key_pem(), pair.public_key_pem()));
                })
            })
            .collect();
        (p256, rsa)
    })
    .await
    .context("key generation baseline")?;
    progress(&format!(
        "  in-process key generation: P-256 p50 {:.3} ms, RSA-2048 p50 {:.0} ms (max {:.0} ms)",
        median(&p256),
        median(&rsa),
        rsa.iter().copied().fold(0.0, f64::max)
    ));
    results.keygen_p256_ms = p256;
    results.keygen_rsa_ms = rsa;

    let api = Api::new(server.addr, &server.token);
    // A workspace holds one active signing key: each create is followed by
    // a delete, and a slot is used by one job at a time.
    let slots = options.burst.max(8);
    let mut workspaces = Vec::with_capacity(slots);
    for index in 0..slots {
        let slug = format!("bench-{index}");
        api.expect("POST", "/v1/workspace/", Some(&json!({"name": slug, "slug": slug})), 201).await?;
        workspaces.push((slug, tokio::sync::Mutex::new(())));
    }
    let workspaces = Arc::new(workspaces);
    let workspace_job: Job = {
        let api = api.clone();
        Arc::new(move |n| {
            let api = api.clone();
            let workspaces = Arc::clone(&workspaces);
            Box::pin(async move {
                let (slug, lock) = &workspaces[(n as usize) % workspaces.len()];
                let _slot = lock.lock().await;
                let created = api.expect("POST", &format!("/v1/{slug}/ws_signing_key/"), None, 201).await?;
                let uid = text(&created.json, "uid")?;
                api.expect("DELETE", &format!("/v1/{slug}/ws_signing_key/{uid}/"), None, 204).await?;
                Ok(created.latency)
            })
        })
    };
    let organisation_job: Job = {
        let api = api.clone();
        let base = format!("/api/organisations/v1/organisations/{}/keys", server.organisation_id);
        Arc::new(move |n| {
            let api = api.clone();
            let base = base.clone();
            Box::pin(async move {
                let created = api.expect("POST", &base, Some(&json!({"name": format!("bench key {n}")})), 201).await?;
                let id = text(&created.json, "id")?;
                api.expect("DELETE", &format!("{base}/{id}"), None, 204).await?;
                Ok(created.latency)
            })
        })
    };
    // Open as many pooled connections as a burst needs, outside the timing.
    let mut opening = tokio::task::JoinSet::new();
    for _ in 0..options.burst {
        let api = api.clone();
        opening.spawn(async move { api.call("GET", "/health", None).await });
    }
    while let Some(joined) = opening.join_next().await {
        joined.context("opening connections")??;
    }
    let pause = Duration::from_millis(if options.quick { 300 } else { 2000 });
    // Long enough for one refill thread to fill keysd's pool again (8 keys
    // of 0.2-0.7 s each) before an organisation-key burst.
    let refill = Duration::from_secs(if options.quick { 4 } else { 6 });
    for (name, job) in [("workspace key (P-256)", &workspace_job), ("organisation key (RSA-2048)", &organisation_job)] {
        let organisation = name.starts_with("organisation");
        let mut steady = Series::default();
        let mut bursts = Series::default();
        for index in 0..options.runs {
            let sample = load::fixed_rate(options.rate, options.steady_duration, Arc::clone(job)).await?;
            let run = Run::from_sample(&sample, None);
            log_run(&format!("{name} steady"), index, options.runs, &run);
            steady.runs.push(run);
            // Let background work (the RSA pool refill) settle, as after any
            // quiet period, then burst: as many as keysd's pool holds.
            tokio::time::sleep(if organisation { refill } else { pause }).await;
            let size = if organisation { RSA_POOL_SIZE } else { options.burst };
            let sample = load::burst(size, 1_000_000 * (index as u64 + 1), Arc::clone(job)).await?;
            let run = Run::from_sample(&sample, None);
            log_run(&format!("{name} burst"), index, options.runs, &run);
            bursts.runs.push(run);
            tokio::time::sleep(if organisation { refill } else { pause }).await;
            if organisation {
                let sample =
                    load::fixed_rate(1.0, options.steady_duration.max(Duration::from_secs(3)), Arc::clone(job)).await?;
                let run = Run::from_sample(&sample, None);
                log_run(&format!("{name} steady 1/s"), index, options.runs, &run);
                results.create_organisation_steady_slow.runs.push(run);
            }
        }
        if name.starts_with("workspace") {
            results.create_workspace_steady = steady;
            results.create_workspace_burst = bursts;
        } else {
            results.create_organisation_steady = steady;
            results.create_organisation_burst = bursts;
        }
    }
    Ok(())
}

/// keysd's default `--rsa-pool-size`: the organisation-key burst is this
/// many creates at once.
pub const RSA_POOL_SIZE: usize = 8;
