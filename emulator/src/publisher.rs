//! The Pub/Sub API on [`crate::pubsub`]'s data: the gRPC `Publish` the official Publisher
//! calls, the REST publish, and push delivery in the push-envelope format.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::google::GoogleError;
use crate::pubsub::Outgoing;
use crate::state::{State, lock};

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
