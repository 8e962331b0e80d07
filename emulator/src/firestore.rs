//! The part of Firestore's REST API the request ledger uses, so that the local run needs no
//! Java: `GET` a document, `:commit` (updates and deletes) with its preconditions, and
//! `:runQuery` with equality and array-contains filters, orders (fields or `__name__`), a
//! cursor on the document name and a limit. The ledger's adapter tests run against this
//! and against Google's own Firestore emulator, which holds this one to the real behaviour:
//! a create over an existing document is 409 `ALREADY_EXISTS`, a stale `updateTime` 400
//! `FAILED_PRECONDITION`, `exists: true` on a missing one 404.
//!
//! Document IDs arrive percent-encoded in a `GET`'s path and are decoded (an invalid escape
//! is 400), as any URL path segment is.
//!
//! Indexes, as Firestore (Standard edition) uses them: every field has single-field indexes,
//! which serve any number of equality or array-contains filters (merged) and an order on a
//! single field. Filters plus an order on another field, or several orders, need a composite
//! index; without one Firestore answers 400 `FAILED_PRECONDITION` "The query requires an
//! index", and while one is still building, "That index is currently building". Google's own
//! emulator needs no index, so this one is the only check before production.
//!
//! **Declaring an index.** The composite indexes come from
//! `terraform/modules/jit-access/firestore-indexes.json`, the file Terraform deploys them from:
//! add an entry there (a key, `collectionGroup`, `queryScope: COLLECTION`, and its `fields`,
//! each `fieldPath` with `order` ASCENDING or DESCENDING, or `arrayConfig: CONTAINS`: equality
//! and array-contains fields first, then the order fields with their directions) and both the
//! deployment and the emulator know it. A query is served by one declared index whose fields
//! are its filter fields (any order) followed by its order fields, or by several such indexes
//! that each hold some of the filters (Firestore's index merging).

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::google::GoogleError;

/// The index definitions Terraform deploys, read by the emulator at build time.
pub const DECLARED_INDEXES: &str = include_str!("../../terraform/modules/jit-access/firestore-indexes.json");

/// A composite index, in the shape of Firestore's `Index` resource.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub collection_group: String,
    #[serde(default = "collection_scope")]
    pub query_scope: String,
    pub fields: Vec<IndexField>,
    /// `READY`, or `CREATING` while Firestore builds it (a test device: the file holds none).
    #[serde(default = "ready")]
    pub state: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IndexField {
    pub field_path: String,
    /// `ASCENDING` or `DESCENDING`; absent for an array-contains field.
    #[serde(default)]
    pub order: Option<String>,
    /// `CONTAINS` for an array-contains field.
    #[serde(default)]
    pub array_config: Option<String>,
}

fn collection_scope() -> String {
    "COLLECTION".to_string()
}

fn ready() -> String {
    "READY".to_string()
}

/// The indexes of [`DECLARED_INDEXES`].
pub fn declared_indexes() -> Result<Vec<Index>, GoogleError> {
    #[derive(Deserialize)]
    struct File {
        indexes: BTreeMap<String, Index>,
    }
    let file: File = serde_json::from_str(DECLARED_INDEXES)
        .map_err(|e| GoogleError::new(500, &format!("firestore-indexes.json is not valid: {e}")))?;
    Ok(file.indexes.into_values().collect())
}

#[derive(Debug, Clone)]
struct Document {
    fields: Map<String, Value>,
    create_time: String,
    update_time: String,
}

/// Every document, by full name, the clock of update times, and the composite indexes.
#[derive(Debug)]
pub struct Firestore {
    documents: BTreeMap<String, Document>,
    last_micros: i64,
    indexes: Vec<Index>,
}

impl Default for Firestore {
    /// With the indexes Terraform declares.
    fn default() -> Firestore {
        let indexes = declared_indexes().unwrap_or_else(|error| panic!("{}", error.message));
        Firestore { documents: BTreeMap::new(), last_micros: 0, indexes }
    }
}

impl Firestore {
    /// Replaces the composite indexes, as a deployment without some of them (or with one
    /// still building) would have.
    pub fn set_indexes(&mut self, indexes: Vec<Index>) {
        self.indexes = indexes;
    }

    pub fn indexes(&self) -> &[Index] {
        &self.indexes
    }
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

