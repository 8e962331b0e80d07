//! The part of Google Chat the Chat app uses, with app authentication, and Chat's side of the
//! app: people adding it, clicking its cards' buttons and submitting its dialogs, delivered
//! to the app's HTTP endpoint with the token Google Chat signs.
//!
//! Rules enforced as Google documents them (developers.google.com/workspace/chat/api/reference):
//! - `spaces.findDirectMessage`: `name` is `users/{user}`; an address as `{user}` is allowed
//!   only with user authentication, so an app asking by address is refused (400); no direct
//!   message between the person and the app is 404.
//! - `spaces.messages.create`: the app must be in the space (404 otherwise); `messageId`
//!   starts with `client-` and holds only lowercase letters, digits and hyphens, 63 characters
//!   at most; a message needs text or cards, and with several cards each needs a `cardId`;
//!   "The maximum message size, including text and cards, is 32,000 bytes"; a repeated
//!   `requestId` returns the message it created, for [`REQUEST_ID_MINUTES`] (Google names no
//!   window; AIP-155 lets a service forget request IDs after "any reasonable timeframe"), and
//!   after that the create is a new one; a `messageId` already in the space is 409
//!   `ALREADY_EXISTS`. Google does not say whether request IDs are deduplicated per space or
//!   per app: the emulator takes the stricter reading, per app, so a request ID reused in
//!   another space gets the first space's message back, as it might at Google.
//! - `spaces.messages.patch`: `updateMask` is required and names only fields an app may
//!   update; the message must exist (404); the updated message keeps within 32,000 bytes.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::google::GoogleError;

/// Who added the app: a direct message, or a named space.
#[derive(Debug, Clone)]
struct Member {
    email: String,
    space: String,
}

#[derive(Debug, Clone)]
struct Message {
    name: String,
    space: String,
    text: String,
    cards: Value,
    request_id: String,
    /// When it was created (the emulator's clock, Unix seconds): its request ID counts for
    /// [`REQUEST_ID_MINUTES`] from then.
    created: i64,
    updates: u32,
}

/// How long a create's `requestId` is remembered: the "at least 60 minutes" other Google
/// APIs promise for their request IDs. Chat documents none, so this is an assumption.
pub const REQUEST_ID_MINUTES: i64 = 60;

/// "The maximum message size, including text and cards, is 32,000 bytes."
pub const MAX_MESSAGE_BYTES: usize = 32_000;

/// The app's configuration in the Chat API's console page: its URL and authentication
/// audience (a project number, or the URL itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    pub url: String,
    pub audience: String,
}

#[derive(Debug, Default)]
pub struct Chat {
    pub app: Option<App>,
    /// Direct messages with the app, by Chat user (`users/ID`).
    direct: BTreeMap<String, Member>,
    /// Named spaces the app was added to.
    rooms: BTreeMap<String, Vec<String>>,
    messages: Vec<Message>,
}

/// A person's Chat ID: stable, numeric, never their address.
pub fn user_of(email: &str) -> String {
    let hash = email
        .to_lowercase()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("users/{}", hash % 1_000_000_000_000_000)
}

fn direct_space(user: &str) -> String {
    format!("spaces/dm-{}", user.trim_start_matches("users/"))
}

impl Chat {
    /// A person adds the app: to a direct message (no `room`) or to a named space.
    pub fn add(&mut self, email: &str, room: Option<&str>) -> Value {
        let user = user_of(email);
        match room {
            Some(room) => {
                let members = self.rooms.entry(room.to_string()).or_default();
                if !members.iter().any(|m| m == email) {
                    members.push(email.to_string());
                }
                json!({"name": room, "type": "ROOM", "spaceType": "SPACE"})
            }
            None => {
                let space = direct_space(&user);
                self.direct.insert(user, Member { email: email.to_string(), space: space.clone() });
                json!({"name": space, "type": "DM", "spaceType": "DIRECT_MESSAGE", "singleUserBotDm": true})
            }
        }
    }

    /// A person removes the app from their direct message.
    pub fn remove(&mut self, email: &str) -> Value {
        let user = user_of(email);
        let space = self.direct.remove(&user).map(|m| m.space).unwrap_or_else(|| direct_space(&user));
        json!({"name": space, "type": "DM", "spaceType": "DIRECT_MESSAGE"})
    }

