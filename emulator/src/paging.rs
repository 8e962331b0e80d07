//! Query strings and pages, as Google's list and search methods take and give them: opaque
//! page tokens (refused when not ours), page sizes with a method's default and maximum, and
//! the organization's `max_page_size` test device on top.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::google::GoogleError;

/// The query string's pairs, decoded, in order.
pub fn parameters(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

/// The last value of `name`, if any.
pub fn parameter<'a>(parameters: &'a [(String, String)], name: &str) -> Option<&'a str> {
    parameters.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Every value of a repeated `name`.
pub fn repeated<'a>(parameters: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    parameters.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
}

/// How a method pages: its default size, and what it does above its maximum.
#[derive(Debug, Clone, Copy)]
pub struct PageRule {
    pub default: usize,
    pub max: usize,
    /// Cloud Asset caps a larger size silently; Cloud Identity refuses it.
    pub refuse_above_max: bool,
}

/// One page of `items`, and the token of the next one.
pub fn page<T: Clone>(
    items: &[T],
    parameters: &[(String, String)],
    rule: PageRule,
    test_cap: Option<usize>,
) -> Result<(Vec<T>, Option<String>), GoogleError> {
    let asked: i64 = match parameter(parameters, "pageSize") {
        None | Some("") => 0,
        Some(text) => text.parse().map_err(|_| GoogleError::new(400, &format!("Invalid pageSize '{text}'")))?,
    };
    let mut size = if asked <= 0 { rule.default } else { asked as usize };
    if size > rule.max {
        if rule.refuse_above_max {
            return Err(GoogleError::new(400, &format!("pageSize must not be greater than {}", rule.max)));
        }
        size = rule.max;
    }
    if let Some(cap) = test_cap {
        size = size.min(cap.max(1));
    }
    let offset = match parameter(parameters, "pageToken") {
        None | Some("") => 0,
        Some(token) => decode_token(token).ok_or_else(|| GoogleError::new(400, "Invalid page token"))?,
    };
    if offset > items.len() {
        return Err(GoogleError::new(400, "Invalid page token"));
    }
    let page: Vec<T> = items.iter().skip(offset).take(size).cloned().collect();
    let next = offset + page.len();
    Ok((page, (next < items.len()).then(|| encode_token(next))))
}

fn encode_token(offset: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("emulator-page:{offset}"))
}

fn decode_token(token: &str) -> Option<usize> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(token).ok()?).ok()?;
    text.strip_prefix("emulator-page:")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(text: &str) -> Vec<(String, String)> {
        parameters(text)
    }

    const CAPPED: PageRule = PageRule { default: 2, max: 3, refuse_above_max: false };
    const REFUSED: PageRule = PageRule { default: 2, max: 3, refuse_above_max: true };

    #[test]
    fn pages_follow_the_methods_rule() {
        let items: Vec<u32> = (0..5).collect();
        let (first, next) = page(&items, &query(""), CAPPED, None).expect("page");
        assert_eq!(first, [0, 1]);
        let (second, next) =
            page(&items, &query(&format!("pageToken={}", next.expect("more"))), CAPPED, None).expect("page");
        assert_eq!(second, [2, 3]);
        let (last, next) =
            page(&items, &query(&format!("pageToken={}", next.expect("more"))), CAPPED, None).expect("page");
        assert_eq!((last, next), (vec![4], None));
        assert_eq!(page(&items, &query("pageSize=100"), CAPPED, None).expect("capped").0.len(), 3);
        assert_eq!(page(&items, &query("pageSize=100"), REFUSED, None).map(|_| ()).expect_err("refused").code, 400);
        assert_eq!(page(&items, &query("pageSize=100"), CAPPED, Some(1)).expect("test cap").0.len(), 1);
        assert_eq!(page(&items, &query("pageToken=forged"), CAPPED, None).map(|_| ()).expect_err("refused").code, 400);
        assert_eq!(page(&items, &query("pageSize=x"), CAPPED, None).map(|_| ()).expect_err("refused").code, 400);
    }
}
