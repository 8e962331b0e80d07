//! Google Chat's REST API (no official Rust crate), with app authentication (`chat.bot`):
//! find a person's direct message with the app, post a request's card there or in
//! `CHAT_SPACE`, and update it. Beside it, [`ChatUsers`]: who added the app and their direct
//! message, kept in Firestore with the ledger, because with app authentication Chat finds a
//! direct message only by a person's Chat ID (`users/123…`), never by their address.

use serde_json::{Value, json};

use crate::email::Email;
use crate::gcp::GcpError;
use crate::gcp::ledger::{decode, encode};
use crate::gcp::rest::{RestClient, path_segment};

pub const SCOPE: &str = "https://www.googleapis.com/auth/chat.bot";
const DATASTORE_SCOPE: &str = "https://www.googleapis.com/auth/datastore";
const USERS: &str = "chatUsers";

#[derive(Debug, Clone)]
pub struct ChatClient {
    rest: RestClient,
}

impl ChatClient {
    pub fn new(http: reqwest::Client, endpoint: &str) -> Result<ChatClient, GcpError> {
        Ok(ChatClient { rest: RestClient::new(http, endpoint, &[SCOPE])? })
    }

    /// The direct message between `user` (`users/ID`) and the app; `None` if they never
    /// added the app or removed it.
    pub async fn direct_message(&self, user: &str) -> Result<Option<String>, GcpError> {
        let query = [("name", user.to_string())];
        match self.rest.get("chat findDirectMessage", "v1/spaces:findDirectMessage", &query).await {
            Ok(space) => Ok(space["name"].as_str().map(str::to_string)),
            Err(GcpError::NotFound(_)) => Ok(None),
            Err(other) => Err(other),
        }
    }

    /// Posts `cards` in `space` as message `message_id`. `request_id` makes a redelivered
    /// event return the message already posted instead of a second one; Google does not say
    /// whether it is deduplicated per space or per app, so callers derive it from both the
    /// space and the request ([`crate::chat::request_id`]). Request IDs may expire (AIP-155):
    /// a create after that finds `message_id` taken, 409 `ALREADY_EXISTS`, which means the
    /// card is there: [`Posted::AlreadyThere`].
    pub async fn post(
        &self,
        space: &str,
        message_id: &str,
        request_id: &str,
        text: &str,
        cards: &Value,
    ) -> Result<Posted, GcpError> {
        let query = [("messageId", message_id.to_string()), ("requestId", request_id.to_string())];
        let body = json!({"text": text, "cardsV2": cards});
        let path = format!("v1/{space}/messages");
        let method = reqwest::Method::POST;
        let answer = self
            .rest
            .with_body_expecting(method, "chat messages.create", &path, &query, &body, "ALREADY_EXISTS")
            .await?;
        Ok(if answer.is_some() { Posted::Created } else { Posted::AlreadyThere })
    }

    /// Replaces the cards of our message `message_id` in `space`.
    pub async fn update(&self, space: &str, message_id: &str, cards: &Value) -> Result<(), GcpError> {
        let query = [("updateMask", "cardsV2".to_string())];
        let path = format!("v1/{space}/messages/{message_id}");
        let body = json!({"cardsV2": cards});
        self.rest.with_body(reqwest::Method::PATCH, "chat messages.patch", &path, &query, &body).await.map(|_| ())
    }
}

/// What a create found: our message is new, or it was there already (an earlier delivery of
/// the same event), so it may show an older state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Posted {
    Created,
    AlreadyThere,
}

/// A person who added the app: their Chat user, and their direct message with the app while
/// they keep it (so posting needs no lookup).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatUser {
    /// `users/ID`
    pub user: String,
    /// `spaces/…`; `None` after they removed the app.
    pub space: Option<String>,
}

/// Who added the app: address → [`ChatUser`], one document each.
#[derive(Debug, Clone)]
pub struct ChatUsers {
    rest: RestClient,
    /// `projects/P/databases/D`
    database: String,
}

impl ChatUsers {
    pub fn new(http: reqwest::Client, endpoint: &str, database: &str) -> Result<ChatUsers, GcpError> {
        Ok(ChatUsers { rest: RestClient::new(http, endpoint, &[DATASTORE_SCOPE])?, database: database.to_string() })
    }

    /// Records (or refreshes) a person's Chat user and direct message.
    pub async fn put(&self, email: &Email, user: &ChatUser) -> Result<(), GcpError> {
        // The document ID is the address as it is; only in a URL path is it percent-encoded.
        let name = format!("{}/documents/{USERS}/{}", self.database, email.as_str());
        let fields = json!({"user": encode(&json!(user.user)), "space": encode(&json!(user.space))});
        let body = json!({"writes": [{"update": {"name": name, "fields": fields}}]});
        let path = format!("v1/{}/documents:commit", self.database);
        self.rest.post("chat users commit", &path, &body).await.map(|_| ())
    }

    /// A person's Chat user, if they ever added the app.
    pub async fn get(&self, email: &Email) -> Result<Option<ChatUser>, GcpError> {
        let path = format!("v1/{}/documents/{USERS}/{}", self.database, path_segment(email.as_str()));
        match self.rest.get("chat users get", &path, &[]).await {
            Ok(document) => {
                let field = |name: &str| decode(&document["fields"][name]).as_str().map(str::to_string);
                Ok(field("user").map(|user| ChatUser { user, space: field("space") }))
            }
            Err(GcpError::NotFound(_)) => Ok(None),
            Err(other) => Err(other),
        }
    }
}