    fn space_exists(&self, space: &str) -> bool {
        self.rooms.contains_key(space) || self.direct.values().any(|m| m.space == space)
    }

    /// `GET /v1/spaces:findDirectMessage?name=users/{user}`
    pub fn find_direct_message(&self, name: Option<&str>) -> Result<Value, GoogleError> {
        let name = name.filter(|n| !n.is_empty()).ok_or_else(|| GoogleError::new(400, "name is required"))?;
        let user = name.strip_prefix("users/").filter(|u| !u.is_empty()).ok_or_else(|| {
            GoogleError::new(400, &format!("Invalid user resource name '{name}': expected users/{{user}}"))
        })?;
        if user.contains('@') {
            return Err(GoogleError::new(
                400,
                "An email address as users/{user} is accepted with user authentication only; with app authentication use the person's user ID",
            ));
        }
        let member = self
            .direct
            .get(name)
            .ok_or_else(|| GoogleError::new(404, &format!("Direct message with {name} not found")))?;
        Ok(json!({"name": member.space, "type": "DM", "spaceType": "DIRECT_MESSAGE", "singleUserBotDm": true}))
    }

    /// `POST /v1/{space}/messages?messageId=…&requestId=…`, at `now` (Unix seconds).
    pub fn create_message(
        &mut self,
        space: &str,
        parameters: &[(String, String)],
        body: &Value,
        now: i64,
    ) -> Result<Value, GoogleError> {
        let parameter = |key: &str| parameters.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        if !self.space_exists(space) {
            return Err(GoogleError::new(404, &format!("Space {space} not found, or the app is not a member of it")));
        }
        let request_id = parameter("requestId").unwrap_or_default();
        let remembered = |m: &&Message| now - m.created < REQUEST_ID_MINUTES * 60;
        if !request_id.is_empty()
            && let Some(existing) = self.messages.iter().filter(remembered).find(|m| m.request_id == request_id)
        {
            return Ok(render(existing));
        }
        let id = match parameter("messageId") {
            Some(id) => {
                let valid = id.starts_with("client-")
                    && id.len() <= 63
                    && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
                if !valid {
                    return Err(GoogleError::new(
                        400,
                        &format!(
                            "Invalid messageId '{id}': it must start with client- and hold at most 63 lowercase letters, digits and hyphens"
                        ),
                    ));
                }
                id.to_string()
            }
            None => format!("m{}", self.messages.len() + 1),
        };
        let name = format!("{space}/messages/{id}");
        if self.messages.iter().any(|m| m.name == name) {
            return Err(GoogleError::with_status(409, "ALREADY_EXISTS", &format!("Message {name} already exists")));
        }
        let cards = body.get("cardsV2").cloned().unwrap_or(Value::Null);
        let text = body["text"].as_str().unwrap_or_default().to_string();
        check_cards(&cards)?;
        if text.is_empty() && cards.as_array().is_none_or(Vec::is_empty) {
            return Err(GoogleError::new(400, "Message cannot be empty: it needs text or cards"));
        }
        check_size(&text, &cards)?;
        let message = Message {
            name,
            space: space.to_string(),
            text,
            cards,
            request_id: request_id.to_string(),
            created: now,
            updates: 0,
        };
        let rendered = render(&message);
        self.messages.push(message);
        Ok(rendered)
    }

    /// `PATCH /v1/{space}/messages/{message}?updateMask=…`
    pub fn patch_message(
        &mut self,
        name: &str,
        parameters: &[(String, String)],
        body: &Value,
    ) -> Result<Value, GoogleError> {
        let mask = parameters.iter().find(|(k, _)| k == "updateMask").map(|(_, v)| v.as_str()).unwrap_or_default();
        if mask.is_empty() {
            return Err(GoogleError::new(400, "updateMask is required"));
        }
        const UPDATABLE: [&str; 8] = [
            "text",
            "attachment",
            "cards",
            "cards_v2",
            "cardsV2",
            "accessory_widgets",
            "accessoryWidgets",
            "quoted_message_metadata",
        ];
        if let Some(field) = mask.split(',').map(str::trim).find(|f| !UPDATABLE.contains(f)) {
            return Err(GoogleError::new(400, &format!("Invalid updateMask field '{field}'")));
        }
        let cards = body.get("cardsV2").cloned().unwrap_or(Value::Null);
        check_cards(&cards)?;
        let message = self
            .messages
            .iter_mut()
            .find(|m| m.name == name)
            .ok_or_else(|| GoogleError::new(404, &format!("Message {name} not found")))?;
        let mut text = message.text.clone();
        let mut new_cards = message.cards.clone();
        for field in mask.split(',').map(str::trim) {
            match field {
                "text" => text = body["text"].as_str().unwrap_or_default().to_string(),
                "cards_v2" | "cardsV2" => new_cards = cards.clone(),
                _ => {}
            }
        }
        check_size(&text, &new_cards)?;
        message.text = text;
        message.cards = new_cards;
        message.updates += 1;
        Ok(render(message))
    }

