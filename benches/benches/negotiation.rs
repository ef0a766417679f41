//! One negotiation answer without embeddings: the request read and checked, the
//! assessment against the example skills (`examples/skills/`, Bindu's shapes), the id of the
//! best skill issued and the answer serialised, which is all `POST /agent/negotiation` does
//! besides HTTP and reading the queue depth (a counter on the memory bus). Also with 50
//! skills, and with a 10,000-character task (the longest accepted).

use bindu_ingress::negotiation::{request, NegotiationConfig, Negotiator};
use bindu_ingress::options::AgentConfig;
use bindu_ingress::skills::{Skill, SkillSource, Skills};
use criterion::{black_box, criterion_group, criterion_main, Criterion};

const ASK: &str = r#"{"task_summary":"Extract the line items table from this scanned invoice","task_details":"The invoice tables span two pages; return JSON.","input_mime_types":["application/pdf"],"output_mime_types":["application/json"],"max_latency_ms":4000,"required_tools":["Read"],"min_score":0.2}"#;

fn examples() -> Vec<SkillSource> {
    ["pdf-processing", "question-answering", "translation"]
        .iter()
        .map(|s| {
            SkillSource::Path(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../examples/skills")
                    .join(s),
            )
        })
        .collect()
}

fn negotiator(skills: Vec<SkillSource>) -> Negotiator {
    let agent = AgentConfig {
        skills,
        ..AgentConfig::default()
    };
    let skills = Skills::load(&agent).expect("the example skills load");
    let config = NegotiationConfig {
        enabled: true,
        ..NegotiationConfig::default()
    };
    Negotiator::new(&config, &skills, [7; 32], None)
}

fn answer(rt: &tokio::runtime::Runtime, n: &Negotiator, body: &[u8]) -> Vec<u8> {
    let task = request::parse(body, n.weights()).expect("a valid request");
    let answer = rt.block_on(n.answer(&task, 3));
    serde_json::to_vec(&answer).expect("serialisable")
}

fn negotiation(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut g = c.benchmark_group("negotiation");

    let three = negotiator(examples());
    assert!(
        String::from_utf8_lossy(&answer(&rt, &three, ASK.as_bytes())).contains("\"accepted\":true")
    );
    g.bench_function("answer_3_skills", |b| {
        b.iter(|| black_box(answer(&rt, &three, black_box(ASK.as_bytes()))))
    });

    let mut many = examples();
    for i in 0..47 {
        many.push(SkillSource::Inline(Box::new(
            Skill::new(
                &format!("skill-{i}"),
                &format!("skill {i}"),
                "A generated skill",
            )
            .tags(&["generated", "filler"])
            .keywords(&["alpha", "beta", "gamma", "delta", "epsilon"]),
        )));
    }
    let fifty = negotiator(many);
    g.bench_function("answer_50_skills", |b| {
        b.iter(|| black_box(answer(&rt, &fifty, black_box(ASK.as_bytes()))))
    });

    let words = "invoice tables extraction from scanned pages ";
    let long = serde_json::json!({
        "task_summary": words.repeat(10_000 / words.len()),
        "input_mime_types": ["application/pdf"],
    })
    .to_string();
    g.bench_function("answer_10000_character_task", |b| {
        b.iter(|| black_box(answer(&rt, &three, black_box(long.as_bytes()))))
    });
    g.finish();
}

criterion_group!(benches, negotiation);
criterion_main!(benches);
