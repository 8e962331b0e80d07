//! The request ledger in Firestore (Native mode), through its REST API: one document per
//! request in `requests`, keyed by the activation ID. Writes carry Firestore's commit
//! preconditions (`exists: false` to create, the read `updateTime` to update) and are retried
//! on conflict, as the IAM etag loop is, so two deciders never overwrite each other.
//!
//! The official Rust SDK has no Firestore data-plane client; this is a small adapter on our
//! [`RestClient`]. Its tests run against the real Firestore emulator and against ours.

use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::email::Email;
use crate::gcp::GcpError;
use crate::gcp::rest::RestClient;
use crate::lifecycle::{Entry, Record};
use crate::timestamp::Timestamp;

pub const COLLECTION: &str = "requests";
/// One document per person who broke glass: when they did, for `BREAK_GLASS_LIMIT`.
pub const BREAK_GLASS_COLLECTION: &str = "breakGlassUses";
const SCOPE: &str = "https://www.googleapis.com/auth/datastore";

/// How many times a write that lost a race is tried again: with the jittered backoff below,
/// sixteen writers appending to one request at once all land (a test holds it to that on
/// Google's Firestore emulator).
const ATTEMPTS: u32 = 12;

/// When one person broke glass lately (Unix seconds), and the version read: the next
/// emergency grant is created in the same commit as the updated list, so two at once cannot
/// both pass the limit.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BreakGlassUses {
    pub times: Vec<i64>,
    /// `None`: no document yet.
    pub update_time: Option<String>,
}

/// A record and the version it was read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub record: Record,
    /// Firestore's `updateTime`: the precondition of the next write.
    pub update_time: String,
}

#[derive(Debug, Clone)]
pub struct Ledger {
    rest: RestClient,
    /// `projects/P/databases/D`
    database: String,
    /// Days a closed request is kept (the TTL field `expireAt`).
    retention_days: u32,
}

impl Ledger {
    pub fn new(http: reqwest::Client, endpoint: &str, database: &str, retention_days: u32) -> Result<Ledger, GcpError> {
        let rest = RestClient::new(http, endpoint, &[SCOPE])?;
        Ok(Ledger { rest, database: database.to_string(), retention_days })
    }

    fn documents(&self) -> String {
        format!("v1/{}/documents", self.database)
    }

    fn name(&self, id: &str) -> String {
        format!("{}/documents/{COLLECTION}/{id}", self.database)
    }

    pub async fn get(&self, id: &str) -> Result<Option<Stored>, GcpError> {
        if !valid_id(id) {
            return Ok(None);
        }
        let path = format!("{}/{COLLECTION}/{}", self.documents(), crate::gcp::rest::path_segment(id));
        match self.rest.get("ledger get", &path, &[]).await {
            Ok(document) => Ok(Some(read_document(&document)?)),
            Err(GcpError::NotFound(_)) => Ok(None),
            Err(other) => Err(other),
        }
    }

    /// Creates the record; `Conflict` if one with its ID exists.
    pub async fn create(&self, record: &Record) -> Result<Stored, GcpError> {
        self.commit(record, json!({"exists": false})).await
    }

    /// Writes `record` over the version read at `update_time`; `Conflict` if it changed since.
    pub async fn update(&self, record: &Record, update_time: &str) -> Result<Stored, GcpError> {
        self.commit(record, json!({"updateTime": update_time})).await
    }

    async fn commit(&self, record: &Record, precondition: Value) -> Result<Stored, GcpError> {
        let fields = self.fields(record)?;
        let write =
            json!({"update": {"name": self.name(&record.id), "fields": fields}, "currentDocument": precondition});
        self.commit_writes(record, json!([write])).await
    }

    /// Commits `writes`, the first of which writes `record`: its stored version.
    async fn commit_writes(&self, record: &Record, writes: Value) -> Result<Stored, GcpError> {
        let body = json!({ "writes": writes });
        let answer = match self.rest.post("ledger commit", &format!("{}:commit", self.documents()), &body).await {
            // Firestore answers a stale `updateTime` with FAILED_PRECONDITION: another writer won.
            Err(GcpError::FailedPrecondition(detail)) => return Err(GcpError::Conflict(detail)),
            other => other?,
        };
        let update_time = answer["writeResults"][0]["updateTime"]
            .as_str()
            .ok_or_else(|| GcpError::Other("ledger commit: no updateTime in the answer".into()))?;
        Ok(Stored { record: record.clone(), update_time: update_time.to_string() })
    }

