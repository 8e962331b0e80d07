//! IAM condition expressions: splitting into top-level `&&` clauses, recognising the eligibility
//! markers, and the resource condition that an activation keeps.
//!
//! This is not a CEL parser. It is a scanner that knows enough of CEL's lexical rules (strings,
//! raw and triple-quoted strings, escapes, `//` comments, brackets) to find the operators at
//! the top level of an expression, which is all eligibility needs. Anything it cannot split
//! safely (a top-level `||` or `?:`) stays one opaque clause, so a marker is only recognised
//! when it is really ANDed with the rest.

use std::fmt;

/// How an eligible binding is activated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum ActivationType {
    /// `has({}.jitAccessConstraint)`: self-approval with a justification.
    #[serde(rename = "JIT")]
    Jit,
    /// `has({}.multiPartyApprovalConstraint)`: activation needs a peer's approval.
    #[serde(rename = "MPA")]
    Mpa,
}

/// What an eligible binding's condition says: the marker, and any other clauses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eligibility {
    pub activation_type: ActivationType,
    pub resource_condition: Option<ResourceCondition>,
}

/// The clauses of a condition other than the eligibility marker, in canonical form: one clause
/// as it is, several as `(c1) && (c2)`. Whitespace outside string literals is collapsed and
/// comments are dropped, so the same binding always yields the same text (and entitlement ID).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceCondition(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConditionError {
    #[error("the condition is empty")]
    Empty,
    #[error("the condition has an empty clause next to '&&' at position {position}")]
    EmptyClause { position: usize },
    #[error("the condition has an unbalanced '{bracket}' at position {position}")]
    Unbalanced { bracket: char, position: usize },
    #[error("the condition has an unterminated string starting at position {position}")]
    UnterminatedString { position: usize },
    #[error("the condition is {length} bytes long; IAM conditions are at most {MAX_CONDITION_BYTES}")]
    TooLong { length: usize },
    #[error("the condition nests brackets more than {MAX_NESTING} deep at position {position}")]
    TooDeep { position: usize },
}

/// The longest condition expression we read. IAM refuses much shorter ones in a binding, so
/// nothing legitimate is lost, and every scan stays linear in a bounded input.
pub const MAX_CONDITION_BYTES: usize = 12_800;

/// How deep brackets may nest. CEL parsers refuse deep nesting too; ours bounds the recursion
/// of [`split_and`], so no input can exhaust a thread's stack.
pub const MAX_NESTING: usize = 64;

const JIT_MARKER: &str = "has({}.jitaccessconstraint)";
const MPA_MARKER: &str = "has({}.multipartyapprovalconstraint)";
const REVIEWER_MARKER: &str = "has({}.multipartyapprovalreviewerconstraint)";

/// Reads an eligibility marker from a binding's condition expression.
///
/// `None` when the expression has no marker at its top level, or cannot be scanned. When both
/// markers are present, self-approval (JIT) wins, as in the reference app.
pub fn eligibility(expression: &str) -> Option<Eligibility> {
    let clauses = split_and(expression).ok()?;
    let mut activation_type = None;
    let mut others = Vec::new();
    for clause in clauses {
        match marker(&clause) {
            Some(ActivationType::Jit) => activation_type = Some(ActivationType::Jit),
            Some(ActivationType::Mpa) => {
                activation_type = activation_type.or(Some(ActivationType::Mpa));
            }
            None if is_reviewer_marker(&clause) => {}
            None => others.push(clause),
        }
    }
    Some(Eligibility {
        activation_type: activation_type?,
        resource_condition: ResourceCondition::from_clauses(&others),
    })
}

/// Reads the designated-approver marker, `has({}.multiPartyApprovalReviewerConstraint)`: its
/// holders may approve peer-approval requests for the role under the binding's resource
/// condition, without being able to activate it. `Some(condition)` when the marker stands at
/// the top level of the expression.
pub fn reviewer_condition(expression: &str) -> Option<Option<ResourceCondition>> {
    let clauses = split_and(expression).ok()?;
    if !clauses.iter().any(|c| is_reviewer_marker(c)) {
        return None;
    }
    let others: Vec<String> = clauses.into_iter().filter(|c| !is_reviewer_marker(c) && marker(c).is_none()).collect();
    Some(ResourceCondition::from_clauses(&others))
}

