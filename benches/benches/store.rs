//! Postgres task store batches (group commit): 512 concurrent submits, then the 512 tasks
//! moved to `working` and to `completed` in one `apply` batch each, on a fresh database.
//! Runs when Postgres is reachable (`BINDU_TEST_DATABASE_URL`, else `DATABASE_URL`, else
//! postgres://postgres@127.0.0.1:5432/postgres); otherwise prints why it is skipped.

use std::time::{Duration, Instant};

use bindu_engine::store::conformance::user_message;
use bindu_engine::store::postgres::test_db::{admin_url, TestDb};
use bindu_engine::store::{Expect, SubmitRequest, TaskStore, TaskUpdate};
use bindu_schemas::TaskState;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const BATCH: usize = 512;

/// host:port of a postgres:// URL, to check reachability without logging credentials.
fn host_port(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let hostpart = rest.split(['/', '?']).next()?;
    let hostpart = hostpart.rsplit_once('@').map_or(hostpart, |(_, h)| h);
    Some(if hostpart.contains(':') {
        hostpart.to_string()
    } else {
        format!("{hostpart}:5432")
    })
}

fn reachable(url: &str) -> Result<(), String> {
    let hp = host_port(url).ok_or("cannot read host:port from the database URL")?;
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&hp)
        .map_err(|e| format!("{hp}: {e}"))?
        .next()
        .ok_or(format!("{hp}: no address"))?;
    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map(|_| ())
        .map_err(|e| format!("{hp}: {e}"))
}

fn store(c: &mut Criterion) {
    let admin = admin_url();
    if let Err(why) = reachable(&admin) {
        println!("store bench skipped: Postgres is not reachable ({why}); set BINDU_TEST_DATABASE_URL or DATABASE_URL");
        return;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("runtime: {e}"),
    };
    let (db, store) = rt.block_on(async {
        let db = TestDb::new().await;
        let store = db.store("bench").await;
        (db, store)
    });
    let mut g = c.benchmark_group("postgres_store");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    let mut round = 0u64;
    g.bench_function("submit_working_completed_512_tasks", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    round += 1;
                    let submits = (0..BATCH).map(|i| {
                        store.submit(
                            SubmitRequest::new(format!("t{round}-{i}"), user_message("hello"))
                                .in_context(format!("c{round}-{i}")),
                        )
                    });
                    let ids: Vec<String> = futures::future::join_all(submits)
                        .await
                        .into_iter()
                        .map(|r| r.expect("submit").task.id)
                        .collect();
                    for (from, to) in [
                        (TaskState::Submitted, TaskState::Working),
                        (TaskState::Working, TaskState::Completed),
                    ] {
                        let updates = ids
                            .iter()
                            .map(|id| {
                                TaskUpdate::new(id.clone(), Expect::State(from)).status(to, None)
                            })
                            .collect();
                        for r in store.apply(updates).await {
                            r.expect("transition");
                        }
                    }
                }
                start.elapsed()
            })
        })
    });
    g.finish();
    drop(store);
    drop(db);
}

criterion_group!(benches, store);
criterion_main!(benches);
