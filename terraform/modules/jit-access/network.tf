# The external HTTPS load balancer with IAP in front of the three HTTP functions.
#
# Why a load balancer rather than Cloud Run's own IAP: the page calls three functions on one
# host, so something must route paths to services; the load balancer's URL map does that,
# with one managed certificate and one IAP configuration, as the reference app was deployed.

resource "google_compute_global_address" "frontend" {
  project = var.project_id
  name    = "jit-access"
}

resource "google_compute_managed_ssl_certificate" "frontend" {
  project = var.project_id
  name    = "jit-access"
  managed {
    domains = [var.domain]
  }
}

resource "google_compute_region_network_endpoint_group" "function" {
  for_each              = local.service_names
  project               = var.project_id
  name                  = "${each.value}-neg"
  region                = var.region
  network_endpoint_type = "SERVERLESS"
  cloud_run {
    # A name, not a reference: the backend service (and so the IAP audience) can exist
    # before the Cloud Run service that needs to know it.
    service = each.value
  }
  depends_on = [google_project_service.apis]
}

resource "google_compute_backend_service" "function" {
  for_each              = local.service_names
  project               = var.project_id
  name                  = "${each.value}-backend"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  protocol              = "HTTPS"
  backend {
    group = google_compute_region_network_endpoint_group.function[each.key].id
  }
  log_config {
    enable      = true
    sample_rate = 1
  }
  iap {
    enabled = true
  }
}

resource "google_iap_web_backend_service_iam_member" "users" {
  for_each = {
    for pair in setproduct(keys(local.service_names), var.iap_members) : "${pair[0]} ${pair[1]}" => { backend = pair[0], member = pair[1] }
  }
  project             = var.project_id
  web_backend_service = google_compute_backend_service.function[each.value.backend].name
  role                = "roles/iap.httpsResourceAccessor"
  member              = each.value.member
}

resource "google_compute_url_map" "frontend" {
  project         = var.project_id
  name            = "jit-access"
  default_service = google_compute_backend_service.function["list_eligibility"].id

  host_rule {
    hosts        = [var.domain]
    path_matcher = "functions"
  }

  path_matcher {
    name            = "functions"
    default_service = google_compute_backend_service.function["list_eligibility"].id

    route_rules {
      priority = 1
      match_rules {
        # projects, folders and organizations alike
        path_template_match = "/api/{kind}/{id}/roles/self-activate"
      }
      match_rules {
        path_template_match = "/api/{kind}/{id}/roles/request"
      }
      match_rules {
        path_template_match = "/api/requests/{id}/withdraw"
      }
      match_rules {
        path_template_match = "/api/requests/{id}/extend"
      }
      service = google_compute_backend_service.function["request_approval"].id
    }
    route_rules {
      priority = 2
      match_rules {
        full_path_match = "/api/activation-request"
      }
      match_rules {
        path_template_match = "/api/requests/{id}"
      }
      match_rules {
        path_template_match = "/api/requests/{id}/{action}"
      }
      service = google_compute_backend_service.function["approve"].id
    }
    route_rules {
      priority = 3
      match_rules {
        # emergency access, on projects, folders and organizations alike
        path_template_match = "/api/{kind}/{id}/roles/break-glass"
      }
      service = google_compute_backend_service.function["request_approval"].id
    }
  }
}

resource "google_compute_target_https_proxy" "frontend" {
  project          = var.project_id
  name             = "jit-access"
  url_map          = google_compute_url_map.frontend.id
  ssl_certificates = [google_compute_managed_ssl_certificate.frontend.id]
}

resource "google_compute_global_forwarding_rule" "https" {
  project               = var.project_id
  name                  = "jit-access-https"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  ip_address            = google_compute_global_address.frontend.id
  port_range            = "443"
  target                = google_compute_target_https_proxy.frontend.id
}

# Plain HTTP only redirects to HTTPS.
resource "google_compute_url_map" "redirect" {
  project = var.project_id
  name    = "jit-access-redirect"
  default_url_redirect {
    https_redirect         = true
    redirect_response_code = "MOVED_PERMANENTLY_DEFAULT"
    strip_query            = false
  }
}

resource "google_compute_target_http_proxy" "redirect" {
  project = var.project_id
  name    = "jit-access-redirect"
  url_map = google_compute_url_map.redirect.id
}

resource "google_compute_global_forwarding_rule" "http" {
  project               = var.project_id
  name                  = "jit-access-http"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  ip_address            = google_compute_global_address.frontend.id
  port_range            = "80"
  target                = google_compute_target_http_proxy.redirect.id
}