fn is_reviewer_marker(clause: &str) -> bool {
    let squeezed: String = clause.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_lowercase();
    squeezed == REVIEWER_MARKER
}

/// What a condition is known to be at a given time, as IAM's analyzers report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evaluation {
    True,
    False,
    /// Depends on more than the time (a resource attribute, an eligibility marker).
    Conditional,
}

/// Evaluates the top-level `request.time` comparisons of `expression` at `at`: false if one
/// of them fails, true if all clauses are such comparisons and hold, conditional otherwise.
/// An eligible binding whose time clauses fail grants nothing, whichever catalog reads it.
pub fn evaluate_at(expression: &str, at: crate::timestamp::Timestamp) -> Evaluation {
    let Ok(clauses) = split_and(expression) else {
        return Evaluation::Conditional;
    };
    let mut all_true = true;
    for clause in clauses {
        match time_clause_holds(&clause, at) {
            Some(false) => return Evaluation::False,
            Some(true) => {}
            None => all_true = false,
        }
    }
    if all_true { Evaluation::True } else { Evaluation::Conditional }
}

fn time_clause_holds(clause: &str, at: crate::timestamp::Timestamp) -> Option<bool> {
    use crate::timestamp::Timestamp;
    for (operator, holds) in [
        (">=", (|a: Timestamp, b: Timestamp| a >= b) as fn(Timestamp, Timestamp) -> bool),
        ("<=", |a, b| a <= b),
        ("<", |a, b| a < b),
        (">", |a, b| a > b),
    ] {
        let prefix = format!("request.time {operator} timestamp(");
        if let Some(rest) = clause.strip_prefix(&prefix) {
            let quoted = rest.strip_suffix(')')?;
            let bound = quoted
                .strip_prefix('"')
                .and_then(|q| q.strip_suffix('"'))
                .or_else(|| quoted.strip_prefix('\'').and_then(|q| q.strip_suffix('\'')))?;
            return Some(holds(at, Timestamp::parse_rfc3339(&without_fraction(bound))?));
        }
    }
    None
}

/// `2024-01-01T00:00:00.123Z` → `2024-01-01T00:00:00Z`.
pub fn without_fraction(text: &str) -> String {
    match (text.find('.'), text.ends_with('Z')) {
        (Some(19), true) => format!("{}Z", &text[..19]),
        _ => text.to_string(),
    }
}

/// Splits an expression into its top-level `&&` clauses.
///
/// Comments are dropped, whitespace outside strings is collapsed, and a clause wrapped whole
/// in parentheses is unwrapped and split again, so `(a && b) && c` gives `a`, `b`, `c`. A part
/// that holds a top-level `||` or `?:` is kept whole, since `a || b && c` is not `c`-and-more.
pub fn split_and(expression: &str) -> Result<Vec<String>, ConditionError> {
    if expression.len() > MAX_CONDITION_BYTES {
        return Err(ConditionError::TooLong { length: expression.len() });
    }
    let cleaned = blank_comments(expression)?;
    if cleaned.trim().is_empty() {
        return Err(ConditionError::Empty);
    }
    let mut clauses = Vec::new();
    split_into(&cleaned, 0, &mut clauses)?;
    Ok(clauses)
}

impl ResourceCondition {
    /// Canonicalises a resource condition written by hand or carried in an ID or a token.
    pub fn parse(text: &str) -> Result<ResourceCondition, ConditionError> {
        let clauses = split_and(text)?;
        ResourceCondition::from_clauses(&clauses).ok_or(ConditionError::Empty)
    }

