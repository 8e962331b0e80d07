//! What Pub/Sub push delivers: the push envelope
//! `{"message": {"data", "attributes", "messageId", "publishTime"}, "subscription"}`, or the
//! same message inside a CloudEvent, as Eventarc delivers it (structured mode; in binary mode
//! the body is the envelope itself and the `ce-*` headers carry the rest).

pub use common::http::push::{Delivery, parse_envelope as parse};

#[cfg(test)]
mod tests {
    use super::*;

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
                    administrators: Vec::new(),
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
            let style = crate::compose::Style { time_zone: jiff::tz::TimeZone::UTC, thread_domain: "example.com".into(), self_approved: true, base_url: "https://jit.example.com".into(), administrators: Vec::new() };
            let mail = crate::compose::compose(&event, &style).expect("a valid event");
            proptest::prop_assert!(!mail.html.contains("<b>"));
            proptest::prop_assert!(!mail.subject.contains('\n') && !mail.subject.contains('\r'));
            for (_, header) in &mail.headers {
                proptest::prop_assert!(!header.contains('\n') && !header.contains('\r'));
            }
        }
    }
}
