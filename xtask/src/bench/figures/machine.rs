//! The machine the figures ran on and the crypto floors they are read
//! against: `openssl speed`'s single-core verify rates and SHA-256 of an
//! API key in this process.

use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};

use super::results::{Machine, OpenSsl};

pub(super) fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|line| line.starts_with("model name"))
        .and_then(|line| line.split_once(':'))
        .map_or_else(|| "unknown CPU".to_owned(), |(_, name)| name.trim().to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_mib = meminfo
        .lines()
        .find(|line| line.starts_with("MemTotal:"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<u64>().ok())
        .map_or(0, |kib| kib / 1024);
    Machine {
        cores: std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        cpu,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned(),
        memory_mib,
        loadavg_before: loadavg(),
    }
}

/// The first three fields of `/proc/loadavg`.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

pub(super) async fn openssl_speed(seconds: u32) -> Result<OpenSsl> {
    let version = tokio::process::Command::new("openssl").arg("version").output().await.context("running openssl")?;
    let output = tokio::process::Command::new("openssl")
        .args(["speed", "-seconds", &seconds.to_string(), "ecdsap256", "rsa2048"])
        .stderr(std::process::Stdio::null())
        .output()
        .await
        .context("running openssl speed")?;
    if !output.status.success() {
        bail!("openssl speed failed ({})", output.status);
    }
    let text = String::from_utf8_lossy(&output.stdout);
    Ok(OpenSsl {
        version: String::from_utf8_lossy(&version.stdout).trim().to_owned(),
        seconds,
        ecdsap256_verify_per_s: parse_openssl_verify(&text, "ecdsa (nistp256)")?,
        rsa2048_verify_per_s: parse_openssl_verify(&text, "rsa 2048 bits")?,
    })
}

/// The `verify/s` column of the row naming `row`, read against the header
/// line above it (columns are right-aligned; OpenSSL 3.x may add encrypt /
/// decrypt columns).
pub fn parse_openssl_verify(output: &str, row: &str) -> Result<f64> {
    let mut header: Vec<&str> = Vec::new();
    for line in output.lines() {
        if line.contains("verify/s") {
            header = line.split_whitespace().collect();
        } else if line.contains(row) && !header.is_empty() {
            let from_end = header.len() - header.iter().position(|column| *column == "verify/s").unwrap_or(0);
            let fields: Vec<&str> = line.split_whitespace().collect();
            let field =
                fields.get(fields.len().wrapping_sub(from_end)).ok_or_else(|| anyhow!("short openssl row {line:?}"))?;
            return field.parse().with_context(|| format!("openssl verify/s of {row}: {field:?}"));
        }
    }
    bail!("openssl speed printed no {row} row:\n{output}")
}

/// SHA-256 of an API key-sized string in this process, µs per digest: the
/// crypto of an API-key verification.
pub(super) fn sha256_floor() -> f64 {
    let rounds = 200_000u32;
    let keys: Vec<String> =
        (0..16).map(|index| format!("sk_live_0123456789abcdefghijklmnopqrstuvwxyzABCD_{index:04}")).collect();
    let started = Instant::now();
    let mut sink = 0u8;
    for round in 0..rounds {
        let key = &keys[(round % 16) as usize];
        sink ^= keys_crypto::secret::sha256_digest(std::hint::black_box(key.as_bytes())).as_bytes()[0];
    }
    std::hint::black_box(sink);
    started.elapsed().as_secs_f64() * 1e6 / f64::from(rounds)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPENSSL_30: &str = "\
                  sign    verify    sign/s verify/s
rsa 2048 bits 0.000768s 0.000024s   1302.6  41467.3
                              sign    verify    sign/s verify/s
 256 bits ecdsa (nistp256)   0.0000s   0.0001s  37300.0  12925.0
";

    const OPENSSL_35: &str = "\
                   sign    verify    encrypt   decrypt   sign/s verify/s  encr./s  decr./s
rsa  2048 bits 0.000565s 0.000017s 0.000018s 0.000563s   1770.0  59525.5  56071.4   1776.5
                              sign    verify    sign/s verify/s
 256 bits ecdsa (nistp256)   0.0000s   0.0001s  48000.0  16000.0
";

    #[test]
    fn reads_openssl_verify_rates() {
        assert_eq!(parse_openssl_verify(OPENSSL_30, "rsa 2048 bits").expect("rsa"), 41467.3);
        assert_eq!(parse_openssl_verify(OPENSSL_30, "ecdsa (nistp256)").expect("ec"), 12925.0);
        assert_eq!(parse_openssl_verify(OPENSSL_35, "rsa  2048 bits").expect("rsa"), 59525.5);
        assert_eq!(parse_openssl_verify(OPENSSL_35, "ecdsa (nistp256)").expect("ec"), 16000.0);
        assert!(parse_openssl_verify("nothing", "rsa 2048 bits").is_err());
    }
}
