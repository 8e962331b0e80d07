# Every setting the functions read is a variable here, with the same meaning and default as
# in the README's configuration table.

variable "project_id" {
  description = "The project that hosts the functions, the topic, the secret and the load balancer."
  type        = string
}

variable "region" {
  description = "Region of the Cloud Run services and job, and of Cloud Scheduler."
  type        = string
  default     = "europe-west1"
}

variable "domain" {
  description = "The DNS name users open (a managed certificate is issued for it); point an A record at the output ip_address."
  type        = string
}

variable "images" {
  description = "Container image of each function, e.g. REGION-docker.pkg.dev/PROJECT/jit-access/list-eligibility:TAG (cloudbuild.yaml builds them)."
  type = object({
    list_eligibility = string
    request_approval = string
    approve          = string
    mailer           = string
    sweeper          = string
    chat             = string
  })
}

variable "resource_scope" {
  description = "RESOURCE_SCOPE: organizations/NUMBER, folders/NUMBER or projects/ID (several separated by commas), where eligibility is looked up and activations are written."
  type        = string
  validation {
    condition     = can(regex("^(organizations/[0-9]+|folders/[0-9]+|projects/[a-z][-a-z0-9:.]*)( *, *(organizations/[0-9]+|folders/[0-9]+|projects/[a-z][-a-z0-9:.]*))*$", var.resource_scope))
    error_message = "resource_scope must be organizations/NUMBER, folders/NUMBER or projects/ID, or several of them separated by commas."
  }
}

variable "iap_members" {
  description = "Who may open the app through IAP (roles/iap.httpsResourceAccessor), e.g. [\"domain:example.com\", \"group:engineers@example.com\"]."
  type        = list(string)
}

variable "available_projects_query" {
  description = "AVAILABLE_PROJECTS_QUERY: list projects with Resource Manager search (e.g. \"state:ACTIVE\") instead of Policy Analyzer. Empty: Policy Analyzer."
  type        = string
  default     = ""
}

variable "resource_catalog" {
  description = "RESOURCE_CATALOG: AssetInventory (effective policies and Cloud Identity groups, no daily quota) or PolicyAnalyzer (20 queries a day per organization without a paid Security Command Center tier)."
  type        = string
  default     = "AssetInventory"
  validation {
    condition     = contains(["AssetInventory", "PolicyAnalyzer"], var.resource_catalog)
    error_message = "resource_catalog must be AssetInventory or PolicyAnalyzer."
  }
}

variable "resource_cache_timeout" {
  description = "RESOURCE_CACHE_TIMEOUT: seconds the listing function may reuse group memberships and project lists. Decisions that write IAM or approve always read fresh data."
  type        = number
  default     = 60
}

variable "policy_cache_timeout" {
  description = "POLICY_CACHE_TIMEOUT: seconds the listing function may reuse a resource's effective policies (0 to 300; 0 turns it off). Decisions that write IAM or approve always read fresh data."
  type        = number
  default     = 10
  validation {
    condition     = var.policy_cache_timeout >= 0 && var.policy_cache_timeout <= 300
    error_message = "policy_cache_timeout must be from 0 to 300 seconds."
  }
}

variable "listing_budget" {
  description = "LISTING_BUDGET_BURST and LISTING_BUDGET_PER_MINUTE: uncached Google reads one person's listings (and, in request-approval, asks) may make at once, and regain per minute; past them, 429 with Retry-After."
  type = object({
    burst      = optional(number, 10)
    per_minute = optional(number, 6)
  })
  default = {}
  validation {
    condition     = var.listing_budget.burst >= 1 && var.listing_budget.burst <= 1000 && var.listing_budget.per_minute >= 1 && var.listing_budget.per_minute <= 6000
    error_message = "listing_budget.burst must be from 1 to 1000 and listing_budget.per_minute from 1 to 6000."
  }
}

variable "activation_timeout" {
  description = "ACTIVATION_TIMEOUT: longest activation, minutes."
  type        = number
  default     = 120
}

variable "activation_request_timeout" {
  description = "ACTIVATION_REQUEST_TIMEOUT: how long a peer-approval request can be approved, minutes (capped at activation_timeout)."
  type        = number
  default     = 60
}

variable "justification_pattern" {
  description = "JUSTIFICATION_PATTERN: regular expression the whole justification must match."
  type        = string
  default     = ".*"
}

variable "justification_hint" {
  description = "JUSTIFICATION_HINT: shown to users and in refusals."
  type        = string
  default     = "Bug or case number"
}

variable "min_reviewers" {
  description = "ACTIVATION_REQUEST_MIN_REVIEWERS: fewest reviewers a request must name."
  type        = number
  default     = 1
}

variable "max_reviewers" {
  description = "ACTIVATION_REQUEST_MAX_REVIEWERS: most reviewers a request may name."
  type        = number
  default     = 10
}

variable "max_roles" {
  description = "ACTIVATION_REQUEST_MAX_ROLES: most roles in one self-activation."
  type        = number
  default     = 10
}

variable "backend_timeouts" {
  description = "BACKEND_CONNECT_TIMEOUT, BACKEND_READ_TIMEOUT, BACKEND_WRITE_TIMEOUT: Google API timeouts, seconds."
  type = object({
    connect = number
    read    = number
    write   = number
  })
  default = { connect = 5, read = 20, write = 5 }
}

variable "sender_address" {
  description = "SMTP_SENDER_ADDRESS: the address mail is sent from (verified in SendGrid)."
  type        = string
}

