//! Figure 3: JWT verification. Cold (every token distinct, ES256 user
//! tokens with and without `kid`, RS256 organisation tokens) beside
//! `openssl speed` and keys-crypto in this process; 3c, the warm path beside
//! hello; 3d, what the warm path's memory costs when full.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use serde_json::json;

use super::drive::{closed, log_run, progress, text, unix_now, warm_up};
use super::results::{Jwt, Results, Series, WarmMemory};
use crate::bench::load::{self, Api, Bodies, Expect};
use crate::bench::procs::{self, Server, TempDir};
use crate::bench::Options;

/// Signs tokens on every core until `count` are made or `budget` is spent.
fn sign_tokens(
    count: usize,
    budget: Duration,
    sign: impl Fn(u64) -> Result<String> + Sync,
) -> Result<(Vec<String>, f64)> {
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let started = Instant::now();
    let deadline = started + budget;
    let chunks = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|thread| {
                let sign = &sign;
                scope.spawn(move || -> Result<Vec<String>> {
                    let mut tokens = Vec::new();
                    let mut n = thread as u64;
                    while (n as usize) < count && Instant::now() < deadline {
                        tokens.push(sign(n)?);
                        n += threads as u64;
                    }
                    Ok(tokens)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().map_err(|_| anyhow!("signing thread panicked"))?)
            .collect::<Result<Vec<_>>>()
    })?;
    Ok((chunks.into_iter().flatten().collect(), started.elapsed().as_secs_f64()))
}

