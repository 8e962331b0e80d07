//! A small Pub/Sub's data: topics, push subscriptions and the messages published, with the
//! deliveries a publish starts. Its API (the gRPC `Publish` the official Publisher calls, the
//! REST calls, push delivery) is [`crate::publisher`]. For machines without gcloud; CI also
//! runs the real Pub/Sub emulator.

use std::collections::{BTreeMap, HashMap};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::google::GoogleError;

#[derive(Debug, Clone)]
struct Subscription {
    topic: String,
    push_endpoint: Option<String>,
    /// `pushConfig.oidcToken`: (service account, audience) to sign a token for each push.
    oidc: Option<(String, String)>,
}

/// A message to publish: data and attributes.
pub type Outgoing = (Vec<u8>, HashMap<String, String>);

/// A push to make: subscription, endpoint, envelope, OIDC identity.
type Delivery = (String, String, Value, Option<(String, String)>);

#[derive(Debug, Default)]
pub struct PubSub {
    topics: BTreeMap<String, ()>,
    subscriptions: BTreeMap<String, Subscription>,
    messages: Vec<Value>,
    next_id: u64,
}

impl PubSub {
    pub fn with_topics(topics: &[String]) -> PubSub {
        PubSub { topics: topics.iter().map(|t| (t.clone(), ())).collect(), ..PubSub::default() }
    }

    pub fn create_topic(&mut self, name: &str) -> Result<Value, GoogleError> {
        if self.topics.insert(name.to_string(), ()).is_some() {
            return Err(GoogleError::with_status(409, "ALREADY_EXISTS", "Topic already exists"));
        }
        Ok(json!({"name": name}))
    }

    pub fn create_subscription(&mut self, name: &str, body: &Value) -> Result<Value, GoogleError> {
        let topic = body["topic"].as_str().unwrap_or_default().to_string();
        if !self.topics.contains_key(&topic) {
            return Err(GoogleError::new(404, "Topic not found"));
        }
        if self.subscriptions.contains_key(name) {
            return Err(GoogleError::with_status(409, "ALREADY_EXISTS", "Subscription already exists"));
        }
        let endpoint = body["pushConfig"]["pushEndpoint"].as_str().map(str::to_string);
        let oidc = body["pushConfig"]["oidcToken"]["serviceAccountEmail"].as_str().map(|account| {
            let audience =
                body["pushConfig"]["oidcToken"]["audience"].as_str().or(endpoint.as_deref()).unwrap_or_default();
            (account.to_string(), audience.to_string())
        });
        let subscription = Subscription { topic: topic.clone(), push_endpoint: endpoint, oidc };
        self.subscriptions.insert(name.to_string(), subscription);
        Ok(json!({"name": name, "topic": topic, "pushConfig": body["pushConfig"].clone()}))
    }

    pub fn messages(&self) -> Vec<Value> {
        self.messages.clone()
    }

    /// Stores messages; returns their IDs and the push deliveries to make.
    pub fn publish(
        &mut self,
        topic: &str,
        messages: Vec<Outgoing>,
    ) -> Result<(Vec<String>, Vec<Delivery>), GoogleError> {
        if !self.topics.contains_key(topic) {
            return Err(GoogleError::new(404, &format!("Topic not found: {topic}")));
        }
        let mut ids = Vec::new();
        let mut deliveries = Vec::new();
        for (data, attributes) in messages {
            self.next_id += 1;
            let id = self.next_id.to_string();
            let publish_time = common::timestamp::Timestamp::now().to_string();
            let message = json!({
                "data": STANDARD.encode(&data),
                "attributes": attributes,
                "messageId": id,
                "message_id": id,
                "publishTime": publish_time,
                "publish_time": publish_time,
            });
            for (name, subscription) in &self.subscriptions {
                if let (true, Some(endpoint)) = (subscription.topic == topic, &subscription.push_endpoint) {
                    let envelope = json!({"message": message, "subscription": name});
                    deliveries.push((name.clone(), endpoint.clone(), envelope, subscription.oidc.clone()));
                }
            }
            let mut stored = message.clone();
            stored["topic"] = json!(topic);
            self.messages.push(stored);
            ids.push(id);
        }
        Ok((ids, deliveries))
    }
}