variable "sender_name" {
  description = "SMTP_SENDER_NAME: the sender name."
  type        = string
  default     = "JIT Access"
}

variable "notification_timezone" {
  description = "NOTIFICATION_TIMEZONE: IANA time zone for times in mail."
  type        = string
  default     = "UTC"
}

variable "notify_self_approved" {
  description = "NOTIFY_SELF_APPROVED: mail the requester about self-activations."
  type        = bool
  default     = true
}

variable "sweep_grace_period" {
  description = "SWEEP_GRACE_PERIOD: minutes after an activation ended before the sweeper removes its binding."
  type        = number
  default     = 60
}

variable "sweep_projects_query" {
  description = "SWEEP_PROJECTS_QUERY: which projects the sweeper walks when the scope is a folder or organization."
  type        = string
  default     = "state:ACTIVE"
}

variable "sweep_schedule" {
  description = "When the sweeper runs (cron, in sweep_time_zone): every minute by default, so that a revocation or an activation left half-done by an outage completes within a minute."
  type        = string
  default     = "* * * * *"
}

variable "sweep_time_zone" {
  description = "Time zone of sweep_schedule."
  type        = string
  default     = "Etc/UTC"
}

variable "log_level" {
  description = "RUST_LOG of every function, e.g. info or debug."
  type        = string
  default     = "info"
}

variable "max_instances" {
  description = "Most instances of each HTTP function."
  type        = number
  default     = 10
}

variable "mailer_max_delivery_attempts" {
  description = "Deliveries of one event to the mailer (or to the Chat app) before it is parked on the dead-letter topic."
  type        = number
  default     = 10
}

variable "ledger_database" {
  description = "The Firestore database of the request ledger: (default), or a name such as jit-ledger (a project whose (default) is taken, by App Engine say, names a new one)."
  type        = string
  default     = "(default)"
  validation {
    condition     = var.ledger_database == "(default)" || can(regex("^[a-z][a-z0-9-]{2,61}[a-z0-9]$", var.ledger_database))
    error_message = "ledger_database must be (default) or 4 to 63 lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "create_ledger_database" {
  description = "Create the ledger's Firestore database (true), or use ledger_database as it exists already, in Native mode, without managing it (false); Terraform still adds the indexes and the TTL policy. To manage an existing (default) instead, import it (README, \"Deploy\")."
  type        = bool
  default     = true
}

variable "ledger_location" {
  description = "Where the Firestore database lives (a Firestore location such as eur3 or nam5, or a region)."
  type        = string
  default     = "eur3"
}

variable "ledger_retention_days" {
  description = "LEDGER_RETENTION_DAYS: days a request is kept after it ends (Firestore TTL)."
  type        = number
  default     = 400
}

variable "approval_policy" {
  description = "APPROVAL_POLICY: JSON rules, the first matching wins, e.g. [{\"roles\": [\"roles/owner\"], \"resources\": [\"projects/prod-*\"], \"approvals\": 2, \"approverReason\": \"required\", \"maxDuration\": 60, \"breakGlass\": {\"maxDuration\": 30, \"reviewWithin\": 240}}]; breakGlass opens the emergency path. Empty: one approval."
  type        = string
  default     = ""
}

variable "break_glass_limit" {
  description = "BREAK_GLASS_LIMIT: emergency grants one person may take per period, COUNT/PERIOD with the period in days (d), hours (h) or minutes (m)."
  type        = string
  default     = "3/7d"
  validation {
    condition     = can(regex("^[0-9]{1,3}/[0-9]+[dhm]$", var.break_glass_limit))
    error_message = "break_glass_limit is COUNT/PERIOD, e.g. 3/7d or 1/12h."
  }
}

variable "administrators" {
  description = "ADMINISTRATORS: user:EMAIL and group:EMAIL who may revoke any grant, see any request and reject emergency access; mailed of every emergency access."
  type        = list(string)
  default     = []
}

variable "activation_max_schedule" {
  description = "ACTIVATION_MAX_SCHEDULE: how far ahead, in minutes, an activation may be scheduled to start (default 7 days)."
  type        = number
  default     = 10080
}

variable "chat_audience" {
  description = "CHAT_AUDIENCE: the Chat app's authentication audience as set in the Chat API's configuration page: empty for the project number (the default there), or the app's URL."
  type        = string
  default     = ""
  validation {
    condition     = var.chat_audience == "" || can(regex("^([0-9]+|https://.+)$", var.chat_audience))
    error_message = "chat_audience must be empty, a project number, or an https:// URL."
  }
}

variable "chat_click_timeout" {
  description = "CHAT_CLICK_TIMEOUT: seconds a click in Google Chat waits for its decision before answering that it is still being processed (1 to 25; Chat's reply deadline is about 30 s, not documented)."
  type        = number
  default     = 20
  validation {
    condition     = var.chat_click_timeout >= 1 && var.chat_click_timeout <= 25
    error_message = "chat_click_timeout must be 1 to 25 seconds."
  }
}

variable "chat_space" {
  description = "CHAT_SPACE: post each request's card once in this space (spaces/AAAA) instead of to each reviewer by direct message; empty for direct messages."
  type        = string
  default     = ""
  validation {
    condition     = var.chat_space == "" || can(regex("^spaces/[A-Za-z0-9_-]+$", var.chat_space))
    error_message = "chat_space must be empty or a space name such as spaces/AAAA."
  }
}
