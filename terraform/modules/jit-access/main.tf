# Service accounts, their roles, the APIs, and the settings each function reads.
#
# One service account per function, each with only what it needs:
#   list-eligibility  Cloud Asset Viewer on the scope
#   request-approval  Cloud Asset Viewer and Project IAM Admin on the scope, Token Creator on the
#                     signing account only, Pub/Sub Publisher on the topic only
#   approve           Cloud Asset Viewer and Project IAM Admin on the scope, Pub/Sub Publisher
#   mailer            Secret Accessor on the SendGrid secret only
#   sweeper           Cloud Asset Viewer and Project IAM Admin on the scope (it completes grants:
#                     eligibility is read afresh first), Pub/Sub Publisher
#   chat              what approve holds: it decides on requests from Google Chat
# and, for each that calls Cloud Asset (all but the mailer and the sweeper), Service Usage
# Consumer on the host project: Cloud Asset bills its quota to the caller's project and
# checks serviceusage.services.use there.
# on each scope RESOURCE_SCOPE names, and, where a scope is a folder or an organization, Folder
# IAM Admin (folder scope) or a custom role over folder and organization policies
# (organization scope) for request-approval, approve and the sweeper: activations on folders
# and organizations.
# plus the signing account (its Google-managed key signs activation tokens; it holds no role),
# the push account (the OIDC identity of the mailer's push subscription) and the scheduler
# account (runs the sweeper job).

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  number   = data.google_project.this.number
  scopes   = distinct([for scope in split(",", var.resource_scope) : trimspace(scope)])
  base_url = "https://${var.domain}"
  topic    = google_pubsub_topic.events.id

  # Cloud Run's deterministic URL: known before the service exists, so the mailer's own
  # audience needs no second apply.
  mailer_url = "https://jit-mailer-${local.number}.${var.region}.run.app/"
  # The Chat app's URL: its HTTP endpoint (set it in the Chat API's configuration page) and,
  # under /events, the push endpoint of its subscription.
  chat_url = "https://jit-chat-${local.number}.${var.region}.run.app/"

  service_names = {
    list_eligibility = "jit-list-eligibility"
    request_approval = "jit-request-approval"
    approve          = "jit-approve"
  }

  # The IAP audience of each HTTP function: its own backend service. The serverless NEG needs
  # only the service's name, so the backend service exists before the Cloud Run service and
  # its ID can be passed in without the loop the reference app had (jit#324).
  iap_audience = {
    for key, backend in google_compute_backend_service.function :
    key => "/projects/${local.number}/global/backendServices/${backend.generated_id}"
  }

  activation_env = {
    ACTIVATION_TIMEOUT               = tostring(var.activation_timeout)
    ACTIVATION_REQUEST_TIMEOUT       = tostring(var.activation_request_timeout)
    ACTIVATION_REQUEST_MIN_REVIEWERS = tostring(var.min_reviewers)
    ACTIVATION_REQUEST_MAX_REVIEWERS = tostring(var.max_reviewers)
    ACTIVATION_REQUEST_MAX_ROLES     = tostring(var.max_roles)
    JUSTIFICATION_PATTERN            = var.justification_pattern
    JUSTIFICATION_HINT               = var.justification_hint
    ACTIVATION_MAX_SCHEDULE          = tostring(var.activation_max_schedule)
    APPROVAL_POLICY                  = var.approval_policy
    ADMINISTRATORS                   = join(",", var.administrators)
    BREAK_GLASS_LIMIT                = var.break_glass_limit
  }
  ledger_env = {
    FIRESTORE_DATABASE    = "projects/${var.project_id}/databases/${local.ledger_database}"
    LEDGER_RETENTION_DAYS = tostring(var.ledger_retention_days)
  }
  backend_env = {
    BACKEND_CONNECT_TIMEOUT = tostring(var.backend_timeouts.connect)
    BACKEND_READ_TIMEOUT    = tostring(var.backend_timeouts.read)
    BACKEND_WRITE_TIMEOUT   = tostring(var.backend_timeouts.write)
    RUST_LOG                = var.log_level
    # Log lines name their trace as projects/PROJECT/traces/ID.
    GOOGLE_CLOUD_PROJECT = var.project_id
  }
  scope_env = {
    RESOURCE_SCOPE           = var.resource_scope
    AVAILABLE_PROJECTS_QUERY = var.available_projects_query
    RESOURCE_CATALOG         = var.resource_catalog
    RESOURCE_CACHE_TIMEOUT   = tostring(var.resource_cache_timeout)
    POLICY_CACHE_TIMEOUT     = tostring(var.policy_cache_timeout)
  }

  # What each function reads, exactly (a test checks these maps against the code).
  list_eligibility_env = merge(local.activation_env, local.backend_env, local.scope_env, local.ledger_env, {
    IAP_AUDIENCE              = local.iap_audience["list_eligibility"]
    LISTING_BUDGET_BURST      = tostring(var.listing_budget.burst)
    LISTING_BUDGET_PER_MINUTE = tostring(var.listing_budget.per_minute)
    # Every peer-approval record it lists is verified against the signing account's keys.
    SIGNING_SERVICE_ACCOUNT = google_service_account.signer.email
  })
  request_approval_env = merge(local.activation_env, local.backend_env, local.scope_env, local.ledger_env, {
    IAP_AUDIENCE            = local.iap_audience["request_approval"]
    SIGNING_SERVICE_ACCOUNT = google_service_account.signer.email
    NOTIFICATION_TOPIC      = local.topic
    BASE_URL                = local.base_url
    # Each ask (self-activation, request, break glass) costs its asker one read.
    LISTING_BUDGET_BURST      = tostring(var.listing_budget.burst)
    LISTING_BUDGET_PER_MINUTE = tostring(var.listing_budget.per_minute)
  })
  approve_env = merge(local.activation_env, local.backend_env, local.scope_env, local.ledger_env, {
    IAP_AUDIENCE            = local.iap_audience["approve"]
    SIGNING_SERVICE_ACCOUNT = google_service_account.signer.email
    NOTIFICATION_TOPIC      = local.topic
    BASE_URL                = local.base_url
  })
  mailer_env = merge(local.backend_env, {
    SENDGRID_API_KEY_SECRET = google_secret_manager_secret.sendgrid.id
    SMTP_SENDER_ADDRESS     = var.sender_address
    SMTP_SENDER_NAME        = var.sender_name
    NOTIFICATION_TIMEZONE   = var.notification_timezone
    NOTIFY_SELF_APPROVED    = tostring(var.notify_self_approved)
    PUSH_AUDIENCE           = local.mailer_url
    PUSH_SERVICE_ACCOUNT    = google_service_account.push.email
    # Cloud Run's invoker check verifies the push token's signature and removes it; the
    # mailer checks the claims (docs/security.md, "The push endpoint").
    PUSH_AUTH = "cloud-run"
    BASE_URL  = local.base_url
    # Mailed of every emergency access and its escalation.
    ADMINISTRATORS = join(",", var.administrators)
  })
  chat_env = merge(local.activation_env, local.backend_env, local.scope_env, local.ledger_env, {
    SIGNING_SERVICE_ACCOUNT = google_service_account.signer.email
    NOTIFICATION_TOPIC      = local.topic
    BASE_URL                = local.base_url
    CHAT_AUDIENCE           = var.chat_audience != "" ? var.chat_audience : tostring(local.number)
    CHAT_SPACE              = var.chat_space
    CHAT_CLICK_TIMEOUT      = tostring(var.chat_click_timeout)
    PUSH_AUDIENCE           = "${local.chat_url}events"
    PUSH_SERVICE_ACCOUNT    = google_service_account.push.email
    # Google Chat's token (audience: the project number) cannot pass Cloud Run's invoker
    # check, so the service is public and checks both kinds of token itself.
    PUSH_AUTH = "verify"
  })
  # The sweeper completes what a crash left half-done through the same door, with the same
  # decisions: it reads the activation and approval settings and verifies tokens too.
  sweeper_env = merge(local.activation_env, local.backend_env, local.scope_env, local.ledger_env, {
    SIGNING_SERVICE_ACCOUNT = google_service_account.signer.email
    NOTIFICATION_TOPIC      = local.topic
    BASE_URL                = local.base_url
    SWEEP_GRACE_PERIOD      = tostring(var.sweep_grace_period)
    SWEEP_PROJECTS_QUERY    = var.sweep_projects_query
    SWEEP_DRY_RUN           = "false"
  })

  # Roles on every scope, wherever it is (docs/permissions.md says which call needs which).
  # Browser only where AVAILABLE_PROJECTS_QUERY makes list-eligibility search projects: the
  # search returns projects the caller may `resourcemanager.projects.get`.
  every_scope_grants = merge(var.available_projects_query == "" ? {} : {
    list_browse = { role = "roles/browser", member = "serviceAccount:${google_service_account.function["list_eligibility"].email}" }
    }, {
    list_asset    = { role = "roles/cloudasset.viewer", member = "serviceAccount:${google_service_account.function["list_eligibility"].email}" }
    request_asset = { role = "roles/cloudasset.viewer", member = "serviceAccount:${google_service_account.function["request_approval"].email}" }
    request_iam   = { role = "roles/resourcemanager.projectIamAdmin", member = "serviceAccount:${google_service_account.function["request_approval"].email}" }
    approve_asset = { role = "roles/cloudasset.viewer", member = "serviceAccount:${google_service_account.function["approve"].email}" }
    approve_iam   = { role = "roles/resourcemanager.projectIamAdmin", member = "serviceAccount:${google_service_account.function["approve"].email}" }
    sweeper_iam   = { role = "roles/resourcemanager.projectIamAdmin", member = "serviceAccount:${google_service_account.function["sweeper"].email}" }
    sweeper_asset = { role = "roles/cloudasset.viewer", member = "serviceAccount:${google_service_account.function["sweeper"].email}" }
    chat_asset    = { role = "roles/cloudasset.viewer", member = "serviceAccount:${google_service_account.function["chat"].email}" }
    chat_iam      = { role = "roles/resourcemanager.projectIamAdmin", member = "serviceAccount:${google_service_account.function["chat"].email}" }
  })
  # Folder activations write folder policies: only a folder or organization scope has any.
  folder_scope_grants = {
    request_folders = { role = "roles/resourcemanager.folderIamAdmin", member = "serviceAccount:${google_service_account.function["request_approval"].email}" }
    approve_folders = { role = "roles/resourcemanager.folderIamAdmin", member = "serviceAccount:${google_service_account.function["approve"].email}" }
    sweeper_folders = { role = "roles/resourcemanager.folderIamAdmin", member = "serviceAccount:${google_service_account.function["sweeper"].email}" }
    chat_folders    = { role = "roles/resourcemanager.folderIamAdmin", member = "serviceAccount:${google_service_account.function["chat"].email}" }
  }
  # The custom role below, granted at each organization scope.
  organization_scope_grants = {
    request_containers = { role = "jitAccessContainerIamAdmin", member = "serviceAccount:${google_service_account.function["request_approval"].email}" }
    approve_containers = { role = "jitAccessContainerIamAdmin", member = "serviceAccount:${google_service_account.function["approve"].email}" }
    sweeper_containers = { role = "jitAccessContainerIamAdmin", member = "serviceAccount:${google_service_account.function["sweeper"].email}" }
    chat_containers    = { role = "jitAccessContainerIamAdmin", member = "serviceAccount:${google_service_account.function["chat"].email}" }
  }
  # "SCOPE KEY" => { scope, type, id, role, member } for every scope RESOURCE_SCOPE names.
  scope_grants = merge([
    for scope in local.scopes : {
      for key, grant in merge(
        local.every_scope_grants,
        startswith(scope, "folders/") ? local.folder_scope_grants : {},
        startswith(scope, "organizations/") ? local.organization_scope_grants : {},
        ) : "${scope} ${key}" => merge(grant, {
          type = split("/", scope)[0]
          id   = split("/", scope)[1]
          role = grant.role == "jitAccessContainerIamAdmin" ? "${scope}/roles/${grant.role}" : grant.role
      })
    }
  ]...)
  organization_ids = toset([for scope in local.scopes : split("/", scope)[1] if startswith(scope, "organizations/")])
}

