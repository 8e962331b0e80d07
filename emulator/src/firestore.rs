//! The part of Firestore's REST API the request ledger uses, so that the local run needs no
//! Java: `GET` a document, `:commit` (updates and deletes) with its preconditions, and
//! `:runQuery` with equality and array-contains filters, one order (a field or `__name__`), a
//! cursor on the document name and a limit. The ledger's adapter tests run against this
//! and against Google's own Firestore emulator, which holds this one to the real behaviour:
//! a create over an existing document is 409 `ALREADY_EXISTS`, a stale `updateTime` 400
//! `FAILED_PRECONDITION`, `exists: true` on a missing one 404.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::google::GoogleError;

#[derive(Debug, Clone)]
struct Document {
    fields: Map<String, Value>,
    create_time: String,
    update_time: String,
}

/// Every document, by full name, and the clock of update times.
#[derive(Debug, Default)]
pub struct Firestore {
    documents: BTreeMap<String, Document>,
    last_micros: i64,
}

impl Firestore {
    /// A fresh update time: microseconds, strictly increasing, as Firestore's are.
    fn tick(&mut self) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or_default();
        self.last_micros = now.max(self.last_micros + 1);
        let seconds = self.last_micros.div_euclid(1_000_000);
        let micros = self.last_micros.rem_euclid(1_000_000);
        let base = common::timestamp::Timestamp::from_unix_seconds(seconds).map(|t| t.to_string()).unwrap_or_default();
        format!("{}.{micros:06}Z", base.trim_end_matches('Z'))
    }

    /// `GET /v1/{database}/documents/{collection}/{id}`
    pub fn get(&self, name: &str) -> Result<Value, GoogleError> {
        self.documents
            .get(name)
            .map(|document| render(name, document))
            .ok_or_else(|| GoogleError::new(404, &format!("Document ({name}) not found.")))
    }

    /// `POST /v1/{database}/documents:commit`: every write applies, in order, or none does.
    pub fn commit(&mut self, database: &str, body: &Value) -> Result<Value, GoogleError> {
        let writes = body["writes"].as_array().cloned().unwrap_or_default();
        // Only the written documents are staged: a clone of the store per commit made the
        // emulator, not the functions, the bottleneck of a load test.
        let mut staged: BTreeMap<String, Document> = BTreeMap::new();
        let time = self.tick();
        let mut results = Vec::new();
        let mut deleted: Vec<String> = Vec::new();
        for write in &writes {
            if let Some(name) = write["delete"].as_str() {
                let existing = staged.get(name).or_else(|| self.documents.get(name));
                if let Some(wanted) = write["currentDocument"]["updateTime"].as_str()
                    && existing.map(|d| d.update_time.as_str()) != Some(wanted)
                {
                    return Err(GoogleError::with_status(
                        400,
                        "FAILED_PRECONDITION",
                        &format!("the stored version does not match the required base version ({wanted})"),
                    ));
                }
                staged.remove(name);
                deleted.push(name.to_string());
                results.push(json!({"updateTime": time}));
                continue;
            }
            let update = &write["update"];
            let name = update["name"].as_str().ok_or_else(|| GoogleError::new(400, "write.update.name is required"))?;
            if !name.starts_with(&format!("{database}/documents/")) {
                return Err(GoogleError::new(400, &format!("Document {name} is not in database {database}")));
            }
            let existing = staged.get(name).or_else(|| self.documents.get(name));
            let precondition = &write["currentDocument"];
            if let Some(exists) = precondition["exists"].as_bool() {
                match (exists, existing) {
                    (false, Some(_)) => {
                        return Err(GoogleError::with_status(
                            409,
                            "ALREADY_EXISTS",
                            &format!("Document already exists: {name}"),
                        ));
                    }
                    (true, None) => return Err(GoogleError::new(404, &format!("No document to update: {name}"))),
                    _ => {}
                }
            }
            if let Some(wanted) = precondition["updateTime"].as_str() {
                let stored = existing.map(|d| d.update_time.as_str());
                if stored != Some(wanted) {
                    return Err(GoogleError::with_status(
                        400,
                        "FAILED_PRECONDITION",
                        &format!(
                            "the stored version ({}) does not match the required base version ({wanted})",
                            stored.unwrap_or("none")
                        ),
                    ));
                }
            }
            let fields = update["fields"].as_object().cloned().unwrap_or_default();
            let create_time = existing.map(|d| d.create_time.clone()).unwrap_or_else(|| time.clone());
            staged.insert(name.to_string(), Document { fields, create_time, update_time: time.clone() });
            results.push(json!({"updateTime": time}));
        }
        for name in deleted.iter().filter(|name| !staged.contains_key(*name)) {
            self.documents.remove(name);
        }
        self.documents.extend(staged);
        Ok(json!({"writeResults": results, "commitTime": time}))
    }

    /// `POST /v1/{database}/documents:runQuery`: a collection, filters, one order, a limit.
    pub fn run_query(&self, database: &str, body: &Value) -> Result<Value, GoogleError> {
        let query = &body["structuredQuery"];
        let collection = query["from"][0]["collectionId"]
            .as_str()
            .ok_or_else(|| GoogleError::new(400, "structuredQuery.from needs a collectionId"))?;
        let prefix = format!("{database}/documents/{collection}/");
        let mut matches: Vec<(&String, &Document)> = Vec::new();
        for (name, document) in &self.documents {
            let Some(id) = name.strip_prefix(&prefix) else { continue };
            if id.contains('/') {
                continue;
            }
            if query["where"].is_null() || filter(&query["where"], &document.fields)? {
                matches.push((name, document));
            }
        }
        if let Some(order) = query["orderBy"].as_array().and_then(|o| o.first()) {
            let field = order["field"]["fieldPath"].as_str().unwrap_or_default().to_string();
            if field == "__name__" {
                matches.sort_by(|a, b| a.0.cmp(b.0));
            } else {
                matches.sort_by(|a, b| compare(a.1.fields.get(&field), b.1.fields.get(&field)));
            }
            if order["direction"].as_str() == Some("DESCENDING") {
                matches.reverse();
            }
        }
        // A cursor on the document name (the only one the ledger pages with).
        if let Some(start) = query["startAt"]["values"][0]["referenceValue"].as_str() {
            let before = query["startAt"]["before"].as_bool().unwrap_or(false);
            matches.retain(|(name, _)| if before { name.as_str() >= start } else { name.as_str() > start });
        }
        let limit = match &query["limit"] {
            Value::Null => usize::MAX,
            value => value
                .as_u64()
                .or_else(|| value["value"].as_u64())
                .ok_or_else(|| GoogleError::new(400, "limit must be a non-negative number"))?
                as usize,
        };
        let read_time = common::timestamp::Timestamp::now().to_string();
        let results: Vec<Value> = matches
            .into_iter()
            .take(limit)
            .map(|(name, document)| json!({"document": render(name, document), "readTime": read_time}))
            .collect();
        if results.is_empty() {
            return Ok(json!([{"readTime": read_time}]));
        }
        Ok(Value::Array(results))
    }
}

