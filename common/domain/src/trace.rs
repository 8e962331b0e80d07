//! Cloud Trace context of a request, from `traceparent` (W3C) or `X-Cloud-Trace-Context`, and
//! the log-entry fields that let Cloud Logging group a request's lines and link them to its
//! trace (`logging.googleapis.com/trace`, `…/spanId`, `…/trace_sampled`).

/// A request's place in a trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// 16 lowercase hex digits.
    pub span_id: String,
    pub sampled: bool,
}

/// The fields [`lift`] looks for in a log line's spans.
pub const TRACE_FIELD: &str = "trace";
pub const SPAN_FIELD: &str = "span_id";
pub const SAMPLED_FIELD: &str = "trace_sampled";

impl TraceContext {
    /// `traceparent` wins when both headers are present and valid, as on Cloud Run today.
    pub fn from_headers(traceparent: Option<&str>, cloud_trace_context: Option<&str>) -> Option<TraceContext> {
        traceparent.and_then(parse_traceparent).or_else(|| cloud_trace_context.and_then(parse_cloud_trace_context))
    }
}

fn is_hex(text: &str, length: usize) -> bool {
    text.len() == length && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `00-TRACE(32 hex)-SPAN(16 hex)-FLAGS(2 hex)`; all-zero IDs are invalid.
fn parse_traceparent(value: &str) -> Option<TraceContext> {
    let mut parts = value.trim().split('-');
    let (version, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let valid = is_hex(version, 2)
        && version != "ff"
        && is_hex(trace, 32)
        && is_hex(span, 16)
        && is_hex(flags, 2)
        && trace.bytes().any(|b| b != b'0')
        && span.bytes().any(|b| b != b'0');
    if !valid || (version == "00" && parts.next().is_some()) {
        return None;
    }
    let sampled = u8::from_str_radix(flags, 16).ok()? & 1 == 1;
    Some(TraceContext { trace_id: trace.to_string(), span_id: span.to_string(), sampled })
}

/// `TRACE_ID/SPAN_ID;o=OPTIONS`, the span ID in decimal; only the trace ID is required.
fn parse_cloud_trace_context(value: &str) -> Option<TraceContext> {
    let (ids, options) = value.trim().split_once(';').unwrap_or((value.trim(), ""));
    let (trace, span) = ids.split_once('/').unwrap_or((ids, ""));
    let trace = trace.to_ascii_lowercase();
    if !is_hex(&trace, 32) {
        return None;
    }
    let span_id = span.parse::<u64>().ok().filter(|s| *s != 0).map(|s| format!("{s:016x}")).unwrap_or_default();
    Some(TraceContext { trace_id: trace, span_id, sampled: options.trim() == "o=1" })
}

/// Lifts the trace fields of a Cloud Logging JSON line's request span (as tracing-stackdriver
/// writes it, under `span`/`spans`) to the top-level keys Cloud Logging reads. Lines without
/// them, or that are not JSON objects, come back unchanged.
pub fn lift(line: &str, project: &str) -> Option<String> {
    let mut entry: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line).ok()?;
    let spans = entry.get("spans").and_then(|s| s.as_array()).cloned().unwrap_or_default();
    let span = spans
        .iter()
        .chain(entry.get("span"))
        .find(|span| span.get(TRACE_FIELD).and_then(|t| t.as_str()).is_some_and(|t| !t.is_empty()))?
        .clone();
    let trace = span[TRACE_FIELD].as_str()?;
    entry.insert("logging.googleapis.com/trace".into(), format!("projects/{project}/traces/{trace}").into());
    if let Some(span_id) = span[SPAN_FIELD].as_str().filter(|s| !s.is_empty()) {
        entry.insert("logging.googleapis.com/spanId".into(), span_id.into());
    }
    if span[SAMPLED_FIELD].as_bool() == Some(true) {
        entry.insert("logging.googleapis.com/trace_sampled".into(), true.into());
    }
    serde_json::to_string(&entry).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    #[test]
    fn reads_traceparent_and_cloud_trace_context() {
        let parent = format!("00-{TRACE}-00f067aa0ba902b7-01");
        assert_eq!(
            TraceContext::from_headers(Some(&parent), None),
            Some(TraceContext { trace_id: TRACE.into(), span_id: "00f067aa0ba902b7".into(), sampled: true })
        );
        let cloud = format!("{}/1;o=1", TRACE.to_uppercase());
        assert_eq!(
            TraceContext::from_headers(None, Some(&cloud)),
            Some(TraceContext { trace_id: TRACE.into(), span_id: "0000000000000001".into(), sampled: true })
        );
        let unsampled = TraceContext::from_headers(None, Some(TRACE)).expect("trace only");
        assert_eq!((unsampled.span_id.as_str(), unsampled.sampled), ("", false));
        // traceparent wins; a broken one falls back.
        let both = TraceContext::from_headers(Some(&parent), Some(&cloud)).expect("valid");
        assert_eq!(both.span_id, "00f067aa0ba902b7");
        assert_eq!(
            TraceContext::from_headers(Some("00-xyz"), Some(&cloud)).expect("fallback").span_id,
            "0000000000000001"
        );
    }

    #[test]
    fn refuses_malformed_headers() {
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            &format!("00-{TRACE}-0000000000000000-01"),
            &format!("ff-{TRACE}-00f067aa0ba902b7-01"),
            &format!("00-{TRACE}-00f067aa0ba902b7-01-extra"),
            &format!("00-{}-00f067aa0ba902b7-01", TRACE.to_uppercase()),
            "00-\"} injected-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::from_headers(Some(bad), None), None, "{bad}");
        }
        for bad in ["", "abc/1", "\"}/1;o=1", &format!("{TRACE}x/1")] {
            assert_eq!(TraceContext::from_headers(None, Some(bad)), None, "{bad}");
        }
    }

    #[test]
    fn lifts_the_request_spans_trace_to_the_top() {
        let line = format!(
            r#"{{"time":"t","severity":"INFO","message":"m","span":{{"name":"inner"}},"spans":[{{"name":"request","trace":"{TRACE}","span_id":"00f067aa0ba902b7","trace_sampled":true}},{{"name":"inner"}}]}}"#
        );
        let lifted: serde_json::Value =
            serde_json::from_str(&lift(&line, "jit-project").expect("lifted")).expect("json");
        assert_eq!(lifted["logging.googleapis.com/trace"], format!("projects/jit-project/traces/{TRACE}"));
        assert_eq!(lifted["logging.googleapis.com/spanId"], "00f067aa0ba902b7");
        assert_eq!(lifted["logging.googleapis.com/trace_sampled"], true);
        assert_eq!(lifted["message"], "m");
        assert_eq!(lift(r#"{"message":"no span"}"#, "p"), None);
        assert_eq!(lift("not json", "p"), None);
    }
}
