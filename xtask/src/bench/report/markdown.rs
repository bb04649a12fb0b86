//! `BENCHMARKS.md`: the run and the machine, the table of figures, server
//! CPU per request, and how each figure is measured.

use super::row::{thousands, Row, Stamp};
use crate::bench::figures::{
    backlog_events, Results, BURST_TIMES, DEFAULT_IN_FLIGHT, GRANTED_CREDITS, OVERLOAD, RSA_POOL_SIZE, SHARED_LIMIT,
    SHARED_SECONDS, WIDE_IN_FLIGHT, WRITER_KEYS, WRITER_LEAD, WRITER_RATE,
};
use crate::bench::Options;
use std::fmt::Write as _;

pub(super) fn markdown(options: &Options, results: &Results, rows: &[Row], stamp: &Stamp) -> String {
    let Stamp { date, commit, elapsed } = stamp;
    let mode = if options.quick { "quick (`cargo xtask bench --quick`)" } else { "full (`cargo xtask bench`)" };
    let machine = &results.machine;

    let mut md = String::new();
    let _ = writeln!(md, "# keysd benchmarks\n");
    let _ = writeln!(
        md,
        "Written by `cargo xtask bench` (xtask/src/bench/); do not edit by hand, run it again. \
         The machine-readable twin is [`benchmarks.json`](benchmarks.json).\n"
    );
    let _ = writeln!(
        md,
        "- **Run:** {date}, {mode}, commit `{commit}`, keysd binary built {}, {:.0} s in all.",
        results.keysd_built,
        elapsed.as_secs_f64()
    );
    let _ = writeln!(
        md,
        "- **Machine:** {} cores ({}), {} MiB RAM, Linux {}, load average {} before the run. Servers, PostgreSQL \
         and the load generator share it (and so may anything else running there: per-run figures are in the JSON).",
        machine.cores, machine.cpu, machine.memory_mib, machine.kernel, machine.loadavg_before
    );
    let _ = writeln!(
        md,
        "- **Method:** every figure is the median of {runs} runs of {secs} s (key creation: {runs} runs of {steady} s at \
         {rate} req/s, then a burst of {burst}), after an unmeasured warm-up. Each baseline is measured in the same \
         invocation, run for run beside its figure (hello and keysd, pgbench and keysd alternate), and ratios are the \
         median of the per-run ratios. Latency is per request, from send to the last body byte, nearest-rank percentiles.",
        runs = options.runs,
        secs = options.duration.as_secs(),
        steady = options.steady_duration.as_secs(),
        rate = options.rate,
        burst = options.burst
    );
    let _ = writeln!(
        md,
        "- **Load generator:** the in-repo tokio + hyper HTTP/1.1 client (`xtask/src/bench/load.rs`), {} thread(s), \
         keep-alive connections on 127.0.0.1; closed loop for throughput, open loop (fixed schedule) for the steady \
         key creation. keysd runs its default configuration (release build, `info` logs to a file) but for a cap of 10^8 keys per workspace, which figures 5 and 8 pass.\n",
        options.client_threads
    );
    let _ = writeln!(md, "| # | figure | keysd (median) | baseline, same run (median) | ratio | target | met |");
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    for row in rows {
        let _ = writeln!(md, "| {} |", row.cells().join(" | "));
    }
    let _ = writeln!(md, "\n## Server CPU per request\n");
    let _ = writeln!(
        md,
        "keysd's CPU time over a run divided by the requests it answered (median of runs); the machine has {} cores.\n",
        machine.cores
    );
    for (label, series) in [
        ("hello (baseline of figure 1)", &results.hello),
        ("API-key verification, SQLite", &results.verify_sqlite),
        ("API-key verification, PostgreSQL (plus PostgreSQL's own CPU)", &results.verify_postgres),
        ("API-key verification, PostgreSQL, an imported foreign-format key", &results.verify_postgres_foreign),
        ("API-key verification, PostgreSQL, usage counting off", &results.verify_postgres_uncounted),
        ("cold ES256 verification, PostgreSQL", &results.jwt_es256.series),
        ("cold RS256 verification, PostgreSQL", &results.jwt_rs256.series),
        ("warm ES256 verification, PostgreSQL", &results.jwt_es256_warm),
        ("warm RS256 verification, PostgreSQL", &results.jwt_rs256_warm),
        ("API-key create, PostgreSQL", &results.writes_keysd),
        ("API-key verification, PostgreSQL, a metered key (figure 10)", &results.metering.metered),
        ("API-key verification, PostgreSQL, an unmetered key (figure 10's baseline)", &results.metering.unmetered),
        ("API-key verification, PostgreSQL, beside a busy webhook deliverer (figure 11c)", &results.webhooks.busy),
        (
            "API-key verification, PostgreSQL, beside an idle webhook deliverer (figure 11c's baseline)",
            &results.webhooks.idle,
        ),
    ] {
        let _ = writeln!(
            md,
            "- {label}: {:.0} µs ({:.2} cores busy at {} req/s)",
            series.cpu_us_per_request(),
            series.server_cores(),
            thousands(series.rps())
        );
    }
    for (label, jwt) in [("ES256", &results.jwt_es256), ("RS256", &results.jwt_rs256)] {
        let _ = writeln!(
            md,
            "- {label} signature check alone in keys-crypto (`VerificationKey::from_pem` + `jwt::verify`): {:.0} µs",
            1e6 / jwt.library_pem_verify_per_s
        );
    }
    let _ = writeln!(md, "\n## How each figure is measured\n");
    let _ = writeln!(
        md,
        "1. `POST /v1/verify/api_key/` with one valid key (every answer checked for `\"valid\":true`), against keysd on \
         SQLite and on PostgreSQL; the baseline is `xtask bench-hello`, a minimal hyper 1 server built like keysd's \
         (hyper-util auto builder, multi-threaded tokio) that reads the body and answers a small JSON, sent the same \
         request by the same load generator. keysd runs its defaults, so it records `last_used_at` and counts \
         every verification per key and outcome in memory, both written every 60 s.\n\
         2. A fresh PostgreSQL database and keysd; synthetic rows are bulk-inserted into `api_keys` with SQL (unique \
         SHA-256 digests, store-shaped ids), then `VACUUM ANALYZE`; one real key created through the API is verified. \
         The 1,000-key level is the baseline.\n\
         3. Every token is distinct (own `jti` and subject), signed before the run by the bench (keys-crypto): ES256 \
         user tokens (`kid` = the workspace signing key) through `/v1/verify/public_key/` with a secure-mode public key, \
         RS256 tokens (`iss = https://versori.com/sk/<key id>`) through `/v1/verify/jwt/`. A run ends after its \
         duration or when its tokens run out. The bound is `openssl speed` single-core verify/s times the machine's \
         cores; \"busy cores\" is keysd's CPU time over the run's wall time (from `/proc/PID/stat`). The in-process \
         keys-crypto rates split the crypto library's cost from the service's.\n\
         4. Only the create request is timed. A workspace holds one active signing key, so each create is followed by \
         an (untimed) delete in one of {slots} workspaces; organisation keys are deleted after each create too. The \
         baseline is the key generation alone, in the bench process.\n\
         5. `POST /v1/staging/ws_api_key/` with distinct names from {w} keep-alive connections, alternating with \
         `pgbench -n -c {w} -T {secs} -f insert.sql` (`INSERT INTO bench_scratch (v) VALUES (md5(random()::text))`, an \
         identity primary key) on the same database. On PostgreSQL a create is one autocommit statement that locks \
         its workspace's API-key count row for that statement and its commit; the diagnostic row spreads the same \
         creates over one workspace per client.\n\
         6. `VmRSS`/`VmHWM` from `/proc/PID/status`: idle is one second after start (bootstrap done, no request yet); \
         loaded is the largest `VmRSS` seen at the end of a figure's load.\n\
         7. A fresh PostgreSQL database and keysd; synthetic events of the bootstrap organisation are bulk-inserted \
         into `audit_events` with SQL (as the pipeline writes them), then `VACUUM ANALYZE`; each run asks for the \
         newest page of 50. The 1,000-event level is the baseline. 7b runs `keysd audit export` of the largest trail \
         to a line counter and reads its `VmHWM` every 20 ms until it exits.\n\
         8. The bench generates {import_keys} keys of another system's format (`sk_live_` and 32 random \
         alphanumerics) into an NDJSON file, one `{{\"key\": …, \"name\": …}}` a line, and the rows keysd stores \
         for them (a store-shaped id, a workspace uid, the SHA-256 digest as `bytea`, the mask, the name, a \
         creation time) into a CSV file. Each run ({import_runs} in all) has a fresh PostgreSQL database \
         bootstrapped by `keysd serve`, which is then stopped; a `CHECKPOINT` precedes each timed command. The baseline is `psql \
         \\copy` of the CSV into a scratch table of the same database with `api_keys`' main columns (`id`, \
         `workspace_uid`, `digest`, `masked`, `name`, `created_at`), its primary key, unique digest and listing \
         index, but not its count triggers; then `keysd import --org ORG --workspace staging FILE` of the NDJSON \
         into the bootstrap's empty workspace, then the same command again over the same file (every key is \
         skipped). Each command is timed whole, from spawn to exit (process start and connecting \
         included), and must print `imported N, skipped M` with the file's counts; a command that fails is \
         reported with what the workspace held when it stopped. The ratio is the median of the per-run ratios of \
         keys/s to COPY's rows/s. 8b is the largest peak resident set of the import over its runs, from {peak}; \
         the baseline is psql's during its `\\copy`, read the same way.\n",
        slots = options.burst.max(8),
        import_keys = thousands(options.import_keys as f64),
        import_runs = options.import_runs,
        peak = results.import.peak_method,
        w = options.write_concurrency,
        secs = options.duration.as_secs()
    );
    let _ = writeln!(
        md,
        "Added for issue 15:\n\n\
         - 1e. keysd's CPU per request (figures 1 and 3) against the floor of one request: hello's CPU per request \
         (the same load generator, the same requests) plus the crypto alone, `openssl speed`'s single-core time per \
         verify for JWTs and an in-process SHA-256 of the key for API keys.\n\
         - 3c. {warm} tokens of each kind from figure 3, cycled over {c} connections, so each is verified cold once \
         and then again and again from the warm path; each keysd run is beside a hello run sent the same requests.\n\
         - 3d. A keysd on SQLite with `--verified-token-cache-entries` as large as the figure; after 1,000 tokens \
         (connections and buffers warm) its `VmRSS` is read, then every other token is verified once, and `VmRSS` is \
         read again.\n\
         - 4, organisation keys: after each burst and before the next, the bench waits for keysd's pool of \
         {pool} to refill (one thread by default, `--rsa-pool-threads`), then creates {pool} at once; the steady 1/s \
         runs follow.\n",
        warm = 64,
        c = options.concurrency,
        pool = RSA_POOL_SIZE
    );
    let _ = writeln!(
        md,
        "Added for issue 25:\n\n\
         - 1f. A key of another system's format (`sk_live_` and 32 random alphanumerics) imported through the \
         API (`POST /v1/staging/ws_api_key/import/`) into the workspace of figure 1's PostgreSQL key, then \
         `POST /v1/verify/api_key/` with it (every answer checked for `\"valid\":true`) from {c} connections; \
         each run comes right before figure 1's PostgreSQL run with the keysd-format key (`SS.…`, made by a create) \
         on the same server, its baseline, and the ratio is the median of the per-run ratios.\n",
        c = options.concurrency
    );
    let usage = &results.usage_query;
    let _ = writeln!(
        md,
        "Added for issue 24:\n\n\
         - 1g. Figure 1's PostgreSQL verification (usage counted, keysd's default: every verification counted per \
         key and outcome in memory, written every 60 s) beside the same on a keysd with `--usage-interval-seconds 0` \
         (no counting per key), on a database of its own, from {c} connections; the runs alternate in the same \
         rounds as figure 1's, and the ratio is the median of the per-run ratios.\n\
         - 9. A fresh PostgreSQL database and keysd; one API key created through the API, and its rows written \
         into `usage_counts` with SQL: every hour of the 30 days before the current hour, under two outcomes \
         (`valid`, `origin_not_allowed`), {per_answer} rows. Then `VACUUM ANALYZE`, and `GET \
         /v1/staging/usage/?granularity=hour&key_id=<id>&since={since}&until={until}` from 1 connection (every \
         answer checked to hold {per_answer} rows): that is the baseline, the key's rows alone in the table. Then \
         {synthetic} synthetic keys' hourly rows are bulk-inserted with SQL `generate_series` (store-shaped ids, \
         1,000 keys to a workspace, each key counted `valid` in 4 hours of every day of the same 30 days, 120 rows a \
         key), `VACUUM ANALYZE` again, and the same query is measured again. The ratio is of the p99s. The target \
         is for 100,000 keys (12,001,320 rows); a smaller table (`--quick`, `--usage-keys`) reports it as not \
         measured.\n\
         - 9b. A fresh PostgreSQL database and a keysd with `--usage-interval-seconds 1`; {active} API keys \
         (`sk_live_` and 32 random alphanumerics) imported through `POST /v1/staging/ws_api_key/import/`, 1,000 a \
         call. Measured: each key verified once (`POST /v1/verify/api_key/` from {c} connections, every answer \
         checked for `\"valid\":true`), then the bench waits until the minute rows' counts add up to the \
         verifications, and two intervals more; the rows added to `usage_counts` and the growth of \
         `pg_total_relation_size('usage_counts')` (the table with its indexes), from before the verifications to \
         then, give the rows per key (one bucket of each width: a minute, an hour, a day) and the bytes per row. \
         Computed, not measured: for {keys} keys each verified once a minute with one outcome, the rows each \
         minute's write touches ({keys} × the rows per key: a new minute row and the hour's and day's rows, \
         which are added to after their first minute), the rows added a day ({keys} × 1,465: 1,440 minutes, 24 \
         hours, a day) and their bytes at the measured bytes per row, and the rows and bytes held once keysd's \
         default retention (48 h of minutes, 90 days of hours, 730 days of days) prunes as much as it adds \
         ({keys} × 5,770). Not in the bytes: the dead row versions the updates of hour and day rows leave until \
         autovacuum reclaims them, and `usage_batches` (a row per write).\n",
        c = options.concurrency,
        per_answer = thousands(usage.rows_per_answer as f64),
        since = if usage.since.is_empty() { "…" } else { &usage.since },
        until = if usage.until.is_empty() { "…" } else { &usage.until },
        synthetic = thousands(options.usage_keys.saturating_sub(1) as f64),
        active = thousands(options.usage_active_keys as f64),
        keys = thousands(super::usage::ACTIVE_KEYS as f64),
    );
    let _ = writeln!(
        md,
        "Added for metering (figure 10, docs/METERING.md):\n\n\
         - 10. A fresh PostgreSQL database and keysd (its defaults); two keys created through the API: a metered \
         one, with one auto-applied rate limit of 1,000,000,000 per 1 s (so it never refuses, and every \
         verification takes a token) and a balance of 10¹² credits, and an unmetered one. Each answer is checked \
         once for its shape (the metered key's names its limit and balance, the unmetered key's neither); that \
         keysd is stopped and a second one started on the same database (see 10b), then `POST \
         /v1/verify/api_key/` with each key (every answer checked for `\"valid\":true`) from {c} connections, \
         after a warm-up of each; the runs alternate in the same rounds, the metered key's first, and the ratio is \
         the median of the per-run ratios.\n\
         - 10b. The transactions committed in figure 10's database (`xact_commit` of `pg_stat_database`) and the \
         rows inserted and updated in `meters` and `ratelimit_counters` (`n_tup_ins + n_tup_upd` of \
         `pg_stat_user_tables`) over the life of the keysd that served figure 10's warm-ups and runs, divided by \
         the metered verifications it admitted. A backend reports its statistics at a commit a second or more \
         after its last report, 10 s after it went idle, or when it exits, so a read after a sleep misses what \
         idle connections hold: the keys are therefore created through a first keysd, which is stopped before \
         the first read, and the runs go to a second keysd on the same database (it does not bootstrap), stopped \
         gracefully before the second read. The transactions are an upper bound: they include that keysd's \
         start-up and shutdown, the unmetered key's runs, and every writer of keysd (`last_used_at`, usage \
         counts, the hand-back of idle slices and expired batches).\n\
         - 10c. A fresh keysd on SQLite; {mk} unmetered and {mk} metered keys (the limit and balance of 10) created \
         through the API by 16 concurrent creators, then each unmetered key verified once (`Bodies::Each`, {c} \
         connections), then each metered key; `VmRSS` is read before, between and after. Bytes per metered key is \
         the growth over the metered keys' verifications divided by their number; the unmetered keys' growth \
         (what any verified key holds: the key cache, usage counters) is its baseline, and the difference \
         metering's own share.\n\
         - 10d. A fresh PostgreSQL database, a keysd that bootstraps it and a second keysd on the same database \
         (it does not bootstrap; the first's service token is used on both). (i) A key limited to {l} per {d} s \
         (created on the first), verified by an open loop at {rate:.0} req/s ({o:.0}× the limit) for {windows} \
         windows, request n sent to replica n mod 2 through a pooled client; every answer must be `valid:true` \
         or `valid:false` with `reason` `rate_limited`. w is the run's length (first request to last answer), \
         D = {d} s, h = D/20 capped at 1 s (keysd's lease horizon); the admitted count is reported against one \
         counter's bound L·(w+D)/D and, with the target, against the bound across replicas L·(w+h+D)/D. (ii) A \
         fresh key of the same limit (a full bucket), created on the second; {burst} verifications sent as fast as \
         {half} keep-alive connections to each replica (opened before) take them; the admitted count over L, \
         target 1 + h/D (the refill during the burst's w is not in it; the bound over the burst's length is shown \
         beside it). (iii) A key with a balance of {granted} credits and no limit, verified from {half} connections \
         to each replica back to back until no verification was admitted for 3 s (and some were refused \
         `usage_exceeded`); the admitted count over the credits granted: never above 1 (credits are never \
         oversold), and at least 0.99 (slices handed back reach the other replica).\n",
        c = options.concurrency,
        mk = thousands(crate::bench::figures::memory_keys(options.quick) as f64),
        l = thousands(SHARED_LIMIT as f64),
        d = SHARED_SECONDS,
        rate = OVERLOAD * SHARED_LIMIT as f64 / SHARED_SECONDS as f64,
        o = OVERLOAD,
        windows = crate::bench::figures::steady_windows(options.quick),
        burst = thousands((BURST_TIMES * SHARED_LIMIT) as f64),
        half = (options.concurrency / 2).max(1),
        granted = thousands(GRANTED_CREDITS as f64),
    );
    let _ = writeln!(
        md,
        "Added for webhooks (figure 11, docs/WEBHOOKS.md):\n\n\
         - The receiver: a minimal hyper HTTP/1.1 server in the bench process, on a thread of its own (its own \
         tokio runtime, apart from the load generator's), that reads each request and answers 200 with no body, \
         counting the requests and the distinct `webhook-id`s. Every keysd of the figure runs with \
         `--webhook-allow-private-destinations` (its endpoints are `http://127.0.0.1:…/hook`); keysd opens a \
         connection per attempt.\n\
         - 11a. A fresh PostgreSQL database; a keysd bootstraps it and makes one endpoint subscribed to `[\"*\"]`, \
         then stops once the endpoint's own creation was delivered. For `--webhook-in-flight-per-endpoint` {f1} \
         (keysd's default) and {f2}, and for one and two replicas (`keysd serve` on that database, the bound on \
         each), the bench inserts {events} audit events with SQL in one statement (one transaction, as the \
         pipeline writes them, `api_key.generated`), so that the database's trigger writes one delivery each while \
         the replicas run; the time is from that statement's return (its commit) to the receiver's first request \
         bearing the last new `webhook-id` (it includes the deliverer's wait for its next poll, at most 250 ms). \
         Deliveries/s is the events over that time; duplicates are the requests beyond one per `webhook-id`; the \
         deliveries' states and attempts are read from the database afterwards. The two-replica rows are beside \
         the one-replica row at the same bound; no target but every event delivered once.\n\
         - 11b. A fresh keysd on PostgreSQL (a database of its own), then one on SQLite; one API key whose name is \
         PATCHed (`PATCH /v1/staging/ws_api_key/<id>/`, 202, one `api_key.updated` event each) back to back from \
         one connection; the runs alternate: no endpoint, then one endpoint subscribed to `[\"*\"]` (made just \
         before the run; after it, disabled, and deleted once none of its deliveries is claimed), so the same \
         process delivers the PATCHes of those runs meanwhile. The ratios are the medians of the per-run ratios \
         of p50 and of p99; the deliveries the receiver had during those runs and the deliveries pending at their \
         ends say whether the deliverer kept up.\n\
         - 11c. The PostgreSQL keysd of 11b; `POST /v1/verify/api_key/` with one valid key from {c} connections (as figure 1), \
         while a writer PATCHes {keys} other keys in turn at {rate:.0}/s (open loop, from {lead} ms before the run \
         to just after it); the runs alternate, in the same rounds: one endpoint subscribed to `[\"*\"]` (the \
         deliverer busy delivering every PATCH; made before the run, removed after it as in 11b), then none (the \
         deliverer idle, the same PATCHes). The receiver works in the bench process in the busy runs only. The \
         ratio is the median of the per-run ratios; the events the receiver had during the busy runs' \
         verifications, and the deliveries pending at their ends, are reported beside it.\n",
        f1 = DEFAULT_IN_FLIGHT,
        f2 = WIDE_IN_FLIGHT,
        events = thousands(backlog_events(options.quick) as f64),
        c = options.concurrency,
        keys = WRITER_KEYS,
        rate = WRITER_RATE,
        lead = WRITER_LEAD.as_millis(),
    );
    let _ = writeln!(md, "Nothing in the test suite asserts a time; these figures are only reported.");
    md
}