    /// When `person` broke glass lately.
    pub async fn break_glass_uses(&self, person: &Email) -> Result<BreakGlassUses, GcpError> {
        let path = format!(
            "{}/{BREAK_GLASS_COLLECTION}/{}",
            self.documents(),
            crate::gcp::rest::path_segment(person.as_str())
        );
        match self.rest.get("ledger get", &path, &[]).await {
            Ok(document) => {
                let times = decode(&document["fields"]["times"]);
                let times = times.as_array().into_iter().flatten().filter_map(Value::as_i64).collect();
                let update_time = document["updateTime"].as_str().map(str::to_string);
                Ok(BreakGlassUses { times, update_time })
            }
            Err(GcpError::NotFound(_)) => Ok(BreakGlassUses::default()),
            Err(other) => Err(other),
        }
    }

    /// Creates an emergency grant's record and adds its start to its beneficiary's uses
    /// (`kept`: the uses still within the limit's period), in one commit: `Conflict` if the
    /// uses changed since they were read.
    pub async fn create_break_glass(
        &self,
        record: &Record,
        uses: &BreakGlassUses,
        kept: &[i64],
        period_seconds: i64,
    ) -> Result<Stored, GcpError> {
        let fields = self.fields(record)?;
        let mut times: Vec<i64> = kept.to_vec();
        times.push(record.start);
        let expire_at = Timestamp::from_unix_seconds(record.start + period_seconds).map(|t| t.to_string());
        let uses_fields = json!({
            "times": encode(&json!(times)),
            "expireAt": {"timestampValue": expire_at.unwrap_or_default()},
        });
        let uses_precondition = match &uses.update_time {
            Some(time) => json!({"updateTime": time}),
            None => json!({"exists": false}),
        };
        let uses_name = format!("{}/documents/{BREAK_GLASS_COLLECTION}/{}", self.database, record.beneficiary.as_str());
        let writes = json!([
            {"update": {"name": self.name(&record.id), "fields": fields}, "currentDocument": {"exists": false}},
            {"update": {"name": uses_name, "fields": uses_fields}, "currentDocument": uses_precondition},
        ]);
        self.commit_writes(record, writes).await
    }

    /// Reads, changes and writes a record until the write wins or `change` declines. `change`
    /// returns the new record, or `None` to write nothing; its refusals pass through.
    pub async fn modify<E: From<GcpError>>(
        &self,
        id: &str,
        change: impl FnMut(&Record) -> Result<Option<Record>, E>,
    ) -> Result<Option<Stored>, E> {
        let stored = self.get(id).await?.ok_or_else(|| GcpError::NotFound(format!("request {id}")))?;
        self.modify_from(stored, change).await
    }