resource "google_project_service" "apis" {
  for_each = toset([
    "cloudasset.googleapis.com",
    "chat.googleapis.com",
    "cloudidentity.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "cloudscheduler.googleapis.com",
    "compute.googleapis.com",
    "firestore.googleapis.com",
    "iam.googleapis.com",
    "iamcredentials.googleapis.com",
    "iap.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
  ])
  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

# Google creates a service agent when its service first needs it, which may be after this
# apply grants it a role ("Service account ... does not exist" on a fresh project). These
# create IAP's (it invokes the HTTP functions) and Pub/Sub's (it signs push tokens and moves
# dead letters) before any grant names them. Beta provider only.
resource "google_project_service_identity" "agents" {
  provider   = google-beta
  for_each   = toset(["iap.googleapis.com", "pubsub.googleapis.com"])
  project    = var.project_id
  service    = each.value
  depends_on = [google_project_service.apis]
}

# "All Cloud Asset Inventory calls require the serviceusage.services.use permission"
# (asset-inventory/docs/roles-permissions), checked on the project the call is billed to: the
# host project, where the service accounts live.
resource "google_project_iam_member" "asset_quota" {
  for_each = toset(["list_eligibility", "request_approval", "approve", "chat", "sweeper"])
  project  = var.project_id
  role     = "roles/serviceusage.serviceUsageConsumer"
  member   = "serviceAccount:${google_service_account.function[each.key].email}"
}

resource "google_service_account" "function" {
  for_each = {
    list_eligibility = "JIT access: list eligibility"
    request_approval = "JIT access: request approval"
    approve          = "JIT access: approve"
    mailer           = "JIT access: mailer"
    sweeper          = "JIT access: sweeper job"
    chat             = "JIT access: Google Chat app"
  }
  project      = var.project_id
  account_id   = "jit-${replace(each.key, "_", "-")}"
  display_name = each.value
}

resource "google_service_account" "signer" {
  project      = var.project_id
  account_id   = "jit-token-signer"
  display_name = "JIT access: signs activation tokens (no roles)"
}

resource "google_service_account" "push" {
  project      = var.project_id
  account_id   = "jit-push"
  display_name = "JIT access: identity of the mailer's push subscription"
}

resource "google_service_account" "scheduler" {
  project      = var.project_id
  account_id   = "jit-scheduler"
  display_name = "JIT access: runs the sweeper job"
}

# Only request-approval signs; approve verifies with the account's public keys.
resource "google_service_account_iam_member" "request_signs_tokens" {
  service_account_id = google_service_account.signer.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = "serviceAccount:${google_service_account.function["request_approval"].email}"
}

# Folder and organization policies, read and written: no predefined role holds just these
# at the organization (Organization Administrator holds far more).
resource "google_organization_iam_custom_role" "containers" {
  for_each    = local.organization_ids
  org_id      = each.value
  role_id     = "jitAccessContainerIamAdmin"
  title       = "JIT access: folder and organization IAM"
  description = "Activations on folders and the organization, and their sweeping"
  permissions = [
    "resourcemanager.folders.get",
    "resourcemanager.folders.getIamPolicy",
    "resourcemanager.folders.setIamPolicy",
    "resourcemanager.organizations.get",
    "resourcemanager.organizations.getIamPolicy",
    "resourcemanager.organizations.setIamPolicy",
  ]
}

resource "google_organization_iam_member" "scope" {
  for_each   = { for key, grant in local.scope_grants : key => grant if grant.type == "organizations" }
  org_id     = each.value.id
  role       = each.value.role
  member     = each.value.member
  depends_on = [google_organization_iam_custom_role.containers]
}

resource "google_folder_iam_member" "scope" {
  for_each = { for key, grant in local.scope_grants : key => grant if grant.type == "folders" }
  folder   = "folders/${each.value.id}"
  role     = each.value.role
  member   = each.value.member
}

resource "google_project_iam_member" "scope" {
  for_each = { for key, grant in local.scope_grants : key => grant if grant.type == "projects" }
  project  = each.value.id
  role     = each.value.role
  member   = each.value.member
}

resource "google_secret_manager_secret" "sendgrid" {
  project   = var.project_id
  secret_id = "jit-sendgrid-api-key"
  replication {
    auto {}
  }
  depends_on = [google_project_service.apis]
}

# The value is set outside Terraform, so it never lands in the state:
#   printf %s "$SENDGRID_API_KEY" | gcloud secrets versions add jit-sendgrid-api-key --data-file=-
resource "google_secret_manager_secret_iam_member" "mailer_reads_key" {
  project   = var.project_id
  secret_id = google_secret_manager_secret.sendgrid.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.function["mailer"].email}"
}
