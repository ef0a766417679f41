#![allow(clippy::unwrap_used)]

use super::*;
use serde_json::json;

fn skill(v: serde_json::Value) -> LoadedSkill {
    LoadedSkill {
        skill: Skill::from_value(v).unwrap(),
        origin: "test".into(),
        documentation: None,
        markdown: None,
        extra: Default::default(),
    }
}

fn scorer() -> Scorer {
    let skills = [
        skill(json!({
            "id": "pdf-v1", "name": "pdf-processing", "description": "Reads PDFs",
            "tags": ["pdf", "documents", "tables"], "input_modes": ["application/pdf"],
            "output_modes": ["text/plain", "application/json"],
            "capabilities_detail": {"table_extraction": {}, "form_filling": {}},
            "allowed_tools": ["Read", "Write"],
            "performance": {"avg_processing_time_ms": 2000},
            "assessment": {"keywords": ["extract", "invoice"], "anti_patterns": ["edit the pdf"],
                           "specializations": [{"domain": "invoice_tables", "confidence_boost": 0.2}]}
        })),
        skill(json!({
            "id": "qa-v1", "name": "question-answering", "description": "Answers",
            "tags": ["qa", "knowledge"], "input_modes": ["text/plain"], "output_modes": ["text/plain"],
            "allowed_tools": ["Search"],
            "performance": {"avg_processing_time_ms": 750},
            "assessment": {"keywords": ["question", "explain", "why"], "anti_patterns": ["stock prices"]}
        })),
    ];
    Scorer::new(skills.iter(), 5000, 0.7, 0.3)
}

fn task(summary: &str) -> Task {
    Task {
        summary: summary.into(),
        weights: Weights::default(),
        ..Task::default()
    }
}

#[test]
fn the_best_skill_comes_first_with_its_reasons() {
    let a = scorer().assess(
        &task("Extract the tables from this invoice (table extraction)"),
        Conditions::default(),
        None,
    );
    assert!(a.accepted, "{a:?}");
    assert_eq!(a.rejection_reason, None);
    assert_eq!(a.skill_matches[0].skill_id, "pdf-v1");
    let reasons = a.skill_matches[0].reasons.join("; ");
    assert!(reasons.contains("tags: tables"), "{reasons}");
    assert!(
        reasons.contains("capabilities: table_extraction"),
        "{reasons}"
    );
    assert!(
        reasons.contains("specialization: invoice_tables"),
        "{reasons}"
    );
    assert_eq!(a.matched_tags, ["tables"]);
    assert_eq!(a.latency_estimate_ms, Some(2000));
    assert_eq!(a.best_skill(), Some("pdf-v1"));
    let sub = a.subscores.unwrap();
    assert_eq!(sub.load, 1.0);
    assert_eq!(sub.cost, 1.0, "free agent");
    assert_eq!(sub.io_compatibility, 1.0);
}

#[test]
fn every_hard_rule_has_its_reason() {
    let s = scorer();
    let cases: Vec<(Task, Rejection)> = vec![
        (
            Task {
                input_types: vec!["audio/wav".into()],
                ..task("x")
            },
            Rejection::InputMimeUnsupported,
        ),
        (
            Task {
                input_types: vec!["application/pdf".into()],
                output_types: vec!["image/png".into()],
                ..task("x")
            },
            Rejection::OutputMimeUnsupported,
        ),
        (
            Task {
                required_tools: vec!["Browser".into()],
                ..task("x")
            },
            Rejection::RequiredToolMissing,
        ),
        (
            Task {
                forbidden_tools: vec!["write".into()],
                ..task("x")
            },
            Rejection::ForbiddenToolPresent,
        ),
        (
            Task {
                max_latency_ms: Some(100),
                ..task("extract the invoice tables")
            },
            Rejection::LatencyExceedsConstraint,
        ),
        (
            Task {
                min_score: 0.99,
                ..task("why is the sky blue? explain")
            },
            Rejection::ScoreBelowThreshold,
        ),
        (
            task("bake a chocolate cake"),
            Rejection::ScoreBelowThreshold,
        ),
    ];
    for (t, reason) in cases {
        let a = s.assess(&t, Conditions::default(), None);
        assert_eq!(a.rejection_reason, Some(reason), "{t:?}: {a:?}");
        assert!(!a.accepted);
    }
    let none = Scorer::new([].iter(), 5000, 0.7, 0.3);
    assert_eq!(
        none.assess(&task("x"), Conditions::default(), None)
            .rejection_reason,
        Some(Rejection::NoSkillsAdvertised)
    );
    let priced = Conditions {
        price: Some(0.05),
        queue_depth: 0,
    };
    let t = Task {
        max_cost: Some(0.01),
        ..task("explain why")
    };
    assert_eq!(
        s.assess(&t, priced, None).rejection_reason,
        Some(Rejection::CostExceedsBudget)
    );
    let t = Task {
        max_cost: Some(0.10),
        ..task("explain why")
    };
    let a = s.assess(&t, priced, None);
    assert_eq!(a.subscores.unwrap().cost, 0.75);
    let a = s.assess(&task("explain why"), priced, None);
    assert_eq!(a.subscores.unwrap().cost, 0.5, "priced, no budget");
}