    /// As `modify`, starting from a version already read (one read fewer); the `updateTime`
    /// precondition still refuses it if it is stale, and the retry reads afresh.
    pub async fn modify_from<E: From<GcpError>>(
        &self,
        mut stored: Stored,
        mut change: impl FnMut(&Record) -> Result<Option<Record>, E>,
    ) -> Result<Option<Stored>, E> {
        let id = stored.record.id.clone();
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                stored = self.get(&id).await?.ok_or_else(|| GcpError::NotFound(format!("request {id}")))?;
            }
            let Some(changed) = change(&stored.record)? else {
                return Ok(Some(stored));
            };
            match self.update(&changed, &stored.update_time).await {
                Ok(written) => return Ok(Some(written)),
                Err(GcpError::Conflict(_)) if attempt + 1 < ATTEMPTS => backoff(attempt).await,
                Err(other) => return Err(other.into()),
            }
        }
        Err(GcpError::Conflict(format!("request {id} kept changing")).into())
    }

    /// Appends `entry` to the version read, once: `Conflict` if it changed since (the caller
    /// reads again and plans again).
    pub async fn append(&self, stored: &Stored, entry: Entry) -> Result<Stored, GcpError> {
        let mut next = stored.record.clone();
        next.timeline.push(entry);
        self.update(&next, &stored.update_time).await
    }

    /// Deletes the version read; `Conflict` if it changed since.
    pub async fn delete(&self, stored: &Stored) -> Result<(), GcpError> {
        let body = json!({"writes": [{
            "delete": self.name(&stored.record.id),
            "currentDocument": {"updateTime": stored.update_time},
        }]});
        match self.rest.post("ledger delete", &format!("{}:commit", self.documents()), &body).await {
            Err(GcpError::FailedPrecondition(detail)) => Err(GcpError::Conflict(detail)),
            other => other.map(|_| ()),
        }
    }

    /// Requests `beneficiary` made, newest first.
    pub async fn made_by(&self, beneficiary: &Email, limit: u32) -> Result<Vec<Stored>, GcpError> {
        self.query("beneficiary", "EQUAL", beneficiary.as_str(), limit).await
    }

    /// Requests that name `reviewer`, newest first.
    pub async fn naming_reviewer(&self, reviewer: &Email, limit: u32) -> Result<Vec<Stored>, GcpError> {
        self.query("reviewers", "ARRAY_CONTAINS", reviewer.as_str(), limit).await
    }

    /// The requests of `beneficiary` that were open when last written (equality filters only,
    /// which Firestore serves from its single-field indexes).
    pub async fn open_of(&self, beneficiary: &Email, limit: u32) -> Result<Vec<Stored>, GcpError> {
        let filter = json!({"compositeFilter": {"op": "AND", "filters": [
            {"fieldFilter": {"field": {"fieldPath": "beneficiary"}, "op": "EQUAL", "value": {"stringValue": beneficiary.as_str()}}},
            {"fieldFilter": {"field": {"fieldPath": "open"}, "op": "EQUAL", "value": {"booleanValue": true}}},
        ]}});
        self.run_query(json!({"where": filter, "limit": limit})).await
    }

    /// One page of the requests that were open when last written, in document order, after
    /// the document `after` (a page's last ID): what the sweeper reconciles, every one of them.
    pub async fn open_page(&self, after: Option<&str>, limit: u32) -> Result<Vec<Stored>, GcpError> {
        let filter =
            json!({"fieldFilter": {"field": {"fieldPath": "open"}, "op": "EQUAL", "value": {"booleanValue": true}}});
        let mut query = json!({
            "where": filter,
            "orderBy": [{"field": {"fieldPath": "__name__"}, "direction": "ASCENDING"}],
            "limit": limit,
        });
        if let Some(after) = after {
            query["startAt"] = json!({"values": [{"referenceValue": self.name(after)}], "before": false});
        }
        self.run_query(query).await
    }

    async fn query(&self, field: &str, op: &str, value: &str, limit: u32) -> Result<Vec<Stored>, GcpError> {
        let filter = json!({"fieldFilter": {"field": {"fieldPath": field}, "op": op, "value": {"stringValue": value}}});
        self.run_query(json!({
            "where": filter,
            "orderBy": [{"field": {"fieldPath": "requestedAt"}, "direction": "DESCENDING"}],
            "limit": limit,
        }))
        .await
    }

    async fn run_query(&self, mut query: Value) -> Result<Vec<Stored>, GcpError> {
        query["from"] = json!([{"collectionId": COLLECTION}]);
        let body = json!({ "structuredQuery": query });
        let items = self.rest.run_query("ledger query", &format!("{}:runQuery", self.documents()), &body).await?;
        items.iter().filter_map(|item| item.get("document")).map(read_document).collect()
    }

    /// The record's fields, and those the queries and the TTL policy use.
    fn fields(&self, record: &Record) -> Result<Map<String, Value>, GcpError> {
        let mut json = serde_json::to_value(record).map_err(|e| GcpError::Other(format!("ledger encode ({e})")))?;
        let now = Timestamp::now();
        let state = record.state(now);
        let requested_at = record.timeline.first().map(|e| e.at()).unwrap_or(record.start);
        let keep_until = record.latest_end() + i64::from(self.retention_days) * 86_400;
        let object = json.as_object_mut().ok_or_else(|| GcpError::Other("ledger encode: not an object".into()))?;
        object.insert("state".into(), json!(state.name()));
        object.insert("open".into(), json!(record.is_open(now)));
        object.insert("requestedAt".into(), json!(requested_at));
        let mut fields: Map<String, Value> = object.iter().map(|(k, v)| (k.clone(), encode(v))).collect();
        let expire_at = Timestamp::from_unix_seconds(keep_until).map(|t| t.to_string()).unwrap_or_default();
        fields.insert("expireAt".into(), json!({"timestampValue": expire_at}));
        Ok(fields)
    }
}