    /// `POST /v1/{database}/documents:runQuery`: a collection, filters, orders, a limit. The
    /// answer is the stream as REST gives it, a JSON array of `RunQueryResponse`.
    pub fn run_query(&self, database: &str, body: &Value) -> Result<Value, GoogleError> {
        let query = &body["structuredQuery"];
        let collection = query["from"][0]["collectionId"]
            .as_str()
            .ok_or_else(|| GoogleError::new(400, "structuredQuery.from needs a collectionId"))?;
        if query["from"][0]["allDescendants"].as_bool() == Some(true) {
            return Err(GoogleError::new(400, "the emulator serves collection queries only, not collection groups"));
        }
        self.check_index(database, collection, query)?;
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
        let orders: Vec<(String, bool)> = query["orderBy"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|order| {
                let field = order["field"]["fieldPath"].as_str().unwrap_or_default().to_string();
                (field, order["direction"].as_str() == Some("DESCENDING"))
            })
            .collect();
        matches.sort_by(|a, b| {
            orders
                .iter()
                .map(|(field, descending)| {
                    let ordering = if field == "__name__" {
                        a.0.cmp(b.0)
                    } else {
                        compare(a.1.fields.get(field), b.1.fields.get(field))
                    };
                    if *descending { ordering.reverse() } else { ordering }
                })
                .find(|ordering| ordering.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal)
        });
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

impl Firestore {
    /// Refuses a query no index serves: see the module's notes.
    fn check_index(&self, database: &str, collection: &str, query: &Value) -> Result<(), GoogleError> {
        let mut filters = BTreeMap::new();
        collect_filters(&query["where"], &mut filters)?;
        let orders: Vec<(String, String)> = query["orderBy"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|order| {
                let field = order["field"]["fieldPath"].as_str().unwrap_or_default().to_string();
                let direction = order["direction"].as_str().unwrap_or("ASCENDING").to_string();
                (field, direction)
            })
            // Every index ends with the document name: ordering by it asks nothing more.
            .filter(|(field, _)| field != "__name__")
            .collect();
        let single_field = match orders.as_slice() {
            [] => true,
            [(field, _)] => filters.is_empty() || (filters.len() == 1 && filters.contains_key(field)),
            _ => false,
        };
        if single_field {
            return Ok(());
        }
        let serving: Vec<&Index> = self
            .indexes
            .iter()
            .filter(|index| index.collection_group == collection && index.query_scope == "COLLECTION")
            .filter(|index| serves(index, &filters, &orders))
            .collect();
        let ready: Vec<&&Index> = serving.iter().filter(|index| index.state == "READY").collect();
        let covered: BTreeSet<&str> =
            ready.iter().flat_map(|index| index.fields.iter().map(|f| f.field_path.as_str())).collect();
        let served = if filters.is_empty() {
            !ready.is_empty()
        } else {
            filters.keys().all(|field| covered.contains(field.as_str()))
        };
        if served {
            return Ok(());
        }
        let project = database.split('/').nth(1).unwrap_or_default();
        if serving.iter().any(|index| index.state != "READY") {
            return Err(GoogleError::with_status(
                400,
                "FAILED_PRECONDITION",
                &format!(
                    "The query requires an index. That index is currently building and cannot be used yet. See its status here: https://console.firebase.google.com/project/{project}/firestore/indexes"
                ),
            ));
        }
        let wanted: Vec<String> = filters
            .iter()
            .map(|(field, kind)| format!("{field} {kind}"))
            .chain(orders.iter().map(|(field, direction)| format!("{field} {direction}")))
            .collect();
        Err(GoogleError::with_status(
            400,
            "FAILED_PRECONDITION",
            &format!(
                "The query requires an index. You can create it here: https://console.firebase.google.com/project/{project}/firestore/indexes (collection {collection}: {})",
                wanted.join(", ")
            ),
        ))
    }
}

/// The fields a query's filters name, each `ASCENDING` (an equality) or `CONTAINS` (an
/// array-contains).
fn collect_filters(filter: &Value, into: &mut BTreeMap<String, &'static str>) -> Result<(), GoogleError> {
    if filter.is_null() {
        return Ok(());
    }
    if let Some(composite) = filter.get("compositeFilter") {
        for part in composite["filters"].as_array().into_iter().flatten() {
            collect_filters(part, into)?;
        }
        return Ok(());
    }
    let field_filter = filter.get("fieldFilter").ok_or_else(|| GoogleError::new(400, "unsupported filter"))?;
    let path = field_filter["field"]["fieldPath"].as_str().unwrap_or_default().to_string();
    let kind = if field_filter["op"].as_str() == Some("ARRAY_CONTAINS") { "CONTAINS" } else { "ASCENDING" };
    into.insert(path, kind);
    Ok(())
}

/// Whether `index` serves the query for some of its filters: its fields are filter fields
/// (array-contains ones as `CONTAINS`) and then exactly the orders, with their directions.
fn serves(index: &Index, filters: &BTreeMap<String, &'static str>, orders: &[(String, String)]) -> bool {
    let Some(prefix_length) = index.fields.len().checked_sub(orders.len()) else {
        return false;
    };
    let (prefix, suffix) = index.fields.split_at(prefix_length);
    let prefix_ok = prefix.iter().all(|field| match filters.get(&field.field_path) {
        Some(&"CONTAINS") => field.array_config.as_deref() == Some("CONTAINS"),
        Some(_) => field.order.is_some(),
        None => false,
    });
    let suffix_ok = suffix.iter().zip(orders).all(|(field, (path, direction))| {
        field.field_path == *path && field.order.as_deref() == Some(direction.as_str())
    });
    prefix_ok && suffix_ok
}

/// A document ID from a URL path segment: percent-escapes decoded, an invalid one refused.
pub fn decode_path(path: &str) -> Result<String, GoogleError> {
    let invalid = || GoogleError::new(400, &format!("Invalid document path '{path}': a percent-escape is malformed"));
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = path.get(index + 1..index + 3).ok_or_else(invalid)?;
            decoded.push(u8::from_str_radix(hex, 16).map_err(|_| invalid())?);
            index += 3;
        } else {
            decoded.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(decoded).map_err(|_| invalid())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn query(filters: &[(&str, &str)], orders: &[(&str, &str)]) -> Value {
        let filters: Vec<Value> = filters
            .iter()
            .map(|(field, op)| json!({"fieldFilter": {"field": {"fieldPath": field}, "op": op, "value": {"stringValue": "x"}}}))
            .collect();
        let orders: Vec<Value> = orders
            .iter()
            .map(|(field, direction)| json!({"field": {"fieldPath": field}, "direction": direction}))
            .collect();
        json!({"from": [{"collectionId": "requests"}], "where": {"compositeFilter": {"op": "AND", "filters": filters}}, "orderBy": orders})
    }

    fn check(filters: &[(&str, &str)], orders: &[(&str, &str)]) -> Result<(), String> {
        let firestore = Firestore::default();
        firestore
            .check_index("projects/p/databases/(default)", "requests", &query(filters, orders))
            .map_err(|e| e.message)
    }

    #[test]
    fn composite_queries_need_a_declared_index() {
        // Served by single-field indexes.
        assert_eq!(check(&[("beneficiary", "EQUAL")], &[]), Ok(()));
        assert_eq!(check(&[("beneficiary", "EQUAL"), ("state", "EQUAL")], &[]), Ok(()));
        assert_eq!(check(&[], &[("requestedAt", "DESCENDING")]), Ok(()));
        assert_eq!(check(&[("requestedAt", "EQUAL")], &[("requestedAt", "DESCENDING")]), Ok(()));
        // Served by the declared composite indexes, with the direction they declare.
        assert_eq!(check(&[("beneficiary", "EQUAL")], &[("requestedAt", "DESCENDING")]), Ok(()));
        assert_eq!(check(&[("reviewers", "ARRAY_CONTAINS")], &[("requestedAt", "DESCENDING")]), Ok(()));
        // The door's own queries: a person's open requests, and the sweeper's pages.
        assert_eq!(check(&[("beneficiary", "EQUAL"), ("open", "EQUAL")], &[]), Ok(()));
        assert_eq!(check(&[("open", "EQUAL")], &[("__name__", "ASCENDING")]), Ok(()));
        // Not declared.
        for (filters, orders) in [
            (&[("beneficiary", "EQUAL")][..], &[("requestedAt", "ASCENDING")][..]),
            (&[("state", "EQUAL")][..], &[("requestedAt", "DESCENDING")][..]),
            (&[("open", "EQUAL")][..], &[("requestedAt", "DESCENDING")][..]),
            (&[("reviewers", "EQUAL")][..], &[("requestedAt", "DESCENDING")][..]),
            (&[("beneficiary", "EQUAL"), ("state", "EQUAL")][..], &[("requestedAt", "DESCENDING")][..]),
            (&[][..], &[("requestedAt", "DESCENDING"), ("beneficiary", "ASCENDING")][..]),
        ] {
            let refused = check(filters, orders);
            assert!(
                refused.as_ref().is_err_and(|m| m.starts_with("The query requires an index")),
                "{filters:?} {orders:?}: {refused:?}"
            );
        }
    }

    #[test]
    fn a_building_index_serves_nothing_yet() {
        let mut firestore = Firestore::default();
        let indexes =
            firestore.indexes().iter().cloned().map(|index| Index { state: "CREATING".into(), ..index }).collect();
        firestore.set_indexes(indexes);
        let query = query(&[("beneficiary", "EQUAL")], &[("requestedAt", "DESCENDING")]);
        let refused =
            firestore.check_index("projects/p/databases/(default)", "requests", &query).map_err(|e| e.message);
        assert!(refused.as_ref().is_err_and(|m| m.contains("currently building")), "{refused:?}");
    }

    #[test]
    fn document_ids_are_percent_decoded() {
        assert_eq!(decode_path("a%25b%40example.com").as_deref(), Ok("a%b@example.com"));
        assert_eq!(decode_path("plain").as_deref(), Ok("plain"));
        for bad in ["a%b@example.com", "a%", "a%zz"] {
            assert_eq!(decode_path(bad).map_err(|e| e.code), Err(400), "{bad}");
        }
    }
}
