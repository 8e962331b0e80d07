# The request ledger: a Firestore database in Native mode, the indexes its queries need, a TTL
# policy that deletes closed requests after the retention, and who may read and write it.
#
# The database is created here (`(default)` unless `ledger_database` names another), or, with
# `create_ledger_database = false`, one that exists already is used as it is: a project whose
# App Engine app or earlier use made `(default)` can name a new database, import its
# `(default)` (README, "Deploy"), or leave it out of Terraform.

locals {
  ledger_database = var.create_ledger_database ? google_firestore_database.ledger[0].name : var.ledger_database
}

resource "google_firestore_database" "ledger" {
  count                   = var.create_ledger_database ? 1 : 0
  project                 = var.project_id
  name                    = var.ledger_database
  location_id             = var.ledger_location
  type                    = "FIRESTORE_NATIVE"
  concurrency_mode        = "OPTIMISTIC"
  delete_protection_state = "DELETE_PROTECTION_ENABLED"
  deletion_policy         = "ABANDON"
  depends_on              = [google_project_service.apis]
}

moved {
  from = google_firestore_database.ledger
  to   = google_firestore_database.ledger[0]
}

# GET /api/requests?view=mine, ?view=review, and the sweeper's open requests: each filters
# on one field and orders by requestedAt, newest first.
resource "google_firestore_index" "requests" {
  for_each = {
    mine   = { field = "beneficiary", mode = "ASCENDING" }
    review = { field = "reviewers", mode = "CONTAINS" }
    open   = { field = "open", mode = "ASCENDING" }
  }
  project    = var.project_id
  database   = local.ledger_database
  collection = "requests"

  fields {
    field_path   = each.value.field
    order        = each.value.mode == "CONTAINS" ? null : each.value.mode
    array_config = each.value.mode == "CONTAINS" ? "CONTAINS" : null
  }
  fields {
    field_path = "requestedAt"
    order      = "DESCENDING"
  }
}

# Firestore deletes a request once `expireAt` (its end plus LEDGER_RETENTION_DAYS) passes.
resource "google_firestore_field" "expire_at" {
  project    = var.project_id
  database   = local.ledger_database
  collection = "requests"
  field      = "expireAt"

  ttl_config {}
  index_config {}
}

resource "google_project_iam_member" "ledger_users" {
  for_each = toset(["list_eligibility", "request_approval", "approve", "sweeper", "chat"])
  project  = var.project_id
  role     = "roles/datastore.user"
  member   = "serviceAccount:${google_service_account.function[each.key].email}"
}