fn render(name: &str, document: &Document) -> Value {
    json!({"name": name, "fields": document.fields, "createTime": document.create_time, "updateTime": document.update_time})
}

fn filter(filter: &Value, fields: &Map<String, Value>) -> Result<bool, GoogleError> {
    if let Some(composite) = filter.get("compositeFilter") {
        if composite["op"].as_str() != Some("AND") {
            return Err(GoogleError::new(400, "the emulator serves AND composite filters only"));
        }
        for part in composite["filters"].as_array().into_iter().flatten() {
            if !self::filter(part, fields)? {
                return Ok(false);
            }
        }
        return Ok(true);
    }
    let field_filter = filter.get("fieldFilter").ok_or_else(|| GoogleError::new(400, "unsupported filter"))?;
    let path = field_filter["field"]["fieldPath"].as_str().unwrap_or_default();
    let wanted = &field_filter["value"];
    let value = fields.get(path);
    match field_filter["op"].as_str() {
        Some("EQUAL") => Ok(value == Some(wanted)),
        Some("ARRAY_CONTAINS") => {
            Ok(value.and_then(|v| v["arrayValue"]["values"].as_array()).is_some_and(|values| values.contains(wanted)))
        }
        Some(other) => Err(GoogleError::new(400, &format!("the emulator does not serve the {other} operator"))),
        None => Err(GoogleError::new(400, "fieldFilter.op is required")),
    }
}

fn compare(a: Option<&Value>, b: Option<&Value>) -> std::cmp::Ordering {
    let key = |v: Option<&Value>| -> (i64, String) {
        match v {
            Some(v) => (
                v["integerValue"].as_str().and_then(|s| s.parse().ok()).unwrap_or(i64::MIN),
                v["stringValue"].as_str().or(v["timestampValue"].as_str()).unwrap_or("").to_string(),
            ),
            None => (i64::MIN, String::new()),
        }
    };
    key(a).cmp(&key(b))
}
