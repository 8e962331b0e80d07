//! Email addresses of users, as IAP, IAM members and mail recipients carry them.

use std::fmt;

/// A lowercased, plausibly valid email address.
///
/// The rules are strict on purpose: the address ends up in IAM members (`user:EMAIL`), in JWT
/// claims and in mail headers, so anything that could split a list or a header (commas, angle
/// brackets, quotes, whitespace, control characters) is refused here, once, at the edge.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Email(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{text}' is not a valid email address: {reason}")]
pub struct EmailError {
    pub text: String,
    pub reason: &'static str,
}

/// RFC 5321 limits a forward path to 254 characters.
const MAX_LENGTH: usize = 254;

impl Email {
    pub fn parse(text: &str) -> Result<Email, EmailError> {
        let refuse = |reason| Err(EmailError { text: text.chars().take(MAX_LENGTH).collect(), reason });
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return refuse("it is empty");
        }
        if trimmed.len() > MAX_LENGTH {
            return refuse("it is longer than 254 characters");
        }
        let Some((local, domain)) = trimmed.split_once('@') else {
            return refuse("it has no '@'");
        };
        if local.is_empty() || domain.is_empty() {
            return refuse("a part before or after '@' is empty");
        }
        let allowed_local = |c: char| c.is_ascii_alphanumeric() || "._%+-'".contains(c);
        if !local.chars().all(allowed_local) {
            return refuse("the part before '@' has a character that is not allowed");
        }
        let allowed_domain = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '-';
        if !domain.chars().all(allowed_domain)
            || !domain.contains('.')
            || domain.starts_with('.')
            || domain.ends_with('.')
            || domain.contains("..")
        {
            return refuse("the domain is not a valid host name");
        }
        Ok(Email(trimmed.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The IAM member for this user, `user:EMAIL`.
    pub fn iam_member(&self) -> String {
        format!("user:{}", self.0)
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for Email {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Email {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Email, D::Error> {
        let text = String::deserialize(deserializer)?;
        Email::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_lowercases_ordinary_addresses() {
        for (text, expected) in [
            ("alice@example.com", "alice@example.com"),
            ("  Bob.Smith+jit@Example.ORG ", "bob.smith+jit@example.org"),
            ("o'neil@sub.example.co.uk", "o'neil@sub.example.co.uk"),
        ] {
            let email = Email::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!(email.as_str(), expected);
        }
        let email = Email::parse("alice@example.com").expect("valid");
        assert_eq!(email.iam_member(), "user:alice@example.com");
    }

    #[test]
    fn refuses_addresses_that_could_split_lists_or_headers() {
        for text in [
            "",
            "alice",
            "@example.com",
            "alice@",
            "alice@@example.com",
            "alice@example",
            "alice@.example.com",
            "alice@example..com",
            "alice@example.com\r\nBcc: eve@example.com",
            "alice@example.com, eve@example.com",
            "Alice <alice@example.com>",
            "\"alice\"@example.com",
            "ali ce@example.com",
            "alice@exa_mple.com",
            "alice@example.com)",
        ] {
            assert!(Email::parse(text).is_err(), "accepted {text:?}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(Email::parse(&long).is_err());
    }

    #[test]
    fn deserializing_validates() {
        let parsed: Result<Email, _> = serde_json::from_str("\"Eve <eve@example.com>\"");
        assert!(parsed.is_err());
        let parsed: Email = serde_json::from_str("\"EVE@example.com\"").expect("valid");
        assert_eq!(parsed.as_str(), "eve@example.com");
    }
}
