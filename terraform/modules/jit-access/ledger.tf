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

# The composite indexes of the ledger's queries (GET /api/requests?view=mine and ?view=review:
# each filters on one field and orders by requestedAt, newest first). The door's other queries
# need none: a person's open requests filter on two fields by equality (Firestore merges
# single-field indexes), and the sweeper's pages filter on `open` and order by document name.
# They are declared in firestore-indexes.json, which the emulator reads too: a query whose index
# is not declared there fails in the tests as it would fail in Firestore.
locals {
  ledger_indexes = jsondecode(file("${path.module}/firestore-indexes.json")).indexes
}

resource "google_firestore_index" "requests" {
  for_each    = local.ledger_indexes
  project     = var.project_id
  database    = local.ledger_database
  collection  = each.value.collectionGroup
  query_scope = each.value.queryScope

  dynamic "fields" {
    for_each = each.value.fields
    content {
      field_path   = fields.value.fieldPath
      order        = lookup(fields.value, "order", null)
      array_config = lookup(fields.value, "arrayConfig", null)
    }
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

# A person's list of emergency grants (BREAK_GLASS_LIMIT) goes once its last one leaves the
# limit's period.
resource "google_firestore_field" "break_glass_expire_at" {
  project    = var.project_id
  database   = local.ledger_database
  collection = "breakGlassUses"
  field      = "expireAt"

  ttl_config {}
  index_config {}
}

resource "google_project_iam_member" "ledger_users" {
  for_each = toset(["request_approval", "approve", "sweeper", "chat"])
  project  = var.project_id
  role     = "roles/datastore.user"
  member   = "serviceAccount:${google_service_account.function[each.key].email}"
}

# list-eligibility only lists requests: it may read the ledger, never write it.
resource "google_project_iam_member" "ledger_reader" {
  project = var.project_id
  role    = "roles/datastore.viewer"
  member  = "serviceAccount:${google_service_account.function["list_eligibility"].email}"
}