/// Figure 3: cold JWT verification (every token distinct), ES256 user tokens
/// in secure mode and RS256 organisation tokens, on PostgreSQL.
pub(super) async fn cold_jwt(options: &Options, results: &mut Results, server: &Server) -> Result<WarmSamples> {
    progress("3. cold JWT verification on PostgreSQL (every token distinct)");
    let api = Api::new(server.addr, &server.token);
    let SecureMode { public_value, kid, ec_pem } = secure_mode(&api).await?;
    let org_key = api
        .expect(
            "POST",
            &format!("/api/organisations/v1/organisations/{}/keys", server.organisation_id),
            Some(&json!({"name": "bench jwt"})),
            201,
        )
        .await?;
    let org_key_id = text(&org_key.json, "id")?.to_owned();
    let rsa_pem = text(&org_key.json, "privateKey")?.to_owned();

    let expires = unix_now() + 3600;
    let cores = results.machine.cores;
    let per_run_cap = (options.duration.as_secs() as usize) * 12_000;
    let es_total = per_run_cap * options.runs + 2_000;
    let es_budget = if options.quick { Duration::from_millis(2500) } else { Duration::from_secs(15) };
    let (es_tokens, es_seconds) = sign_tokens(es_total, es_budget, |n| {
        let claims =
            json!({"entity_type": "subscriber", "entity_id": format!("bench-user-{n}"), "exp": expires, "jti": n});
        keys_crypto::mint::sign(&claims, Some(&kid), &ec_pem, keys_crypto::Algorithm::Es256)
            .map_err(|error| anyhow!("{error}"))
    })?;
    // The same recipe without `kid`, as SuprSend documents it.
    let (kidless_tokens, _) = sign_tokens(es_total, es_budget, |n| {
        let claims =
            json!({"entity_type": "subscriber", "entity_id": format!("bench-user-{n}"), "exp": expires, "jti": n});
        keys_crypto::mint::sign(&claims, None, &ec_pem, keys_crypto::Algorithm::Es256)
            .map_err(|error| anyhow!("{error}"))
    })?;
    let kidless_bodies: Vec<Bytes> = kidless_tokens
        .into_iter()
        .map(|token| Bytes::from(json!({"api_key": public_value, "user_token": token}).to_string()))
        .collect();
    let rs_total = per_run_cap * options.runs + 500;
    let issuer = format!("https://versori.com/sk/{org_key_id}");
    let (rs_tokens, rs_seconds) = sign_tokens(rs_total, options.rs256_signing_budget, |n| {
        let claims = json!({"iss": issuer, "sub": format!("bench-user-{n}"), "exp": expires, "jti": n});
        keys_crypto::mint::sign(&claims, None, &rsa_pem, keys_crypto::Algorithm::Rs256)
            .map_err(|error| anyhow!("{error}"))
    })?;
    progress(&format!(
        "  signed {} ES256 tokens in {es_seconds:.1} s and {} RS256 tokens in {rs_seconds:.1} s on {cores} cores",
        es_tokens.len(),
        rs_tokens.len()
    ));

    // The library alone, in this process, on one thread.
    let library_window = Duration::from_millis(if options.quick { 300 } else { 2000 });
    let ec_public =
        keys_crypto::EcKeyPair::from_pkcs8_pem(&ec_pem).map_err(|error| anyhow!("{error}"))?.public_key_pem();
    let rsa_public =
        keys_crypto::RsaKeyPair::from_pkcs8_pem(&rsa_pem).map_err(|error| anyhow!("{error}"))?.public_key_pem();
    let es_library = library_verify_rates(keys_crypto::Algorithm::Es256, ec_public, &es_tokens, library_window).await?;
    let rs_library =
        library_verify_rates(keys_crypto::Algorithm::Rs256, rsa_public, &rs_tokens, library_window).await?;
    progress(&format!(
        "  keys-crypto on 1 thread: ES256 {:.0} verifications/s ({:.0}/s with PEM parse), RS256 {:.0}/s ({:.0}/s)",
        es_library.0, es_library.1, rs_library.0, rs_library.1
    ));
    let es_bodies: Vec<Bytes> = es_tokens
        .into_iter()
        .map(|token| Bytes::from(json!({"api_key": public_value, "user_token": token}).to_string()))
        .collect();
    let rs_bodies: Vec<Bytes> =
        rs_tokens.into_iter().map(|token| Bytes::from(json!({"token": token}).to_string())).collect();
    let samples = WarmSamples {
        es256: es_bodies.iter().take(WARM_TOKENS).cloned().collect(),
        rs256: rs_bodies.iter().take(WARM_TOKENS).cloned().collect(),
    };

    let kinds = [
        ("ES256", "/v1/verify/public_key/", es_bodies, es_seconds, es_library),
        ("RS256", "/v1/verify/jwt/", rs_bodies, rs_seconds, rs_library),
    ];
    for (name, path, bodies, signing_seconds, library) in kinds {
        // A tenth (at most 2,000) warms up and checks the path answers valid.
        let warm = (bodies.len() / 10).clamp(1, 2_000);
        let per_run = (bodies.len() - warm) / options.runs;
        if per_run < 100 {
            bail!("only {} {name} tokens signed; need at least 100 per run", bodies.len());
        }
        let (measured, warming) = bodies.split_at(bodies.len() - warm);
        let mut chunks = measured.chunks(per_run).map(|chunk| Arc::new(chunk.to_vec()));
        let warm_bodies = Arc::new(warming.to_vec());
        let make = load::requests(server.addr, &server.token, "POST", path, Bodies::Each(warm_bodies));
        warm_up(server, options.concurrency, options.warmup, &make, Expect::valid()).await?;
        let mut jwt = Jwt {
            tokens_per_run: per_run,
            signing_seconds,
            library_verify_per_s: library.0,
            library_pem_verify_per_s: library.1,
            ..Jwt::default()
        };
        for index in 0..options.runs {
            let chunk = chunks.next().context("token chunks")?;
            let make = load::requests(server.addr, &server.token, "POST", path, Bodies::Each(chunk));
            let run = closed(server, options.concurrency, options.duration, &make, Expect::valid(), true).await?;
            log_run(name, index, options.runs, &run);
            jwt.series.runs.push(run);
        }
        if name == "ES256" {
            results.jwt_es256 = jwt;
        } else {
            results.jwt_rs256 = jwt;
        }
    }
    // Kid-less ES256 after the kid runs, on the same key and endpoint.
    let per_run = (kidless_bodies.len() / (options.runs + 1)).max(1);
    let mut chunks = kidless_bodies.chunks(per_run).map(|chunk| Arc::new(chunk.to_vec()));
    let warm = chunks.next().context("kid-less token chunks")?;
    let make = load::requests(server.addr, &server.token, "POST", "/v1/verify/public_key/", Bodies::Each(warm));
    warm_up(server, options.concurrency, options.warmup, &make, Expect::valid()).await?;
    for index in 0..options.runs {
        let chunk = chunks.next().context("kid-less token chunks")?;
        let make = load::requests(server.addr, &server.token, "POST", "/v1/verify/public_key/", Bodies::Each(chunk));
        let run = closed(server, options.concurrency, options.duration, &make, Expect::valid(), true).await?;
        log_run("ES256 without kid", index, options.runs, &run);
        results.jwt_es256_kidless.runs.push(run);
    }
    Ok(samples)
}

