//! What a run's end becomes: the task update of its outcome.

use super::*;

pub(super) fn agent_message(parts: Vec<Part>) -> Message {
    Message::agent(uuid::Uuid::new_v4().to_string(), parts)
}

/// The outcome of a run whose payment's settlement has no known outcome: the task stays
/// `working`, saying so, until the payment is reconciled.
pub(super) fn pending_payment(
    task_id: &str,
    p: &bindu_schemas::x402::PaymentCommand,
    e: &bindu_engine::x402::FacilitatorError,
    announced: u64,
) -> TaskUpdate {
    let msg = agent_message(vec![Part::text(format!(
        "Payment settlement outcome unknown ({e}): the result is withheld until the payment is reconciled with the facilitator"
    ))]);
    let mut update = TaskUpdate::new(task_id, Expect::Active)
        .status(TaskState::Working, Some(msg))
        .after_run(announced, Vec::new());
    update.metadata = Some(payments::orphaned(p));
    update
}

pub(super) fn failed(task_id: &str, reason: String) -> TaskUpdate {
    let msg = agent_message(vec![Part::text(reason)]);
    TaskUpdate::new(task_id, Expect::Active)
        .history(msg.clone())
        .status(TaskState::Failed, Some(msg))
}

/// Maps what the handler did to the update that records it.
pub(super) fn outcome_update(
    task_id: &str,
    outcome: Outcome,
    budget: &OutputBudget,
    emitter: &Emitter,
) -> TaskUpdate {
    let output = match outcome {
        Outcome::Finished(Ok(o)) => o.normalize(),
        Outcome::Finished(Err(e)) => return failed(task_id, format!("Task failed: {e}")),
        Outcome::Panicked => return failed(task_id, "Task failed: the handler panicked".into()),
        // `HandedBack` is never recorded (the run hands its command back first).
        Outcome::Interrupted | Outcome::HandedBack => {
            return failed(
                task_id,
                "Task interrupted: the worker shut down or the task was canceled".into(),
            )
        }
        Outcome::PaymentExpiring => {
            return failed(
                task_id,
                "Task failed: the run would have outlived its payment authorization (validBefore), so it was stopped and nothing was charged; raise X402__MAX_TIMEOUT_SECONDS or use X402__SETTLE=before for longer work".into(),
            )
        }
        Outcome::TimedOut(limit) => {
            return failed(
                task_id,
                format!(
                    "Task failed: the handler did not finish within the task timeout of {} s (worker.task_timeout / BINDU_TASK_TIMEOUT)",
                    limit.as_secs_f64()
                ),
            )
        }
    };
    let size = match &output {
        HandlerOutput::Text(t)
        | HandlerOutput::InputRequired(t)
        | HandlerOutput::AuthRequired(t)
        | HandlerOutput::Rejected(t) => t.len(),
        HandlerOutput::Parts(p) => p.iter().map(part_size).sum(),
        HandlerOutput::Data(d) => serde_json::to_vec(d).map_or(usize::MAX, |v| v.len()),
        HandlerOutput::Streamed => 0,
    };
    if let Err(e) = budget.spend(size) {
        return failed(task_id, format!("Task failed: {e}"));
    }
    if let HandlerOutput::Parts(p) = &output {
        if let Err(e) = check_parts(p) {
            return failed(task_id, format!("Task failed: {e}"));
        }
    }
    let working = TaskUpdate::new(task_id, Expect::Active);
    let parts = match output {
        HandlerOutput::Text(t) => vec![Part::text(t)],
        HandlerOutput::Parts(p) if p.is_empty() => {
            return failed(task_id, "Task failed: the handler returned no parts".into())
        }
        HandlerOutput::Parts(p) => p,
        HandlerOutput::Data(d) => vec![Part::data(d)],
        HandlerOutput::Streamed => {
            // The streamed reply joins the history, as a returned one does.
            let reply = emitter.streamed_reply();
            let working = if reply.is_empty() {
                working
            } else {
                working.history(agent_message(reply))
            };
            return working.status(TaskState::Completed, None);
        }
        HandlerOutput::InputRequired(prompt) | HandlerOutput::AuthRequired(prompt)
            if prompt.is_empty() =>
        {
            return failed(
                task_id,
                "Task failed: the handler asked for input without a prompt".into(),
            )
        }
        HandlerOutput::InputRequired(prompt) => {
            let msg = agent_message(vec![Part::text(prompt)]);
            return working
                .history(msg.clone())
                .status(TaskState::InputRequired, Some(msg));
        }
        HandlerOutput::AuthRequired(prompt) => {
            let msg = agent_message(vec![Part::text(prompt)]);
            return working
                .history(msg.clone())
                .status(TaskState::AuthRequired, Some(msg));
        }
        HandlerOutput::Rejected(reason) => {
            let msg = agent_message(vec![Part::text(reason)]);
            return working
                .history(msg.clone())
                .status(TaskState::Rejected, Some(msg));
        }
    };
    working
        .artifact(ArtifactChunk {
            artifact: Artifact {
                artifact_id: uuid::Uuid::new_v4().to_string(),
                parts: parts.clone(),
                name: Some("result".into()),
                description: None,
                metadata: None,
                extensions: None,
            },
            append: false,
            last_chunk: true,
        })
        .history(agent_message(parts))
        .status(TaskState::Completed, None)
}
