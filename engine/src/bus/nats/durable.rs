//! Durable event consumers (the webhook dispatcher): see the module documentation above.

use async_nats::jetstream::consumer;
use futures::StreamExt;

use super::*;

impl NatsBus {
    /// [`Bus::consume_events`] on NATS.
    pub(super) async fn durable_events(
        &self,
        durable_name: &str,
    ) -> Result<DurableEventStream, BusError> {
        let name = consumer_name(durable_name);
        let previous = self
            .flushers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&name);
        if let Some(flusher) = previous {
            // Ends once the previous stream is dropped, after acking what it handled.
            if tokio::time::timeout(Duration::from_secs(2), flusher)
                .await
                .is_err()
            {
                tracing::warn!(consumer = %name, "the previous reader of this event consumer is still open; its last acks may be lost (its events come again)");
            }
        }
        let stream = self
            .js
            .get_stream(&self.events_stream)
            .await
            .map_err(unavailable)?;
        // Resume right after the ack floor: everything unacknowledged comes again, in order.
        let deliver_policy = match stream.consumer_info(&name).await {
            Ok(info) => {
                let floor = info.ack_floor.stream_sequence;
                stream.delete_consumer(&name).await.map_err(|e| {
                    BusError::Unavailable(format!("cannot reopen event consumer {name}: {e}"))
                })?;
                tracing::info!(consumer = %name, ack_floor = floor, "reopening the durable event consumer after its ack floor");
                consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: floor + 1,
                }
            }
            Err(e)
                if e.kind() == async_nats::jetstream::context::ConsumerInfoErrorKind::NotFound =>
            {
                consumer::DeliverPolicy::New
            }
            Err(e) => {
                return Err(BusError::Unavailable(format!(
                    "cannot read event consumer {name}: {e}"
                )))
            }
        };
        let config = consumer::pull::Config {
            durable_name: Some(name.clone()),
            deliver_policy,
            // Acked cumulatively, a few times a second (see `ack_floor`).
            ack_policy: consumer::AckPolicy::All,
            ack_wait: self.options.event_ack_wait,
            max_deliver: -1,
            max_ack_pending: self.options.event_max_ack_pending,
            ..Default::default()
        };
        let consumer: consumer::Consumer<consumer::pull::Config> = setup_policy()
            .run(|| stream.create_consumer(config.clone()), |_| true)
            .await
            .map_err(|e| {
                BusError::Unavailable(format!("cannot create event consumer {name}: {e}"))
            })?;
        let messages = consumer
            .stream()
            .max_messages_per_batch(512)
            .messages()
            .await
            .map_err(unavailable)?;
        let prefix = self.events_prefix();
        // The flusher acks the floor one last time when the stream is dropped.
        let stop = CancellationToken::new();
        let (floor, flusher) = AckFloor::start(stop.clone());
        self.flushers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.clone(), flusher);
        let stop = stop.drop_guard();
        Ok(messages
            .then(move |m| {
                let prefix = prefix.clone();
                let floor = floor.clone();
                async move {
                    let m = match m {
                        Ok(m) => m,
                        Err(e) => return vec![Err(unavailable(e))],
                    };
                    let (attempt, stream_seq) = match m.info() {
                        Ok(i) => (i.delivered.max(1) as u64, i.stream_sequence),
                        Err(e) => return vec![Err(unavailable(e))],
                    };
                    let (msg, acker) = m.split();
                    let notice = msg
                        .subject
                        .as_str()
                        .strip_prefix(prefix.as_str())
                        .is_some_and(subjects::is_push_configs_suffix);
                    if notice {
                        if let Ok(n) = serde_json::from_slice::<PushConfigsChanged>(&msg.payload) {
                            let shared = MessageAck::new(floor, stream_seq, acker, 1);
                            return vec![Ok(Consumed::PushConfigsChanged(PushNotice {
                                task_id: n.task_id,
                                acker: Box::new(PartAcker(shared)),
                            }))];
                        }
                    }
                    let events = if notice {
                        Vec::new()
                    } else {
                        Self::decode_events(&msg.payload, msg.headers.as_ref())
                    };
                    // The events of one message share its acknowledgement: it counts as
                    // handled once every one of them is.
                    let shared = MessageAck::new(floor, stream_seq, acker, events.len());
                    if events.is_empty() {
                        tracing::warn!(subject = %msg.subject, "dropping an unreadable message from the events stream");
                        shared.skip();
                        return Vec::new();
                    }
                    events
                        .into_iter()
                        .map(|event| {
                            Ok(Consumed::Event(EventDelivery {
                                event,
                                attempt,
                                acker: Box::new(PartAcker(shared.clone())),
                            }))
                        })
                        .collect()
                }
            })
            .flat_map(futures::stream::iter)
            .map(move |item| {
                let _stop = &stop;
                item
            })
            .boxed())
    }
}
