// Package servingcert decides and makes the admission webhook's TLS
// material: a private CA that the API server trusts through the webhook
// configuration's caBundle, and a serving certificate that CA signs for
// the webhook Service's DNS names. It holds no Kubernetes code: Renew
// takes what is stored (PEM, as read from a Secret) and the time, and says
// what must be stored now.
//
// Both are renewed when less than a third of their lifetime remains, so
// that a renewal has a long margin before expiry. A replaced CA stays in
// the bundle until it expires: a replica still serving a certificate the
// old CA signed stays trusted until it picks up the new one.
package servingcert
