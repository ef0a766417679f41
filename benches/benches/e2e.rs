//! In-process end to end on the memory backends: a `bindu::start` server (echo handler) on
//! 127.0.0.1, driven over loopback HTTP by 64 keep-alive connections. One iteration is 64
//! concurrent requests: non-blocking `message/send` (accepted tasks/s) and blocking
//! `message/send` (tasks/s through the worker to `completed`). The load generator shares the
//! process and its cores, as it does in the embedded BENCHMARKS.md rows.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bindu::Config;
use bindu_loadtest::http::{RequestFactory, Session};
use bindu_loadtest::rpc::{self, Bodies, Seen};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const CLIENTS: usize = 64;

fn e2e(c: &mut Criterion) {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("runtime: {e}"),
    };
    let dir = std::env::temp_dir().join(format!("bindu-bench-e2e-{}", std::process::id()));
    let config = match Config::from_settings(&[
        ("server.host", "127.0.0.1"),
        ("server.port", "0"),
        ("logging.default_level", "warn"),
        (
            "identity.dir",
            dir.to_str().unwrap_or("/tmp/bindu-bench-e2e"),
        ),
        // Bounded memory however long criterion runs.
        ("storage.memory_max_tasks", "200000"),
    ]) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    let server = rt.block_on(async {
        let handler = bindu::builtin_handler(&config).expect("echo handler");
        bindu::start(config, handler).await.expect("server starts")
    });
    let url = format!("http://{}/", server.local_addr());
    let target = rt
        .block_on(bindu_loadtest::target::resolve(&url, false))
        .expect("loopback target");
    let factory = Arc::new(RequestFactory::new(target.clone(), None, None).expect("factory"));
    let bodies = Arc::new(Bodies::new(format!("bench{}", std::process::id()), None));
    let mut sessions: Vec<Session> = (0..CLIENTS)
        .map(|_| Session::new(target.addr, Duration::from_secs(30)))
        .collect();
    let mut next = 0u64;

    let mut g = c.benchmark_group("e2e_memory");
    g.throughput(Throughput::Elements(CLIENTS as u64));
    g.sample_size(20);
    for (name, blocking) in [
        ("message_send_nonblocking_64_in_flight", false),
        ("message_send_blocking_64_in_flight", true),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let batch = sessions.drain(..).map(|mut s| {
                            next += 1;
                            let req = factory.post(bodies.message(next, Some(blocking)), false);
                            async move {
                                let (status, body) = s.call(req).await.expect("answer");
                                assert_eq!(status, 200);
                                let seen = rpc::parse(&body)
                                    .and_then(|a| a.result)
                                    .map(|i| i.seen())
                                    .expect("a task");
                                if blocking {
                                    assert!(matches!(seen, Seen::Done { ref state } if state == "completed"));
                                }
                                s
                            }
                        });
                        sessions = futures::future::join_all(batch.collect::<Vec<_>>()).await;
                    }
                    start.elapsed()
                })
            })
        });
    }
    g.finish();
    server.shutdown();
}

criterion_group!(benches, e2e);
criterion_main!(benches);