#[test]
fn anti_patterns_rule_a_skill_out() {
    let a = scorer().assess(
        &task("Why did stock prices fall? explain"),
        Conditions::default(),
        None,
    );
    assert!(
        a.skill_matches.iter().all(|m| m.skill_id != "qa-v1"),
        "{a:?}"
    );
}

#[test]
fn load_follows_the_queue_depth() {
    let s = scorer();
    let t = task("explain why the sky is blue");
    let idle = s.assess(
        &t,
        Conditions {
            queue_depth: 0,
            price: None,
        },
        None,
    );
    let busy = s.assess(
        &t,
        Conditions {
            queue_depth: 9,
            price: None,
        },
        None,
    );
    assert_eq!(busy.subscores.unwrap().load, 0.1);
    assert_eq!(busy.queue_depth, Some(9));
    assert!(busy.score < idle.score);
}

#[test]
fn io_is_the_share_of_requested_types_the_best_skill_handles() {
    let t = Task {
        input_types: vec!["application/pdf".into(), "image/png".into()],
        ..task("extract tables from the invoice")
    };
    let a = scorer().assess(&t, Conditions::default(), None);
    assert_eq!(a.subscores.unwrap().io_compatibility, 0.5);
    // Wildcards match either way.
    assert!(mime_matches("image/*", "image/png"));
    assert!(mime_matches("text/plain", "text/*"));
    assert!(!mime_matches("text/plain", "image/*"));
}

#[test]
fn embeddings_blend_with_keywords() {
    let s = scorer();
    let t = task("a question about photosynthesis");
    let kw = s.assess(&t, Conditions::default(), None);
    let sem = s.assess(&t, Conditions::default(), Some(&[0.1, 0.9]));
    assert_eq!(sem.skill_matches[0].skill_id, "qa-v1");
    assert!(sem.skill_matches[0].reasons[0].starts_with("semantic similarity"));
    assert!(sem.skill_matches[0].score != kw.skill_matches[0].score);
}

#[test]
fn words_drop_stop_words_and_keep_other_scripts() {
    assert_eq!(
        words("Extract THE tables, from a résumé_v2!"),
        ["extract", "tables", "résumé", "v2"]
    );
}

#[test]
fn weights_normalise() {
    let w = Weights {
        skill_match: 2.0,
        io_compatibility: 2.0,
        performance: 0.0,
        load: 0.0,
        cost: 0.0,
    }
    .normalized();
    assert_eq!(w.skill_match, 0.5);
    let z = Weights {
        skill_match: 0.0,
        io_compatibility: 0.0,
        performance: 0.0,
        load: 0.0,
        cost: 0.0,
    }
    .normalized();
    assert_eq!(z.load, 0.2);
}

#[test]
fn the_cost_is_the_best_skills_own_price_when_it_has_one() {
    let skills = [
        skill(json!({
            "id": "dear", "name": "dear", "description": "d",
            "assessment": {"keywords": ["appraise"]},
            "execution_cost": [{"amount": "$0.50"}, {"amount": "0.40", "network": "base"}]
        })),
        skill(json!({
            "id": "gift", "name": "gift", "description": "d",
            "assessment": {"keywords": ["wrap"]}, "execution_cost": []
        })),
        skill(json!({
            "id": "plain", "name": "plain", "description": "d",
            "assessment": {"keywords": ["count"]}
        })),
    ];
    let s = Scorer::new(skills.iter(), 5000, 0.7, 0.3);
    let agent_priced = Conditions {
        price: Some(0.05),
        queue_depth: 0,
    };
    let budget = |summary: &str, max: f64| Task {
        max_cost: Some(max),
        ..task(summary)
    };
    // The cheapest option of the dear skill (0.40) is over a 0.10 budget.
    let a = s.assess(&budget("appraise this", 0.10), agent_priced, None);
    assert_eq!(a.rejection_reason, Some(Rejection::CostExceedsBudget));
    assert_eq!(
        s.assess(&budget("appraise this", 0.80), agent_priced, None)
            .subscores
            .unwrap()
            .cost,
        0.75
    );
    // The free skill is free on a priced agent; the plain one costs the agent's price.
    let gift = s.assess(&budget("wrap this", 0.01), agent_priced, None);
    assert_eq!(gift.subscores.unwrap().cost, 1.0, "{gift:?}");
    let plain = s.assess(&budget("count this", 0.01), agent_priced, None);
    assert_eq!(plain.rejection_reason, Some(Rejection::CostExceedsBudget));
    assert_eq!(cheapest(&[]), None);
}
