//! Publishing events to Pub/Sub with the official `google-cloud-pubsub` Publisher (gRPC). The
//! publish is awaited inside the request: on Cloud Run, CPU may be throttled once the
//! response is sent, so nothing is left to a background batch.

use google_cloud_pubsub::client::Publisher;
use google_cloud_pubsub::model::Message;

use crate::config::BackendSettings;
pub use crate::event::Event;
use crate::gcp::{BoxFuture, GcpError, credentials_for, retry_policy};

/// Where events go. Production: [`PubSubPublisher`]; with no topic configured, [`NoPublisher`].
pub trait EventPublisher: Send + Sync + std::fmt::Debug {
    /// Publishes and returns the message ID.
    fn publish<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<String, GcpError>>;
}

#[derive(Debug, Clone)]
pub struct PubSubPublisher {
    publisher: Publisher,
    topic: String,
}

impl PubSubPublisher {
    /// `topic` is `projects/P/topics/T`. `PUBSUB_EMULATOR_HOST` reaches here through
    /// `BackendSettings::pubsub_endpoint`; the SDK itself does not read it.
    pub async fn new(backend: &BackendSettings, topic: &str) -> Result<PubSubPublisher, GcpError> {
        let publisher = Publisher::builder(topic)
            .with_endpoint(&backend.pubsub_endpoint)
            .with_credentials(credentials_for(&backend.pubsub_endpoint)?)
            .with_retry_policy(retry_policy(backend))
            // One event per request: send it at once rather than wait for a batch.
            .set_message_count_threshold(1)
            .build()
            .await
            .map_err(|e| GcpError::Other(format!("building the Pub/Sub publisher ({e})")))?;
        Ok(PubSubPublisher { publisher, topic: topic.to_string() })
    }
}

impl EventPublisher for PubSubPublisher {
    fn publish<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<String, GcpError>> {
        Box::pin(async move {
            let data = serde_json::to_vec(&event.data).map_err(|e| GcpError::Other(e.to_string()))?;
            let message = Message::new().set_data(data).set_attributes(event.attributes.clone());
            self.publisher.publish(message).await.map_err(|e| {
                let detail = format!("publishing to {} ({e})", self.topic);
                GcpError::Unavailable(detail)
            })
        })
    }
}

/// `NOTIFICATION_TOPIC` unset: events are only logged.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPublisher;

impl EventPublisher for NoPublisher {
    fn publish<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<String, GcpError>> {
        tracing::info!(event = %event.data, "no NOTIFICATION_TOPIC: event not published");
        Box::pin(std::future::ready(Ok(String::new())))
    }
}

/// The publisher for the configured topic, or [`NoPublisher`] when there is none.
pub async fn publisher_for(
    backend: &BackendSettings,
    notification: &crate::config::NotificationSettings,
) -> Result<std::sync::Arc<dyn EventPublisher>, GcpError> {
    Ok(match &notification.topic {
        Some(topic) => std::sync::Arc::new(PubSubPublisher::new(backend, topic).await?),
        None => std::sync::Arc::new(NoPublisher),
    })
}

/// Publishes; on failure, logs everything needed to publish the event again by hand.
pub async fn publish_or_log(publisher: &dyn EventPublisher, event: &Event) -> Result<String, GcpError> {
    let result = publisher.publish(event).await;
    if let Err(error) = &result {
        tracing::error!(
            %error,
            event_type = event.kind(),
            event_data = %event.data,
            event_attributes = ?event.attributes,
            "event not published: replay it from event_data and event_attributes"
        );
    }
    result
}
