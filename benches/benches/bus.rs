//! NATS JetStream bus throughput: publish a batch of task commands (acks in flight
//! together), consume them through the workers' pull consumer and ack each one. Runs
//! against a private nats-server (file storage, temporary directory).

use std::time::{Duration, Instant};

use bindu_engine::bus::conformance::command;
use bindu_engine::bus::nats_server::NatsServer;
use bindu_engine::bus::{Bus, NatsBus, NatsOptions};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures::StreamExt;

const BATCH: usize = 1000;

fn bus(c: &mut Criterion) {
    let server = NatsServer::start();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => panic!("runtime: {e}"),
    };
    let bus = match rt.block_on(NatsBus::connect(NatsOptions::new(server.url(), "bench"))) {
        Ok(b) => b,
        Err(e) => panic!("connect: {e}"),
    };
    let mut consumer = match rt.block_on(bus.consume_commands()) {
        Ok(c) => c,
        Err(e) => panic!("consume: {e}"),
    };
    let mut g = c.benchmark_group("nats_bus");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    let mut round = 0u64;
    g.bench_function("publish_consume_ack_1000_commands", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    round += 1;
                    let commands = (0..BATCH)
                        .map(|i| command(&format!("t{round}-{i}")))
                        .collect();
                    bus.publish_commands(commands).await.expect("publish");
                    let mut acks = Vec::with_capacity(BATCH);
                    for _ in 0..BATCH {
                        let d = consumer.next().await.expect("open").expect("delivery");
                        acks.push(async move { d.acker.ack().await });
                    }
                    for r in futures::future::join_all(acks).await {
                        r.expect("ack");
                    }
                }
                start.elapsed()
            })
        })
    });
    g.finish();
}

criterion_group!(benches, bus);
criterion_main!(benches);
