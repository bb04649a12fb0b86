//! Inline RSA generation is bounded: however many organisation keys are
//! created at once with the pool empty, at most
//! `rsa_max_concurrent_generations` keys are generated at the same time,
//! and every create still completes.

use std::sync::Arc;

use keys_core::Name;
use keys_service::{Service, ServiceConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_wait_for_a_generation_permit() {
    let db = keys_testkit::TestDb::sqlite();
    let store = db.store().await;
    let config = ServiceConfig { rsa_pool_capacity: 0, rsa_max_concurrent_generations: 1, ..ServiceConfig::default() };
    let service = Arc::new(Service::new(store, config));
    let bootstrapped = service.bootstrap_if_empty().await.expect("bootstrap").expect("an empty database");
    let caller = service.authenticate(bootstrapped.token.expose()).await.expect("lookup").expect("valid");
    let organisation = bootstrapped.organisation.id.to_string();

    let creates: Vec<_> = (0..4)
        .map(|index| {
            let service = Arc::clone(&service);
            let caller = caller.clone();
            let organisation = organisation.clone();
            tokio::spawn(async move {
                let name = Name::parse(&format!("key-{index}")).expect("name");
                service.create_organisation_key(&caller, &organisation, name).await.expect("created")
            })
        })
        .collect();
    // Each generation takes a good part of a second: sample until all four
    // are done. Without the bound, four run at once.
    let mut most = 0;
    while !creates.iter().all(tokio::task::JoinHandle::is_finished) {
        most = most.max(service.rsa_generations_in_flight());
        tokio::task::yield_now().await;
    }
    for create in creates {
        create.await.expect("joined");
    }
    assert_eq!(most, 1, "one generation at a time, and at least one was seen");
    assert_eq!(service.list_organisation_keys(&caller, &organisation).await.expect("list").len(), 4);
}
