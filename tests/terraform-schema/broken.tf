# Each block below breaks the Google provider's schema once; scripts/terraform-check expects
# scripts/terraform-schema.py to report exactly these problems, so the checker itself is tested.

resource "google_cloud_run_v2_service" "unknown_attribute" {
  name     = "x"
  location = "europe-west1"
  ingres   = "INGRESS_TRAFFIC_ALL"
  template {
    containers {
      image = "x"
    }
  }
}

resource "google_cloud_run_v2_service" "missing_required_block" {
  name     = "x"
  location = "europe-west1"
}

resource "google_cloud_run_v2_service" "unknown_nested_block" {
  name     = "x"
  location = "europe-west1"
  template {
    containers {
      image = "x"
      resource {
        limits = { cpu = "1" }
      }
    }
  }
}

resource "google_cloud_run_v2_service" "unknown_dynamic_block" {
  name     = "x"
  location = "europe-west1"
  template {
    containers {
      image = "x"
      dynamic "environment" {
        for_each = {}
        content {
          name = environment.key
        }
      }
    }
  }
}

resource "google_pubsub_topic" "missing_required_attribute" {
  project = "p"
}

resource "google_cloud_run_service_v3" "unknown_type" {
  name = "x"
}

data "google_projekt" "unknown_data_source" {
  project_id = "p"
}

# Beta-only: without `provider = google-beta` it is an unknown type in the GA provider.
resource "google_project_service_identity" "beta_only_without_the_beta_provider" {
  service = "iap.googleapis.com"
}

resource "google_project_service_identity" "unknown_attribute_in_the_beta_schema" {
  provider = google-beta
  service  = "iap.googleapis.com"
  services = ["pubsub.googleapis.com"]
}
