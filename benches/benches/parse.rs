//! Request parse + validate: the JSON-RPC envelope (-32700/-32600/-32601 checks) and the
//! typed, validated `message/send` params.

use bindu_benches::{MESSAGE_SEND as SEND, MESSAGE_SEND_SNAKE as SNAKE};
use bindu_schemas::jsonrpc::parse_request;
use bindu_schemas::MessageSendParams;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    for (name, body) in [("message_send", SEND), ("message_send_snake_case", SNAKE)] {
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                let req = parse_request(black_box(body.as_bytes())).expect("valid");
                let params: MessageSendParams = req.params().expect("valid params");
                black_box(params);
            })
        });
    }
    g.bench_function("envelope_only_invalid_method", |b| {
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"tasks/explode","params":{}}"#;
        b.iter(|| black_box(parse_request(black_box(body)).is_err()))
    });
    g.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
