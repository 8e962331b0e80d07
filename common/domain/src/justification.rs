//! The justification a user gives for an activation, and the policy it must satisfy.

use std::fmt;

use regex::Regex;

/// Justifications are short: they go into IAM condition descriptions (at most 256 characters
/// in all), tokens, links and mail subjects.
pub const MAX_JUSTIFICATION_CHARS: usize = 100;

/// `JUSTIFICATION_PATTERN` and `JUSTIFICATION_HINT`.
#[derive(Debug, Clone)]
pub struct JustificationPolicy {
    pattern: Regex,
    pattern_text: String,
    hint: String,
}

/// A justification that satisfied the policy when it was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Justification(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JustificationError {
    #[error("a justification is required ({hint})")]
    Missing { hint: String },
    #[error("the justification is longer than {MAX_JUSTIFICATION_CHARS} characters")]
    TooLong,
    #[error("the justification must be a single line of printable characters")]
    ControlCharacter,
    #[error("the justification does not match the policy: {hint}")]
    Mismatch { hint: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("JUSTIFICATION_PATTERN is not a valid regular expression: {0}")]
pub struct PatternError(String);

impl JustificationPolicy {
    /// The pattern must match the whole justification, as Java's `Matcher.matches()` did in
    /// the reference app. Syntax is Rust's `regex` (no look-around or backreferences).
    pub fn new(pattern: &str, hint: &str) -> Result<JustificationPolicy, PatternError> {
        let anchored = format!("^(?:{pattern})$");
        let compiled =
            regex::RegexBuilder::new(&anchored).size_limit(1 << 20).build().map_err(|e| PatternError(e.to_string()))?;
        Ok(JustificationPolicy { pattern: compiled, pattern_text: pattern.to_string(), hint: hint.to_string() })
    }

    pub fn hint(&self) -> &str {
        &self.hint
    }

    pub fn pattern(&self) -> &str {
        &self.pattern_text
    }

    pub fn check(&self, text: &str) -> Result<Justification, JustificationError> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(JustificationError::Missing { hint: self.hint.clone() });
        }
        if trimmed.chars().count() > MAX_JUSTIFICATION_CHARS {
            return Err(JustificationError::TooLong);
        }
        if trimmed.chars().any(char::is_control) {
            return Err(JustificationError::ControlCharacter);
        }
        if !self.pattern.is_match(trimmed) {
            return Err(JustificationError::Mismatch { hint: self.hint.clone() });
        }
        Ok(Justification(trimmed.to_string()))
    }
}

impl Justification {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Justification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(pattern: &str) -> JustificationPolicy {
        JustificationPolicy::new(pattern, "Bug or case number").expect("valid pattern")
    }

    #[test]
    fn accepts_matching_text_and_trims() {
        let justification = policy("BUG-\\d+").check("  BUG-12345 ").expect("matches");
        assert_eq!(justification.as_str(), "BUG-12345");
        assert!(policy(".*").check("anything at all, with \"quotes\" && ) \\").is_ok());
        assert!(policy(".*").check(&"x".repeat(100)).is_ok());
    }

    #[test]
    fn pattern_must_match_the_whole_text() {
        let policy = policy("BUG-\\d+");
        assert!(matches!(policy.check("see BUG-1"), Err(JustificationError::Mismatch { .. })));
        assert!(matches!(policy.check("BUG-1 and more"), Err(JustificationError::Mismatch { .. })));
        // An alternation must not escape the anchors.
        let either = super::JustificationPolicy::new("a|b", "").expect("valid");
        assert!(either.check("a").is_ok());
        assert!(either.check("ab").is_err());
    }

    #[test]
    fn refuses_missing_long_and_multi_line_text() {
        let policy = policy(".*");
        assert!(matches!(policy.check("   "), Err(JustificationError::Missing { .. })));
        assert_eq!(policy.check(&"x".repeat(101)), Err(JustificationError::TooLong));
        for text in ["BUG-1\nBcc: eve@example.com", "BUG-1\rX", "a\u{0}b", "tab\there"] {
            assert_eq!(policy.check(text), Err(JustificationError::ControlCharacter), "{text:?}");
        }
    }

    #[test]
    fn invalid_pattern_is_a_configuration_error() {
        assert!(JustificationPolicy::new("(unclosed", "").is_err());
        assert!(JustificationPolicy::new("(?=lookahead)", "").is_err());
    }
}