    /// Joins clauses that came out of [`split_and`]; `None` when there are none.
    pub fn from_clauses(clauses: &[String]) -> Option<ResourceCondition> {
        match clauses {
            [] => None,
            [only] => Some(ResourceCondition(only.clone())),
            many => Some(ResourceCondition(
                many.iter().map(|clause| format!("({clause})")).collect::<Vec<_>>().join(" && "),
            )),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ResourceCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn marker(clause: &str) -> Option<ActivationType> {
    let squeezed: String = clause.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_lowercase();
    match squeezed.as_str() {
        JIT_MARKER => Some(ActivationType::Jit),
        MPA_MARKER => Some(ActivationType::Mpa),
        _ => None,
    }
}

/// What the scanner found at the top level of a piece of text.
struct TopLevel {
    and_positions: Vec<usize>,
    has_or_or_conditional: bool,
    /// The piece is `( … )` with the first parenthesis closed by the last character.
    wrapped_in_parentheses: bool,
}

fn split_into(text: &str, offset: usize, out: &mut Vec<String>) -> Result<(), ConditionError> {
    let (mut text, mut offset) = (text, offset);
    // Unwrap `( … )` in a loop, not by recursion: only a split at `&&` recurses, and the
    // scanner has already refused nesting deeper than MAX_NESTING.
    let (trimmed, offset, top) = loop {
        let leading = text.len() - text.trim_start().len();
        let trimmed = text.trim();
        offset += leading;
        // `()` and the like: nothing to evaluate, and nothing CEL accepts.
        if trimmed.is_empty() {
            return Err(ConditionError::EmptyClause { position: offset });
        }
        let top = scan(trimmed, offset)?;
        if top.has_or_or_conditional || !top.and_positions.is_empty() || !top.wrapped_in_parentheses {
            break (trimmed, offset, top);
        }
        text = &trimmed[1..trimmed.len() - 1];
        offset += 1;
    };
    if top.has_or_or_conditional || top.and_positions.is_empty() {
        out.push(collapse_whitespace(trimmed));
        return Ok(());
    }
    let mut start = 0;
    for position in top.and_positions.iter().copied().chain([trimmed.len()]) {
        let part = &trimmed[start..position];
        if part.trim().is_empty() {
            return Err(ConditionError::EmptyClause { position: offset + position });
        }
        split_into(part, offset + start, out)?;
        start = position + 2;
    }
    Ok(())
}

fn scan(text: &str, offset: usize) -> Result<TopLevel, ConditionError> {
    let bytes = text.as_bytes();
    let mut stack: Vec<(u8, usize)> = Vec::new();
    let mut top = TopLevel { and_positions: Vec::new(), has_or_or_conditional: false, wrapped_in_parentheses: false };
    let mut first_parenthesis_closed_at = None;
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        match byte {
            b'"' | b'\'' => {
                i = skip_string(bytes, i, offset)?;
                continue;
            }
            b'(' | b'[' | b'{' => {
                if stack.len() >= MAX_NESTING {
                    return Err(ConditionError::TooDeep { position: offset + i });
                }
                stack.push((byte, i));
            }
            b')' | b']' | b'}' => {
                let expected = match byte {
                    b')' => b'(',
                    b']' => b'[',
                    _ => b'{',
                };
                match stack.pop() {
                    Some((open, open_at)) if open == expected => {
                        if open_at == 0 && first_parenthesis_closed_at.is_none() {
                            first_parenthesis_closed_at = Some(i);
                        }
                    }
                    _ => {
                        return Err(ConditionError::Unbalanced { bracket: byte as char, position: offset + i });
                    }
                }
            }
            b'&' if stack.is_empty() && bytes.get(i + 1) == Some(&b'&') => {
                top.and_positions.push(i);
                i += 2;
                continue;
            }
            b'|' if stack.is_empty() && bytes.get(i + 1) == Some(&b'|') => {
                top.has_or_or_conditional = true;
            }
            // `?` is the conditional operator, except in optional selection `a.?b` / `a[?b]`.
            b'?' if stack.is_empty() && !matches!(previous_non_space(bytes, i), Some(b'.' | b'[')) => {
                top.has_or_or_conditional = true;
            }
            _ => {}
        }
        i += 1;
    }
    if let Some((open, position)) = stack.pop() {
        return Err(ConditionError::Unbalanced { bracket: open as char, position: offset + position });
    }
    top.wrapped_in_parentheses = bytes.first() == Some(&b'(') && first_parenthesis_closed_at == Some(bytes.len() - 1);
    Ok(top)
}

fn previous_non_space(bytes: &[u8], i: usize) -> Option<u8> {
    bytes[..i].iter().rev().copied().find(|b| !b.is_ascii_whitespace())
}

/// Returns the index just past the string literal that starts at `start`.
fn skip_string(bytes: &[u8], start: usize, offset: usize) -> Result<usize, ConditionError> {
    let quote = bytes[start];
    let is_identifier = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    // A raw string is `r"…"` or `R"…"` (also after a bytes prefix, `br"…"`): no escapes.
    let raw = start > 0
        && matches!(bytes[start - 1], b'r' | b'R')
        && (start < 2
            || !is_identifier(bytes[start - 2])
            || (matches!(bytes[start - 2], b'b' | b'B') && (start < 3 || !is_identifier(bytes[start - 3]))));
    let triple = bytes.get(start + 1) == Some(&quote) && bytes.get(start + 2) == Some(&quote);
    let mut i = if triple { start + 3 } else { start + 1 };
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if !raw => i += 2,
            b if b == quote => {
                if !triple {
                    return Ok(i + 1);
                }
                if bytes.get(i + 1) == Some(&quote) && bytes.get(i + 2) == Some(&quote) {
                    return Ok(i + 3);
                }
                i += 1;
            }
            b'\n' if !triple => break,
            _ => i += 1,
        }
    }
    Err(ConditionError::UnterminatedString { position: offset + start })
}

