terraform {
  required_version = ">= 1.5"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.14, < 8"
    }
    # google_project_service_identity (the IAP and Pub/Sub service agents) is in the beta
    # provider only.
    google-beta = {
      source  = "hashicorp/google-beta"
      version = ">= 6.14, < 8"
    }
  }
}
