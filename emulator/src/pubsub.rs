//! A small Pub/Sub: topics, push subscriptions, the gRPC `Publish` the official Publisher
//! calls, the REST publish and admin calls, and push delivery in the push-envelope format.
//! For machines without gcloud; CI also runs the real Pub/Sub emulator.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::google::GoogleError;
use crate::state::{State, lock};

#[derive(Debug, Clone)]
struct Subscription {
    topic: String,
    push_endpoint: Option<String>,
    /// `pushConfig.oidcToken`: (service account, audience) to sign a token for each push.
    oidc: Option<(String, String)>,
}

/// A message to publish: data and attributes.
type Outgoing = (Vec<u8>, HashMap<String, String>);

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
    fn publish(&mut self, topic: &str, messages: Vec<Outgoing>) -> Result<(Vec<String>, Vec<Delivery>), GoogleError> {
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

/// Publishes and starts push deliveries in the background.
pub async fn publish(state: &Arc<State>, topic: &str, messages: Vec<Outgoing>) -> Result<Vec<String>, GoogleError> {
    state.enter("pubsub", "publish").await?;
    let (ids, deliveries) = lock(&state.pubsub).publish(topic, messages)?;
    for (subscription, endpoint, envelope, oidc) in deliveries {
        let token = match oidc {
            Some((account, audience)) => Some(state.oidc_token(&account, &audience)?),
            None => None,
        };
        tokio::spawn(push(state.http.clone(), subscription, endpoint, envelope, token));
    }
    Ok(ids)
}

/// Delivers one message, retrying with backoff as Pub/Sub does, a bounded number of times.
async fn push(http: reqwest::Client, subscription: String, endpoint: String, envelope: Value, token: Option<String>) {
    let mut delay = Duration::from_millis(100);
    for attempt in 1..=6 {
        let mut request = http.post(&endpoint).json(&envelope);
        if let Some(token) = &token {
            request = request.bearer_auth(token);
        }
        match request.send().await {
            Ok(response) if response.status().is_success() => return,
            Ok(response) => {
                tracing::warn!(%subscription, attempt, status = %response.status(), "push refused")
            }
            Err(error) => tracing::warn!(%subscription, attempt, %error, "push failed"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
    tracing::error!(%subscription, "push gave up after 6 attempts");
}

/// `POST /v1/projects/P/topics/T:publish` with `{"messages": [{"data", "attributes"}]}`.
pub async fn publish_rest(state: &Arc<State>, topic: &str, body: &Value) -> Result<Value, GoogleError> {
    let mut messages = Vec::new();
    for message in body["messages"].as_array().into_iter().flatten() {
        let data = STANDARD
            .decode(message["data"].as_str().unwrap_or_default())
            .map_err(|_| GoogleError::new(400, "data must be base64"))?;
        let attributes = message["attributes"]
            .as_object()
            .map(|a| a.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
            .unwrap_or_default();
        messages.push((data, attributes));
    }
    if messages.is_empty() {
        return Err(GoogleError::new(400, "No messages"));
    }
    let ids = publish(state, topic, messages).await?;
    Ok(json!({"messageIds": ids}))
}

// The data-plane messages the official Publisher sends over gRPC, written by hand: the SDK's
// own prost types are private, and these three are all Publish needs.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PubsubMessage {
    #[prost(bytes = "vec", tag = "1")]
    pub data: Vec<u8>,
    #[prost(map = "string, string", tag = "2")]
    pub attributes: HashMap<String, String>,
    #[prost(string, tag = "3")]
    pub message_id: String,
    #[prost(string, tag = "5")]
    pub ordering_key: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PublishRequest {
    #[prost(string, tag = "1")]
    pub topic: String,
    #[prost(message, repeated, tag = "2")]
    pub messages: Vec<PubsubMessage>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PublishResponse {
    #[prost(string, repeated, tag = "1")]
    pub message_ids: Vec<String>,
}

/// `google.pubsub.v1.Publisher/Publish`, mounted at its gRPC path.
#[derive(Debug, Clone)]
pub struct GrpcPublisher(pub Arc<State>);

struct PublishCall(Arc<State>);

impl tonic::server::UnaryService<PublishRequest> for PublishCall {
    type Response = PublishResponse;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<tonic::Response<PublishResponse>, tonic::Status>> + Send>,
    >;

    fn call(&mut self, request: tonic::Request<PublishRequest>) -> Self::Future {
        let state = self.0.clone();
        Box::pin(async move {
            let request = request.into_inner();
            let messages = request.messages.into_iter().map(|m| (m.data, m.attributes)).collect();
            let ids = publish(&state, &request.topic, messages).await.map_err(|e| e.grpc_status())?;
            Ok(tonic::Response::new(PublishResponse { message_ids: ids }))
        })
    }
}

impl tower::Service<http::Request<axum::body::Body>> for GrpcPublisher {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<axum::body::Body>) -> Self::Future {
        let state = self.0.clone();
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
            let response = grpc.unary(PublishCall(state), request).await;
            Ok(response.map(axum::body::Body::new))
        })
    }
}