/// Replaces `//` comments (outside strings) with spaces, keeping every other byte in place so
/// that error positions are those of the input.
fn blank_comments(expression: &str) -> Result<String, ConditionError> {
    let bytes = expression.as_bytes();
    let mut out = bytes.to_vec();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' | b'\'' => i = skip_string(bytes, i, 0)?,
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    out[i] = b' ';
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    // Only ASCII bytes were replaced, and whole comments at that, so this cannot fail; the
    // fallback keeps the function total anyway.
    String::from_utf8(out).map_err(|_| ConditionError::Empty)
}

/// Collapses each run of whitespace outside string literals to one space.
fn collapse_whitespace(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut last_was_space = false;
    while i < bytes.len() {
        if matches!(bytes[i], b'"' | b'\'') {
            // The text was scanned before, so the string is terminated.
            let end = skip_string(bytes, i, 0).unwrap_or(bytes.len());
            out.push_str(&text[i..end]);
            i = end;
            last_was_space = false;
            continue;
        }
        let c = text[i..].chars().next().unwrap_or(' ');
        if c.is_whitespace() {
            if !last_was_space {
                out.push(' ');
            }
            last_was_space = true;
        } else {
            out.push(c);
            last_was_space = false;
        }
        i += c.len_utf8();
    }
    out.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check_split(expression: &str, expected: &[&str]) {
        let clauses = split_and(expression).unwrap_or_else(|e| panic!("{expression:?}: {e}"));
        assert_eq!(clauses, expected, "{expression:?}");
    }

    #[test]
    fn splits_top_level_and() {
        check_split("a && b", &["a", "b"]);
        check_split("  a&&b&&c ", &["a", "b", "c"]);
        check_split("(a && b) && c", &["a", "b", "c"]);
        check_split("((a)) && (b)", &["a", "b"]);
        check_split("f(a && b) && c", &["f(a && b)", "c"]);
        check_split("[a && b] && {'k': c && d}", &["[a && b]", "{'k': c && d}"]);
        check_split("(a) && (b) || c", &["(a) && (b) || c"]);
        check_split("a || b && c", &["a || b && c"]);
        check_split("(a || b) && c", &["a || b", "c"]);
        check_split("a ? b : c && d", &["a ? b : c && d"]);
        check_split("a.?b && c", &["a.?b", "c"]);
        check_split("(a) || (b)", &["(a) || (b)"]);
    }

    #[test]
    fn respects_strings_and_escapes() {
        check_split(r#"a == "x && y" && b"#, &[r#"a == "x && y""#, "b"]);
        check_split(r#"a == 'it''s' && b"#, &["a == 'it''s'", "b"]);
        check_split(r#"a == "q\" && )" && b"#, &[r#"a == "q\" && )""#, "b"]);
        check_split(r#"a == r"raw\" && b"#, &[r#"a == r"raw\""#, "b"]);
        check_split("a == \"\"\"x \" && ) \"\"\" && b", &["a == \"\"\"x \" && ) \"\"\"", "b"]);
        check_split("a == \"two  spaces\" &&   b", &["a == \"two  spaces\"", "b"]);
        check_split("a == \"// not a comment\" && b", &["a == \"// not a comment\"", "b"]);
    }

    #[test]
    fn drops_comments_and_collapses_whitespace() {
        check_split(
            "// eligible for self-approval\nhas({}.jitAccessConstraint) &&\n  // only buckets\n  resource.type ==\n 'storage.googleapis.com/Bucket' // trailing",
            &["has({}.jitAccessConstraint)", "resource.type == 'storage.googleapis.com/Bucket'"],
        );
    }

    #[test]
    fn reports_malformed_expressions_with_position() {
        let check = |expression: &str, expected: ConditionError| {
            assert_eq!(split_and(expression), Err(expected), "{expression:?}");
        };
        check("", ConditionError::Empty);
        check("  // only a comment", ConditionError::Empty);
        check("(a && b", ConditionError::Unbalanced { bracket: '(', position: 0 });
        check("a && b)", ConditionError::Unbalanced { bracket: ')', position: 6 });
        check("(a]", ConditionError::Unbalanced { bracket: ']', position: 2 });
        check("a == \"open", ConditionError::UnterminatedString { position: 5 });
        check("a && && b", ConditionError::EmptyClause { position: 5 });
        check("a &&", ConditionError::EmptyClause { position: 4 });
        check("()", ConditionError::EmptyClause { position: 1 });
        check("a && ( )", ConditionError::EmptyClause { position: 7 });
    }

    #[test]
    fn bounds_length_and_nesting_without_recursing_per_parenthesis() {
        // The attack: thousands of nested parentheses once overflowed the stack.
        let deep = format!("{}a{}", "(".repeat(5_000), ")".repeat(5_000));
        assert_eq!(split_and(&deep), Err(ConditionError::TooDeep { position: MAX_NESTING }));
        let long = format!("a == '{}'", "x".repeat(MAX_CONDITION_BYTES));
        assert_eq!(split_and(&long), Err(ConditionError::TooLong { length: long.len() }));
        // As deep as allowed still works, on a small stack.
        let allowed = format!("{}a{} && b", "(".repeat(MAX_NESTING), ")".repeat(MAX_NESTING));
        let clauses = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || split_and(&allowed))
            .expect("thread")
            .join()
            .expect("no overflow");
        assert_eq!(clauses, Ok(vec!["a".to_string(), "b".to_string()]));
        let nested_ands = format!("{}a{}", "(a && ".repeat(MAX_NESTING), ")".repeat(MAX_NESTING));
        assert!(split_and(&nested_ands).is_ok());
    }

    fn check_eligibility(expression: &str, expected: Option<(ActivationType, Option<&str>)>) {
        let actual =
            eligibility(expression).map(|e| (e.activation_type, e.resource_condition.map(|c| c.as_str().to_string())));
        let expected = expected.map(|(t, c)| (t, c.map(str::to_string)));
        assert_eq!(actual, expected, "{expression:?}");
    }

    #[test]
    fn recognises_markers_tolerant_of_case_and_whitespace() {
        use ActivationType::{Jit, Mpa};
        check_eligibility("has({}.jitAccessConstraint)", Some((Jit, None)));
        check_eligibility("has({}.multiPartyApprovalConstraint)", Some((Mpa, None)));
        check_eligibility(" HAS ( { } . JitAccessConstraint ) ", Some((Jit, None)));
        check_eligibility("has(\n{}.multipartyapprovalconstraint\n)", Some((Mpa, None)));
        check_eligibility("(has({}.jitAccessConstraint))", Some((Jit, None)));
    }

    #[test]
    fn other_clauses_form_the_resource_condition() {
        use ActivationType::{Jit, Mpa};
        check_eligibility(
            "has({}.jitAccessConstraint) && resource.name.startsWith('projects/_/buckets/logs')",
            Some((Jit, Some("resource.name.startsWith('projects/_/buckets/logs')"))),
        );
        check_eligibility(
            "resource.type == 'a' && has({}.multiPartyApprovalConstraint) && resource.name == 'b'",
            Some((Mpa, Some("(resource.type == 'a') && (resource.name == 'b')"))),
        );
        check_eligibility("has({}.jitAccessConstraint) && (a || b)", Some((Jit, Some("a || b"))));
    }

    #[test]
    fn marker_under_or_or_conditional_is_not_eligible() {
        check_eligibility("has({}.jitAccessConstraint) || true", None);
        check_eligibility("true || has({}.jitAccessConstraint)", None);
        check_eligibility("a || b && has({}.jitAccessConstraint)", None);
        check_eligibility("x ? true : y && has({}.multiPartyApprovalConstraint)", None);
        check_eligibility("!has({}.jitAccessConstraint)", None);
        check_eligibility("has({}.jitAccessConstraint) == false", None);
        check_eligibility("\"has({}.jitAccessConstraint)\"", None);
        check_eligibility("// has({}.jitAccessConstraint)\ntrue", None);
        check_eligibility("request.time < timestamp('2030-01-01T00:00:00Z')", None);
        check_eligibility("has({}.jitAccessConstraint) && (", None);
    }

    #[test]
    fn the_reviewer_marker_designates_approvers_and_grants_no_activation() {
        let expression = "has({}.multiPartyApprovalReviewerConstraint) && resource.type == 'a'";
        assert_eq!(eligibility(expression), None, "a designated approver cannot activate");
        assert_eq!(
            reviewer_condition(expression),
            Some(Some(ResourceCondition::parse("resource.type == 'a'").expect("condition")))
        );
        assert_eq!(reviewer_condition("has({}.multiPartyApprovalReviewerConstraint)"), Some(None));
        assert_eq!(reviewer_condition("has({}.multiPartyApprovalReviewerConstraint) || true"), None);
        assert_eq!(reviewer_condition("has({}.multiPartyApprovalConstraint)"), None);
    }

    #[test]
    fn jit_wins_when_both_markers_are_present() {
        check_eligibility(
            "has({}.multiPartyApprovalConstraint) && has({}.jitAccessConstraint)",
            Some((ActivationType::Jit, None)),
        );
    }

    #[test]
    fn resource_condition_parse_is_canonical() {
        let parsed = ResourceCondition::parse("  (a)&&   b ").expect("valid");
        assert_eq!(parsed.as_str(), "(a) && (b)");
        assert_eq!(ResourceCondition::parse(parsed.as_str()), Ok(parsed));
        assert_eq!(
            ResourceCondition::parse("true) || (true"),
            Err(ConditionError::Unbalanced { bracket: ')', position: 4 })
        );
    }

    #[test]
    fn evaluates_time_clauses_as_the_analyzer_does() {
        let at = |s: i64| crate::timestamp::Timestamp::from_unix_seconds(s).expect("in range");
        let window = "(request.time >= timestamp(\"1970-01-01T00:00:10Z\") && request.time < timestamp(\"1970-01-01T00:00:20Z\"))";
        assert_eq!(evaluate_at("has({}.jitAccessConstraint)", at(0)), Evaluation::Conditional);
        assert_eq!(evaluate_at(window, at(15)), Evaluation::True);
        assert_eq!(evaluate_at(window, at(20)), Evaluation::False);
        assert_eq!(evaluate_at(window, at(5)), Evaluation::False);
        assert_eq!(evaluate_at(&format!("{window} && resource.type == 'x'"), at(15)), Evaluation::Conditional);
        assert_eq!(evaluate_at(&format!("{window} && resource.type == 'x'"), at(25)), Evaluation::False);
        assert_eq!(evaluate_at("request.time <= timestamp('1970-01-01T00:00:10.500Z')", at(10)), Evaluation::True);
        assert_eq!(evaluate_at("(", at(0)), Evaluation::Conditional);
    }

    proptest! {
        #[test]
        fn scanning_never_panics(expression in "\\PC{0,80}") {
            let _ = split_and(&expression);
            let _ = eligibility(&expression);
        }

        #[test]
        fn canonical_form_is_stable(expression in "[a-c() &|'\"\\\\ \n/]{0,40}") {
            if let Ok(condition) = ResourceCondition::parse(&expression) {
                prop_assert_eq!(ResourceCondition::parse(condition.as_str()), Ok(condition.clone()));
            }
        }
    }
}
