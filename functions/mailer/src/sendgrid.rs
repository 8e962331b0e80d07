//! Sends a [`Mail`] through SendGrid's v3 `/v3/mail/send`, and sorts failures into those worth
//! a redelivery and those that will never succeed.

use std::time::Duration;

use serde_json::{Value, json};

use crate::compose::Mail;

#[derive(Clone)]
pub struct SendGrid {
    http: reqwest::Client,
    url: String,
    api_key: String,
    from: Value,
}

impl std::fmt::Debug for SendGrid {
    // The API key never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendGrid").field("url", &self.url).finish_non_exhaustive()
    }
}

/// What sending did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    Accepted,
    /// 429, 5xx or no answer: let Pub/Sub deliver the message again later.
    Retry(String),
    /// Any other refusal: the same mail will be refused again.
    Rejected(String),
}

impl SendGrid {
    pub fn new(
        base_url: &str,
        api_key: String,
        sender_name: &str,
        sender_address: &str,
        timeout: Duration,
    ) -> SendGrid {
        let http = reqwest::Client::builder().timeout(timeout).build().unwrap_or_default();
        SendGrid {
            http,
            url: format!("{}/v3/mail/send", base_url.trim_end_matches('/')),
            api_key,
            from: json!({"email": sender_address, "name": sender_name}),
        }
    }

    pub async fn send(&self, mail: &Mail) -> Sent {
        let body = self.body(mail);
        match self.http.post(&self.url).bearer_auth(&self.api_key).json(&body).send().await {
            Err(error) => Sent::Retry(format!("SendGrid did not answer ({error})")),
            Ok(response) => {
                let status = response.status();
                if status.is_success() {
                    return Sent::Accepted;
                }
                let detail: String = response.text().await.unwrap_or_default().chars().take(500).collect();
                if status.as_u16() == 429 || status.is_server_error() {
                    Sent::Retry(format!("SendGrid answered {status}: {detail}"))
                } else {
                    Sent::Rejected(format!("SendGrid answered {status}: {detail}"))
                }
            }
        }
    }

    fn body(&self, mail: &Mail) -> Value {
        let addresses =
            |list: &[common::email::Email]| list.iter().map(|e| json!({"email": e.as_str()})).collect::<Vec<_>>();
        let mut personalization = json!({"to": addresses(&mail.to)});
        // SendGrid refuses an address that is both in `to` and `cc`.
        let cc: Vec<common::email::Email> = mail.cc.iter().filter(|e| !mail.to.contains(e)).cloned().collect();
        if !cc.is_empty() {
            personalization["cc"] = json!(addresses(&cc));
        }
        let mut headers = serde_json::Map::new();
        // No auto-replies (out of office) to a notification.
        headers.insert("Precedence".into(), json!("bulk"));
        for (name, value) in &mail.headers {
            headers.insert(name.clone(), json!(value));
        }
        json!({
            "personalizations": [personalization],
            "from": self.from,
            "subject": mail.subject,
            "content": [{"type": "text/plain", "value": mail.text}, {"type": "text/html", "value": mail.html}],
            "headers": headers,
        })
    }
}
