output "url" {
  description = "The address users open."
  value       = local.base_url
}

output "ip_address" {
  description = "Point the domain's A record here; the managed certificate is issued once it resolves."
  value       = google_compute_global_address.frontend.address
}

output "topic" {
  description = "The events topic, for subscribers (see docs/events.md)."
  value       = google_pubsub_topic.events.id
}

output "dead_letter_topic" {
  description = "Where events the mailer could not handle end up."
  value       = google_pubsub_topic.dead_letter.id
}

output "sendgrid_secret" {
  description = "Add the SendGrid API key as a version of this secret."
  value       = google_secret_manager_secret.sendgrid.id
}

output "service_accounts" {
  description = "The service account of each function, of the token signer, of the push subscription and of the scheduler."
  value = merge(
    { for key, account in google_service_account.function : key => account.email },
    {
      token_signer = google_service_account.signer.email
      push         = google_service_account.push.email
      scheduler    = google_service_account.scheduler.email
    },
  )
}

output "iap_audiences" {
  description = "The IAP audience each HTTP function verifies."
  value       = local.iap_audience
}

output "chat_app_url" {
  description = "The Google Chat app's HTTP endpoint: set it in the Chat API's configuration page (README, \"Approve from Google Chat\")."
  value       = local.chat_url
}
