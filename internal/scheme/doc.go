// Package scheme builds the runtime.Scheme barelb's programs and tests use:
// client-go's built-in types and barelb.io/v1beta1, or for the speaker only
// the built-in groups it reads.
package scheme
