// Package listretry keeps an informer that cannot list (the API server is
// away) trying at a steady pace instead of falling into client-go's
// reflector backoff.
//
// A reflector whose list fails waits before the next attempt, and the
// wait doubles with every failure, up to 30 s and then doubled again by
// jitter. A speaker started while the API server is away keeps failing to
// list, so when the server comes back its caches could stay empty for up
// to a minute, and with them its ServiceL2Statuses and readiness. A
// wrapped ListerWatcher retries a failed list itself every Interval, for
// up to Patience, and hands the reflector only errors that retrying will
// not cure (the request is refused, not unanswered): the caches fill
// within about Interval of the API server's return.
package listretry
