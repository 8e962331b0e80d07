# An example root configuration: the whole system in one apply.
#
#   cp terraform.tfvars.example terraform.tfvars   # and edit it
#   terraform init && terraform apply

variable "project_id" {
  description = "The project that hosts JIT access."
  type        = string
}

variable "region" {
  description = "Region of the Cloud Run services."
  type        = string
  default     = "europe-west1"
}

variable "domain" {
  description = "The DNS name users open."
  type        = string
}

variable "resource_scope" {
  description = "organizations/NUMBER, folders/NUMBER or projects/ID."
  type        = string
}

variable "iap_members" {
  description = "Who may open the app, e.g. [\"domain:example.com\"]."
  type        = list(string)
}

variable "sender_address" {
  description = "The address mail is sent from."
  type        = string
}

variable "image_tag" {
  description = "The tag cloudbuild.yaml pushed (the commit's short SHA)."
  type        = string
}

variable "repository" {
  description = "Artifact Registry repository holding the images."
  type        = string
  default     = "jit-access"
}

provider "google" {
  project = var.project_id
  region  = var.region
}

# The module creates the IAP and Pub/Sub service agents with the beta provider.
provider "google-beta" {
  project = var.project_id
  region  = var.region
}

locals {
  registry = "${var.region}-docker.pkg.dev/${var.project_id}/${var.repository}"
}

module "jit_access" {
  source = "../../modules/jit-access"

  project_id     = var.project_id
  region         = var.region
  domain         = var.domain
  resource_scope = var.resource_scope
  iap_members    = var.iap_members
  sender_address = var.sender_address
  images = {
    list_eligibility = "${local.registry}/list-eligibility:${var.image_tag}"
    request_approval = "${local.registry}/request-approval:${var.image_tag}"
    approve          = "${local.registry}/approve:${var.image_tag}"
    mailer           = "${local.registry}/mailer:${var.image_tag}"
    sweeper          = "${local.registry}/sweeper:${var.image_tag}"
    chat             = "${local.registry}/chat:${var.image_tag}"
  }
}

output "url" {
  value = module.jit_access.url
}

output "chat_app_url" {
  value = module.jit_access.chat_app_url
}

output "ip_address" {
  value = module.jit_access.ip_address
}

output "topic" {
  value = module.jit_access.topic
}

output "service_accounts" {
  value = module.jit_access.service_accounts
}
