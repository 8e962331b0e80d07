# Excludes the checked provider version on purpose: scripts/terraform-check expects the report.
terraform {
  required_version = ">= 1.5"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 7"
    }
  }
}