/// A secure-mode public key of `staging` and its workspace's signing key.
struct SecureMode {
    public_value: String,
    kid: String,
    ec_pem: String,
}

async fn secure_mode(api: &Api) -> Result<SecureMode> {
    let public_key = api.expect("POST", "/v1/staging/ws_public_key/", Some(&json!({"name": "bench jwt"})), 201).await?;
    let public_id = text(&public_key.json, "id")?.to_owned();
    let public_value = text(&public_key.json, "api_key")?.to_owned();
    api.expect(
        "PATCH",
        &format!("/v1/staging/ws_public_key/{public_id}/"),
        Some(&json!({"is_secure_mode_enabled": true})),
        202,
    )
    .await?;
    let signing = api.expect("POST", "/v1/staging/ws_signing_key/", None, 201).await?;
    let kid = text(&signing.json, "uid")?.to_owned();
    let ec_pem = text(&signing.json, "private_key_pem")?.to_owned();
    Ok(SecureMode { public_value, kid, ec_pem })
}

/// Distinct tokens of the warm figure: each is sent again and again.
const WARM_TOKENS: usize = 64;

/// Request bodies of figure 3 kept for the warm figure.
pub struct WarmSamples {
    es256: Vec<Bytes>,
    rs256: Vec<Bytes>,
}

/// Figure 3c: the warm path. [`WARM_TOKENS`] tokens of each kind, cycled
/// (a browser's user token on every page, a backend's JWT on every call),
/// each keysd run beside a hello run.
pub(super) async fn warm_jwt(
    options: &Options,
    results: &mut Results,
    hello: &Server,
    server: &Server,
    samples: WarmSamples,
) -> Result<()> {
    progress(&format!("3c. warm JWT verification ({WARM_TOKENS} tokens of each kind, sent again and again)"));
    let cycled = |bodies: Vec<Bytes>| {
        let bodies = Arc::new(bodies);
        Bodies::Numbered(Arc::new(move |n| bodies[(n as usize) % bodies.len()].clone()))
    };
    let kinds =
        [("ES256 warm", "/v1/verify/public_key/", samples.es256), ("RS256 warm", "/v1/verify/jwt/", samples.rs256)];
    for (name, path, bodies) in kinds {
        // The same requests (headers and bodies) go to hello.
        let hello_make = load::requests(hello.addr, &server.token, "POST", path, cycled(bodies.clone()));
        let make = load::requests(server.addr, &server.token, "POST", path, cycled(bodies));
        warm_up(server, options.concurrency, options.warmup, &make, Expect::valid()).await?;
        let mut series = Series::default();
        for index in 0..options.runs {
            let run = closed(hello, options.concurrency, options.duration, &hello_make, Expect::valid(), true).await?;
            log_run("hello", index, options.runs, &run);
            results.hello_warm.runs.push(run);
            let run = closed(server, options.concurrency, options.duration, &make, Expect::valid(), true).await?;
            log_run(name, index, options.runs, &run);
            series.runs.push(run);
        }
        if name.starts_with("ES256") {
            results.jwt_es256_warm = series;
        } else {
            results.jwt_rs256_warm = series;
        }
    }
    Ok(())
}

