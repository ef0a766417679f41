//! NATS JetStream bus throughput: publish a batch of task commands (acks in flight
//! together), consume them through the workers' pull consumer and ack each one. Runs against
//! `NATS_URL` when it is set and reachable, else against a private nats-server (file storage,
//! temporary directory) when the binary is installed; otherwise prints why it is skipped.

use std::time::{Duration, Instant};

use bindu_engine::bus::conformance::command;
use bindu_engine::bus::nats_server::NatsServer;
use bindu_engine::bus::{Bus, NatsBus, NatsOptions};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures::StreamExt;

const BATCH: usize = 1000;

/// `NATS_URL` when it answers, else a private server; `None` (with the reason printed) when
/// neither is possible.
fn server() -> Option<(String, Option<NatsServer>)> {
    if let Ok(url) = std::env::var("NATS_URL") {
        let hostport = url.trim_start_matches("nats://").to_string();
        let reachable = std::net::ToSocketAddrs::to_socket_addrs(&hostport)
            .ok()
            .and_then(|mut a| a.next())
            .is_some_and(|a| {
                std::net::TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok()
            });
        if reachable {
            return Some((url, None));
        }
        println!("bus bench: NATS_URL={url} is not reachable; trying a private nats-server");
    }
    if bindu_engine::bus::test_server::binary::<bindu_engine::bus::nats_server::Nats>().is_none() {
        println!("bus bench skipped: no NATS_URL reachable and no nats-server binary (install nats-server or set NATS_SERVER_BIN)");
        return None;
    }
    let server = NatsServer::start();
    Some((server.url(), Some(server)))
}

fn bus(c: &mut Criterion) {
    let Some((url, _server)) = server() else {
        return;
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => panic!("runtime: {e}"),
    };
    let subject = format!("bench{}", std::process::id());
    let bus = match rt.block_on(NatsBus::connect(NatsOptions::new(url, subject))) {
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
