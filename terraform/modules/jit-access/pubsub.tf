# The events topic, the mailer's and the Chat app's authenticated push subscriptions with
# retries and a dead-letter topic, and an example subscription for other consumers.

locals {
  # Created before it is granted anything (main.tf).
  pubsub_agent = "serviceAccount:${google_project_service_identity.agents["pubsub.googleapis.com"].email}"
  push_endpoints = {
    mailer = local.mailer_url
    chat   = "${local.chat_url}events"
  }
}

resource "google_pubsub_topic" "events" {
  # checkov:skip=CKV_GCP_83:Events hold no secrets (names, roles, justifications); Google-managed encryption, add kms_key_name for CMEK
  project                    = var.project_id
  name                       = "jit-events"
  message_retention_duration = "604800s"
  depends_on                 = [google_project_service.apis]
}

resource "google_pubsub_topic" "dead_letter" {
  # checkov:skip=CKV_GCP_83:Same content as the events topic; Google-managed encryption
  project                    = var.project_id
  name                       = "jit-events-dead-letter"
  message_retention_duration = "604800s"
  depends_on                 = [google_project_service.apis]
}

resource "google_pubsub_topic_iam_member" "publishers" {
  for_each = toset(["request_approval", "approve", "sweeper", "chat"])
  project  = var.project_id
  topic    = google_pubsub_topic.events.name
  role     = "roles/pubsub.publisher"
  member   = "serviceAccount:${google_service_account.function[each.key].email}"
}

# The push subscriptions: the mailer at its root, the Chat app (a card per new request, every
# card kept current) at /events. Each push carries the push account's OIDC token for its URL.
resource "google_pubsub_subscription" "push" {
  for_each                   = local.push_endpoints
  project                    = var.project_id
  name                       = "jit-${each.key}"
  topic                      = google_pubsub_topic.events.id
  ack_deadline_seconds       = 60
  message_retention_duration = "86400s"

  push_config {
    push_endpoint = each.value
    oidc_token {
      service_account_email = google_service_account.push.email
      audience              = each.value
    }
  }
  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }
  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = var.mailer_max_delivery_attempts
  }
  expiration_policy {
    ttl = ""
  }
}

moved {
  from = google_pubsub_subscription.mailer
  to   = google_pubsub_subscription.push["mailer"]
}

# Pub/Sub moves undeliverable messages with its own service agent, and signs push tokens as
# the push account.
resource "google_pubsub_topic_iam_member" "agent_dead_letters" {
  project = var.project_id
  topic   = google_pubsub_topic.dead_letter.name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_agent
}

resource "google_pubsub_subscription_iam_member" "agent_acknowledges" {
  for_each     = google_pubsub_subscription.push
  project      = var.project_id
  subscription = each.value.name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}

resource "google_service_account_iam_member" "agent_signs_push_tokens" {
  service_account_id = google_service_account.push.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent
}

# For other teams: a pull subscription that keeps a week of approvals. Copy it with their own
# filter (attributes.type and attributes.version; see docs/events.md).
resource "google_pubsub_subscription" "example_consumer" {
  project                    = var.project_id
  name                       = "jit-events-approvals-example"
  topic                      = google_pubsub_topic.events.id
  filter                     = "attributes.type = \"ActivationApproved\""
  message_retention_duration = "604800s"
  ack_deadline_seconds       = 30
  expiration_policy {
    ttl = ""
  }
}

# Dead letters stay readable until someone looks.
resource "google_pubsub_subscription" "dead_letter" {
  project                    = var.project_id
  name                       = "jit-events-dead-letter"
  topic                      = google_pubsub_topic.dead_letter.id
  message_retention_duration = "604800s"
  expiration_policy {
    ttl = ""
  }
}