/// Figure 3d: a keysd on SQLite with room for as many verified tokens as the
/// figure sends, each distinct and sent once: the resident memory before
/// and after is what the warm path costs when full.
pub(super) async fn warm_memory(options: &Options, results: &mut Results, keysd: &Path, temp: &TempDir) -> Result<()> {
    let entries: u64 = if options.quick { 100_000 } else { 1_000_000 };
    progress(&format!("3d. warm-path memory: {entries} distinct ES256 tokens into a cache of as many"));
    let url = format!("sqlite://{}", temp.path.join("keysd-warm.db").display());
    let capacity = entries.to_string();
    let server = procs::start_keysd_with(
        keysd,
        "keysd-sqlite-warm",
        &url,
        &temp.path.join("keysd-sqlite-warm.log"),
        &["--verified-token-cache-entries", &capacity, "--last-used-interval-seconds", "0"],
    )?;
    let api = Api::new(server.addr, &server.token);
    let SecureMode { public_value, kid, ec_pem } = secure_mode(&api).await?;
    let expires = unix_now() + 3600;
    let (tokens, seconds) = sign_tokens(entries as usize, Duration::from_secs(600), |n| {
        let claims =
            json!({"entity_type": "subscriber", "entity_id": format!("bench-user-{n}"), "exp": expires, "jti": n});
        keys_crypto::mint::sign(&claims, Some(&kid), &ec_pem, keys_crypto::Algorithm::Es256)
            .map_err(|error| anyhow!("{error}"))
    })?;
    progress(&format!("  signed {} tokens in {seconds:.1} s", tokens.len()));
    let bodies: Vec<Bytes> = tokens
        .into_iter()
        .map(|token| Bytes::from(json!({"api_key": public_value, "user_token": token}).to_string()))
        .collect();
    // A few requests first, so that connections and buffers are in `before`.
    let split = 1_000.min(bodies.len());
    let first = Arc::new(bodies[..split].to_vec());
    let make = load::requests(server.addr, &server.token, "POST", "/v1/verify/public_key/", Bodies::Each(first));
    closed(&server, options.concurrency, Duration::from_secs(60), &make, Expect::valid(), false).await?;
    let before = server.memory_kib()?;
    let rest = Arc::new(bodies[split..].to_vec());
    drop(bodies);
    let make = load::requests(server.addr, &server.token, "POST", "/v1/verify/public_key/", Bodies::Each(rest));
    let run = closed(&server, options.concurrency, Duration::from_secs(600), &make, Expect::valid(), false).await?;
    let after = server.memory_kib()?;
    progress(&format!(
        "  RSS {:.1} MiB before, {:.1} MiB after {} more verifications ({:.0}/s)",
        before.rss_kib as f64 / 1024.0,
        after.rss_kib as f64 / 1024.0,
        run.ok,
        run.rps
    ));
    results.warm_memory = WarmMemory { entries, before, after, verify_rps: run.rps };
    Ok(())
}

/// Verifications per second of keys-crypto on one thread, cycling through
/// `tokens` for `window` each: with the key parsed once, and with
/// `VerificationKey::from_pem` per token as keysd does.
async fn library_verify_rates(
    algorithm: keys_crypto::Algorithm,
    public_pem: String,
    tokens: &[String],
    window: Duration,
) -> Result<(f64, f64)> {
    let sample: Vec<String> = tokens.iter().take(4_000).cloned().collect();
    tokio::task::spawn_blocking(move || -> Result<(f64, f64)> {
        let now = time::OffsetDateTime::now_utc();
        let key = keys_crypto::VerificationKey::from_pem(algorithm, &public_pem).map_err(|error| anyhow!("{error}"))?;
        let rate = |parse_each: bool| -> Result<f64> {
            let started = Instant::now();
            let mut done = 0u64;
            while started.elapsed() < window {
                let token = &sample[(done as usize) % sample.len()];
                let parsed;
                let key = if parse_each {
                    parsed = keys_crypto::VerificationKey::from_pem(algorithm, &public_pem)
                        .map_err(|error| anyhow!("{error}"))?;
                    &parsed
                } else {
                    &key
                };
                let claims =
                    keys_crypto::jwt::verify(token, key).map_err(|error| anyhow!("in-process verify: {error}"))?;
                // keysd checks the time window after the signature, with
                // keys-core's policy; so does the baseline.
                claims.times().exp.filter(|exp| *exp > now.unix_timestamp()).context("bench token expired")?;
                done += 1;
            }
            Ok(done as f64 / started.elapsed().as_secs_f64())
        };
        Ok((rate(false)?, rate(true)?))
    })
    .await
    .context("library verify baseline")?
}
