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

    proptest::proptest! {
        /// Fuzz: whatever is pushed, parsing and composing never panic.
        #[test]
        fn fuzz_arbitrary_pushes_never_panic(body in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let event = parse(&body).ok().and_then(|delivery| serde_json::from_slice::<serde_json::Value>(&delivery.data).ok());
            if let Some(event) = event {
                let style = crate::compose::Style {
                    time_zone: jiff::tz::TimeZone::UTC,
                    thread_domain: "example.com".into(),
                    self_approved: true,
                    base_url: "https://jit.example.com".into(),
                };
                let _ = crate::compose::compose(&event, &style);
            }
        }

        /// Fuzz: events with arbitrary values never panic and never leak raw markup or line breaks.
        #[test]
        fn fuzz_event_values_are_always_escaped(value in "\\PC{0,60}", field in proptest::sample::select(vec!["project_id", "role", "justification", "resource_condition", "activation_id"])) {
            let mut event = serde_json::json!({"type": "RequestActivation", "attributes": {
                "activation_id": "mpa-x", "beneficiary": "alice@example.com", "reviewers": ["bob@example.com"],
                "project_id": "p", "role": "roles/x", "resource_condition": "", "start_time": "2026-11-24T15:00:00Z",
                "end_time": "2026-11-24T16:00:00Z", "request_expiry_time": "2026-11-24T16:00:00Z", "justification": "j",
                "base_url": "https://jit.example.com", "action_url": "https://jit.example.com/?activation=a.b.c"}});
            event["attributes"][field] = serde_json::json!(format!("<b>{value}"));
            let style = crate::compose::Style { time_zone: jiff::tz::TimeZone::UTC, thread_domain: "example.com".into(), self_approved: true, base_url: "https://jit.example.com".into() };
            let mail = crate::compose::compose(&event, &style).expect("a valid event");
            proptest::prop_assert!(!mail.html.contains("<b>"));
            proptest::prop_assert!(!mail.subject.contains('\n') && !mail.subject.contains('\r'));
            for (_, header) in &mail.headers {
                proptest::prop_assert!(!header.contains('\n') && !header.contains('\r'));
            }
        }
    }

    #[test]
    fn refuses_what_is_not_a_message() {
        for body in [&b"not json"[..], b"{}", br#"{"message": {"data": "%%%"}}"#] {
            assert!(parse(body).is_err(), "{}", String::from_utf8_lossy(body));
        }
    }
}
