// Package install proves that the install manifests (config/default)
// are what a cluster operator applies: every object is accepted by a real
// API server, the RBAC is least privilege (checked rule by rule with
// SubjectAccessReviews), and the controller does its job with nothing but
// that RBAC. The speakers run with their RBAC in every lab test
// (e2etest/lab applies config/rbac and runs them as their ServiceAccount).
package install
