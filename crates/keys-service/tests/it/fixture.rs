//! The service every test here starts from: a fresh SQLite file, the
//! test's clock at [`T0`], seeded entropy, bootstrapped once.

use std::sync::Arc;

use keys_service::{Caller, Clock, Service, ServiceConfig};
use keys_testkit::{SeededEntropy, TestClock, TestDb};

pub const T0: i64 = 1_800_000_000;

pub struct Fixture {
    pub service: Arc<Service>,
    pub clock: Arc<TestClock>,
    pub caller: Caller,
    pub _directory: TestDb,
}

pub async fn fixture() -> Fixture {
    fixture_with(ServiceConfig { rsa_pool_capacity: 0, ..ServiceConfig::default() }, 7).await
}

/// A service on a fresh SQLite file with `config`, the test's clock at
/// [`T0`] and entropy seeded with `seed`, bootstrapped once.
pub async fn fixture_with(config: ServiceConfig, seed: u64) -> Fixture {
    let directory = TestDb::sqlite();
    let store = keys_store::open(directory.url()).await.expect("store opens");
    let clock = Arc::new(TestClock::at(T0));
    let entropy = Arc::new(SeededEntropy::new(seed));
    let service = Service::with_sources(store, config, Arc::clone(&clock) as Arc<dyn Clock>, entropy);
    let bootstrapped = service.bootstrap_if_empty().await.expect("bootstrap").expect("an empty database");
    assert!(service.bootstrap_if_empty().await.expect("second bootstrap").is_none(), "bootstraps once");
    let caller = service.authenticate(bootstrapped.token.expose()).await.expect("lookup").expect("token is valid");
    Fixture { service: Arc::new(service), clock, caller, _directory: directory }
}