    /// A card the app answered a click with (`UPDATE_MESSAGE`) replaces the clicked one.
    pub fn replace_cards(&mut self, name: &str, cards: Value) {
        if let Some(message) = self.messages.iter_mut().find(|m| m.name == name) {
            message.cards = cards;
            message.updates += 1;
        }
    }

    /// What was posted, with who sees it: a direct message's person, a space's members.
    pub fn captured(&self) -> Vec<Value> {
        self.messages
            .iter()
            .map(|message| {
                let readers: Vec<String> = match self.direct.values().find(|m| m.space == message.space) {
                    Some(member) => vec![member.email.clone()],
                    None => self.rooms.get(&message.space).cloned().unwrap_or_default(),
                };
                let mut rendered = render(message);
                rendered["readers"] = json!(readers);
                rendered["updates"] = json!(message.updates);
                rendered
            })
            .collect()
    }
}

fn render(message: &Message) -> Value {
    json!({"name": message.name, "space": {"name": message.space}, "text": message.text, "cardsV2": message.cards,
        "sender": {"type": "BOT"}})
}

/// Text and cards together, as JSON, within [`MAX_MESSAGE_BYTES`].
fn check_size(text: &str, cards: &Value) -> Result<(), GoogleError> {
    let size = serde_json::to_vec(&json!({"text": text, "cardsV2": cards})).map(|bytes| bytes.len()).unwrap_or(0);
    if size > MAX_MESSAGE_BYTES {
        return Err(GoogleError::new(
            400,
            &format!("Message too large: {size} bytes of text and cards, at most {MAX_MESSAGE_BYTES}"),
        ));
    }
    Ok(())
}

/// `cardsV2`: a list of `{cardId, card}`; with several, each needs its `cardId`.
fn check_cards(cards: &Value) -> Result<(), GoogleError> {
    let Some(list) = cards.as_array() else {
        return if cards.is_null() { Ok(()) } else { Err(GoogleError::new(400, "cardsV2 must be a list")) };
    };
    for card in list {
        if !card["card"].is_object() {
            return Err(GoogleError::new(400, "Invalid cardsV2: each entry needs a card"));
        }
        if list.len() > 1 && card["cardId"].as_str().is_none_or(str::is_empty) {
            return Err(GoogleError::new(400, "Invalid cardsV2: with several cards each needs a cardId"));
        }
    }
    Ok(())
}

/// The event Google Chat sends the app for `request`: `{type, email, space?, message?,
/// function?, id?, dialog?, reason?}`, as the Chat API's `Event` (HTTP app, not add-on).
pub fn event(request: &Value, space: &Value) -> Value {
    let email = request["email"].as_str().unwrap_or_default();
    let mut event = json!({
        "type": request["type"],
        "eventTime": common::timestamp::Timestamp::now().to_string(),
        "user": {"name": user_of(email), "email": email, "displayName": email, "type": "HUMAN"},
        "space": space,
    });
    if let Some(message) = request["message"].as_str() {
        event["message"] = json!({"name": message});
    }
    if let Some(function) = request["function"].as_str() {
        let id = request["id"].as_str().unwrap_or_default();
        event["action"] = json!({"actionMethodName": function, "parameters": [{"key": "id", "value": id}]});
        event["common"] = json!({"invokedFunction": function, "parameters": {"id": id}});
        if let Some(reason) = request["reason"].as_str() {
            event["common"]["formInputs"] = json!({"reason": {"stringInputs": {"value": [reason]}}});
        }
    }
    if let Some(dialog) = request["dialog"].as_str() {
        event["isDialogEvent"] = json!(true);
        event["dialogEventType"] = json!(dialog);
    }
    event
}
