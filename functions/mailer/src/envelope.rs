//! What Pub/Sub push delivers: the push envelope
//! `{"message": {"data", "attributes", "messageId", "publishTime"}, "subscription"}`, or the
//! same message inside a CloudEvent, as Eventarc delivers it (structured mode; in binary mode
//! the body is the envelope itself and the `ce-*` headers carry the rest).

use base64::Engine as _;
use serde_json::Value;

/// One delivered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub message_id: String,
    pub subscription: String,
    pub data: Vec<u8>,
}

pub fn parse(body: &[u8]) -> Result<Delivery, String> {
    let json: Value = serde_json::from_slice(body).map_err(|e| format!("the body is not JSON ({e})"))?;
    // A structured CloudEvent wraps the envelope in `data`.
    let envelope = if json.get("message").is_some() { &json } else { &json["data"] };
    let message = envelope.get("message").ok_or("the body holds no Pub/Sub message")?;
    let message_id = message["messageId"].as_str().or(message["message_id"].as_str()).unwrap_or_default().to_string();
    let data = base64::engine::general_purpose::STANDARD
        .decode(message["data"].as_str().unwrap_or_default())
        .map_err(|_| format!("message {message_id}: data is not base64"))?;
    Ok(Delivery { message_id, subscription: envelope["subscription"].as_str().unwrap_or_default().to_string(), data })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_push_envelope_and_the_cloud_event() {
        let push = br#"{"message": {"data": "eyJhIjoxfQ==", "attributes": {"type": "X"}, "messageId": "7", "publishTime": "2026-01-01T00:00:00Z"}, "subscription": "projects/p/subscriptions/s"}"#;
        let delivery = parse(push).expect("valid");
        assert_eq!(delivery.message_id, "7");
        assert_eq!(delivery.data, br#"{"a":1}"#);
        let cloud_event = br#"{"specversion": "1.0", "type": "google.cloud.pubsub.topic.v1.messagePublished", "data": {"message": {"data": "eyJhIjoxfQ==", "messageId": "8"}, "subscription": "s"}}"#;
        assert_eq!(parse(cloud_event).expect("valid").message_id, "8");
    }

    #[test]
    fn refuses_what_is_not_a_message() {
        for body in [&b"not json"[..], b"{}", br#"{"message": {"data": "%%%"}}"#] {
            assert!(parse(body).is_err(), "{}", String::from_utf8_lossy(body));
        }
    }
}