/// Document IDs are ours: `mpa-…` or `jit-…` and URL-safe characters.
pub fn valid_id(id: &str) -> bool {
    crate::activation::is_request_id(id)
}

fn read_document(document: &Value) -> Result<Stored, GcpError> {
    let fields = document["fields"].as_object().cloned().unwrap_or_default();
    let json = Value::Object(fields.iter().map(|(k, v)| (k.clone(), decode(v))).collect());
    let record: Record =
        serde_json::from_value(json).map_err(|e| GcpError::Other(format!("ledger: unreadable request ({e})")))?;
    let update_time = document["updateTime"].as_str().unwrap_or_default().to_string();
    Ok(Stored { record, update_time })
}

/// JSON as Firestore's typed values.
pub fn encode(value: &Value) -> Value {
    match value {
        Value::Null => json!({"nullValue": null}),
        Value::Bool(b) => json!({"booleanValue": b}),
        Value::Number(n) if n.is_i64() || n.is_u64() => json!({"integerValue": n.to_string()}),
        Value::Number(n) => json!({"doubleValue": n}),
        Value::String(s) => json!({"stringValue": s}),
        Value::Array(items) => json!({"arrayValue": {"values": items.iter().map(encode).collect::<Vec<_>>()}}),
        Value::Object(map) => {
            json!({"mapValue": {"fields": map.iter().map(|(k, v)| (k.clone(), encode(v))).collect::<Map<_, _>>()}})
        }
    }
}

/// Firestore's typed values as JSON.
pub fn decode(value: &Value) -> Value {
    let Some((kind, inner)) = value.as_object().and_then(|o| o.iter().next()) else {
        return Value::Null;
    };
    match kind.as_str() {
        "booleanValue" => inner.clone(),
        "integerValue" => inner.as_str().and_then(|s| s.parse::<i64>().ok()).map(Value::from).unwrap_or(inner.clone()),
        "doubleValue" | "stringValue" | "timestampValue" | "referenceValue" => inner.clone(),
        "arrayValue" => Value::Array(inner["values"].as_array().into_iter().flatten().map(decode).collect()),
        "mapValue" => Value::Object(
            inner["fields"].as_object().into_iter().flatten().map(|(k, v)| (k.clone(), decode(v))).collect(),
        ),
        _ => Value::Null,
    }
}

/// Jittered backoff after losing a race: 10 ms, 20 ms, 40 ms … plus up to as much again.
async fn backoff(attempt: u32) {
    let base = 10u64 << attempt.min(6);
    let mut random = [0u8; 1];
    let _ = aws_lc_rs::rand::fill(&mut random);
    tokio::time::sleep(Duration::from_millis(base + base * u64::from(random[0]) / 255)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_through_firestores_types() {
        let value = json!({"a": "x", "n": 5, "f": 1.5, "b": true, "z": null, "list": [1, "two", {"k": []}], "m": {}});
        assert_eq!(decode(&encode(&value)), value);
        assert_eq!(encode(&json!(7)), json!({"integerValue": "7"}));
    }

    #[test]
    fn only_our_ids_are_documents() {
        assert!(valid_id("mpa-8Jx3kQ0wZt1bH2sD"));
        assert!(valid_id("jit-abc_-1"));
        for bad in ["", "x", "mpa-../x", "mpa-a/b", "jit-a b", &format!("mpa-{}", "a".repeat(80))] {
            assert!(!valid_id(bad), "{bad}");
        }
    }
}
