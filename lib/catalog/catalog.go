// Package catalog is the one table of tidings functions: each function's
// name, the HTTP method it is called with, whether it is internal and
// whether clients may queue it as a job. It is the data half of the wiring
// table (package functions builds the handlers from it) and imports no
// handler, so gateway-ws, the job queue, the dev host and the deployment
// tests can read it without linking a function.
package catalog

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// Function is one function as its callers see it.
type Function struct {
	// Name is the function's name: its folder under functions/, its
	// stack.yml entry and its route /function/<name>.
	Name string
	// Method is the HTTP method it is called with: GET takes its
	// arguments in the query string, POST in a JSON body.
	Method string
	// Internal functions refuse a call without the internal key; only
	// gateway-ws holds it, and it never passes them through to clients.
	Internal bool
	// Queueable functions may be queued by clients as jobs through
	// POST /api/jobs/<name>. Internal ones never are (gateway-ws queues
	// them from Go).
	Queueable bool
	// Participant is the two-phase commit participant whose database the
	// function uses besides the directory (DATABASE_URL, which every
	// function is given): Persist or Counter, or empty for none. A
	// deployment gives the function that database's URL (ParticipantEnv)
	// and no other participant's: one left out would fall back to
	// DATABASE_URL, where none of the participant's tables are.
	Participant string
	// KeyScope is the API-key scope that lets a key call the function as
	// its owner (ScopePublish, ScopeManage or ScopeRead); empty: a key is
	// refused with 403 and only a user's token is accepted.
	KeyScope string
}

// The scopes of an API key: what it may do as its owner.
const (
	ScopePublish = "publish" // publish on the owner's topics (gateway-ws's POST /api/topics/<id>/notifications)
	ScopeManage  = "manage"  // create topics, list topics and their subscribers
	ScopeRead    = "read"    // read the owner's notifications and unread count
)

// Scopes lists every scope, sorted.
var Scopes = []string{ScopeManage, ScopePublish, ScopeRead}

// The participants, named as their databases' schemas (lib/store).
const (
	Persist = "persist" // notifications, deliveries, the ack outbox
	Counter = "counter" // unread counters
)

// ParticipantEnv is the environment variable holding each participant's
// database URL (lib/config).
var ParticipantEnv = map[string]string{Persist: "PERSIST_DATABASE_URL", Counter: "COUNTER_DATABASE_URL"}

// CheckParticipantEnv checks a deployment's environment for a process of
// the given participant ("" for one of none, such as gateway-ws, which
// reads only the directory): has reports whether the deployment sets a
// variable. It is the rule the deployment tests (stack.yml, compose,
// faasd, Kubernetes, Lambda) share.
func CheckParticipantEnv(participant string, has func(env string) bool) error {
	var errs []error
	for _, p := range []string{Persist, Counter} {
		env := ParticipantEnv[p]
		switch {
		case p == participant && !has(env):
			errs = append(errs, fmt.Errorf("no %s: the %s participant's tables are not in DATABASE_URL's database", env, p))
		case p != participant && has(env):
			errs = append(errs, fmt.Errorf("%s is set, but only the %s participant's functions use that database", env, p))
		}
	}
	return errors.Join(errs...)
}

// functions is the catalogue, sorted by name (Lookup searches it). The
// internal ones are the two-phase commit participants (notify-* and
// counter-*: prepare, commit, rollback, and indoubt, what each holds
// prepared, which recovery reads when a record is lost), the ack relay's
// two ends (notify-acks, counter-ack), counter-read (unread counts for
// gateway-ws), notify-since (a user's notifications after an id, for
// gateway-ws's replay) and send-mail, which goes out only through
// gateway-ws's job queue.
var functions = []Function{
	{Name: "ack-all", Method: http.MethodPost, Participant: Persist},
	{Name: "ack-notification", Method: http.MethodPost, Participant: Persist},
	{Name: "change-password", Method: http.MethodPost},
	{Name: "counter-ack", Method: http.MethodPost, Internal: true, Participant: Counter},
	{Name: "counter-commit", Method: http.MethodPost, Internal: true, Participant: Counter},
	{Name: "counter-indoubt", Method: http.MethodPost, Internal: true, Participant: Counter},
	{Name: "counter-prepare", Method: http.MethodPost, Internal: true, Participant: Counter},
	{Name: "counter-read", Method: http.MethodPost, Internal: true, Participant: Counter},
	{Name: "counter-rollback", Method: http.MethodPost, Internal: true, Participant: Counter},
	{Name: "create-api-key", Method: http.MethodPost},
	{Name: "create-topic", Method: http.MethodPost, KeyScope: ScopeManage},
	{Name: "gen-avatar", Method: http.MethodGet, Queueable: true},
	{Name: "get-counter", Method: http.MethodGet, Participant: Counter, KeyScope: ScopeRead},
	{Name: "list-api-keys", Method: http.MethodGet},
	{Name: "list-notifications", Method: http.MethodGet, Participant: Persist, KeyScope: ScopeRead},
	{Name: "list-topics", Method: http.MethodGet, KeyScope: ScopeManage},
	{Name: "login", Method: http.MethodPost},
	{Name: "logout", Method: http.MethodPost},
	{Name: "logout-all", Method: http.MethodPost},
	{Name: "notify-acks", Method: http.MethodPost, Internal: true, Participant: Persist},
	{Name: "notify-commit", Method: http.MethodPost, Internal: true, Participant: Persist},
	{Name: "notify-indoubt", Method: http.MethodPost, Internal: true, Participant: Persist},
	{Name: "notify-prepare", Method: http.MethodPost, Internal: true, Participant: Persist},
	{Name: "notify-rollback", Method: http.MethodPost, Internal: true, Participant: Persist},
	{Name: "notify-since", Method: http.MethodPost, Internal: true, Participant: Persist},
	{Name: "register", Method: http.MethodPost},
	{Name: "revoke-api-key", Method: http.MethodPost},
	{Name: "send-mail", Method: http.MethodPost, Internal: true},
	{Name: "subscribe", Method: http.MethodPost},
	{Name: "unsubscribe", Method: http.MethodPost},
}

// All returns every function, sorted by name.
func All() []Function { return slices.Clone(functions) }

// Lookup returns the named function; ok is false when there is none.
func Lookup(name string) (f Function, ok bool) {
	i, found := slices.BinarySearchFunc(functions, name, func(f Function, name string) int {
		return strings.Compare(f.Name, name)
	})
	if !found {
		return Function{}, false
	}
	return functions[i], true
}

// Names lists every function's name, sorted.
func Names() []string { return names(func(Function) bool { return true }) }

// Public lists the functions clients may call (those not Internal),
// sorted: what gateway-ws passes through at /function/<name>.
func Public() []string { return names(func(f Function) bool { return !f.Internal }) }

// Queueable lists the functions clients may queue as jobs, sorted.
func Queueable() []string { return names(func(f Function) bool { return f.Queueable }) }

func names(keep func(Function) bool) []string {
	var out []string
	for _, f := range functions {
		if keep(f) {
			out = append(out, f.Name)
		}
	}
	return out
}
