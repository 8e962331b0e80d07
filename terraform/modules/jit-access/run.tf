# The Cloud Run services (three behind IAP, the mailer, the Chat app) and the sweeper job.

locals {
  http_functions = {
    list_eligibility = { image = var.images.list_eligibility, env = local.list_eligibility_env }
    request_approval = { image = var.images.request_approval, env = local.request_approval_env }
    approve          = { image = var.images.approve, env = local.approve_env }
  }
}

# The three HTTP functions: reachable only through the load balancer, which runs IAP.
resource "google_cloud_run_v2_service" "http" {
  for_each            = local.http_functions
  project             = var.project_id
  name                = local.service_names[each.key]
  location            = var.region
  ingress             = "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"
  deletion_protection = false

  template {
    service_account = google_service_account.function[each.key].email
    scaling {
      max_instance_count = var.max_instances
    }
    containers {
      image = each.value.image
      resources {
        limits   = { cpu = "1", memory = "256Mi" }
        cpu_idle = true
      }
      dynamic "env" {
        for_each = each.value.env
        content {
          name  = env.key
          value = env.value
        }
      }
      # Ready once the SDK clients are built; the port opens before that.
      startup_probe {
        http_get {
          path = "/health/ready"
        }
      }
      liveness_probe {
        http_get {
          path = "/health/alive"
        }
      }
    }
  }
  depends_on = [google_project_service.apis]
}

# The mailer: reachable from the internet, but invocable only by the push subscription's
# identity. Cloud Run's invoker check verifies the push token's signature and forwards it with
# the signature removed; the mailer (PUSH_AUTH=cloud-run) checks every claim. The invoker check
# must stay on: the mailer trusts a removed signature only because of it.
resource "google_cloud_run_v2_service" "mailer" {
  project              = var.project_id
  name                 = "jit-mailer"
  location             = var.region
  ingress              = "INGRESS_TRAFFIC_ALL"
  invoker_iam_disabled = false
  deletion_protection  = false

  template {
    service_account = google_service_account.function["mailer"].email
    scaling {
      max_instance_count = 3
    }
    containers {
      image = var.images.mailer
      resources {
        limits   = { cpu = "1", memory = "256Mi" }
        cpu_idle = true
      }
      dynamic "env" {
        for_each = local.mailer_env
        content {
          name  = env.key
          value = env.value
        }
      }
      # Ready once the SDK clients are built; the port opens before that.
      startup_probe {
        http_get {
          path = "/health/ready"
        }
      }
    }
  }
  depends_on = [google_project_service.apis, google_secret_manager_secret_iam_member.mailer_reads_key]
}

# The Google Chat app: Google Chat calls it with a token whose audience is the project number
# (or, if so configured, a Google ID token for its URL), which Cloud Run's invoker check cannot
# accept; so the invoker check is off and the app verifies Chat's token, and the push
# subscription's, itself (docs/security.md, "Google Chat").
resource "google_cloud_run_v2_service" "chat" {
  project              = var.project_id
  name                 = "jit-chat"
  location             = var.region
  ingress              = "INGRESS_TRAFFIC_ALL"
  invoker_iam_disabled = true
  deletion_protection  = false

  template {
    service_account = google_service_account.function["chat"].email
    scaling {
      max_instance_count = 3
    }
    containers {
      image = var.images.chat
      resources {
        # 512Mi: Google's pages disagree on the least memory with CPU always allocated (128 or
        # 512 MiB for 1 vCPU); the stricter one.
        limits = { cpu = "1", memory = "512Mi" }
        # A click past CHAT_CLICK_TIMEOUT is answered while its decision runs on in the
        # background: CPU stays allocated, so that decision is not throttled between its fresh
        # reads and its IAM write (and is not decided minutes later on stale reads).
        cpu_idle = false
      }
      dynamic "env" {
        for_each = local.chat_env
        content {
          name  = env.key
          value = env.value
        }
      }
      # Ready once the SDK clients are built; the port opens before that.
      startup_probe {
        http_get {
          path = "/health/ready"
        }
      }
    }
  }
  depends_on = [google_project_service.apis]
}

resource "google_cloud_run_v2_service_iam_member" "push_invokes_mailer" {
  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_service.mailer.name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.push.email}"
}

# IAP calls the services as its service agent, created first (main.tf).
resource "google_cloud_run_v2_service_iam_member" "iap_invokes" {
  for_each = local.http_functions
  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_service.http[each.key].name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_project_service_identity.agents["iap.googleapis.com"].email}"
}

resource "google_cloud_run_v2_job" "sweeper" {
  project             = var.project_id
  name                = "jit-sweeper"
  location            = var.region
  deletion_protection = false

  template {
    task_count = 1
    template {
      service_account = google_service_account.function["sweeper"].email
      max_retries     = 1
      timeout         = "900s"
      containers {
        image = var.images.sweeper
        resources {
          limits = { cpu = "1", memory = "256Mi" }
        }
        dynamic "env" {
          for_each = local.sweeper_env
          content {
            name  = env.key
            value = env.value
          }
        }
      }
    }
  }
  depends_on = [google_project_service.apis]
}

resource "google_cloud_run_v2_job_iam_member" "scheduler_runs_sweeper" {
  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_job.sweeper.name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.scheduler.email}"
}

resource "google_cloud_scheduler_job" "sweeper" {
  project     = var.project_id
  region      = var.region
  name        = "jit-sweeper"
  description = "Removes JIT access activation bindings that ended more than ${var.sweep_grace_period} minutes ago"
  schedule    = var.sweep_schedule
  time_zone   = var.sweep_time_zone

  http_target {
    http_method = "POST"
    uri         = "https://run.googleapis.com/v2/projects/${var.project_id}/locations/${var.region}/jobs/${google_cloud_run_v2_job.sweeper.name}:run"
    oauth_token {
      service_account_email = google_service_account.scheduler.email
    }
  }
  depends_on = [google_cloud_run_v2_job_iam_member.scheduler_runs_sweeper]
}
