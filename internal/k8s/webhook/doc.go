// Package webhook serves barelb's validating admission webhook from the
// controller: the HTTPS server, the handler that reads what the checks
// need and asks internal/admission for the verdict, and the keeper of the
// webhook's own certificate (no cert-manager needed).
//
// Every controller replica serves the webhook, not only the leader, so
// that the webhook Service has an endpoint whenever a controller runs.
package webhook
