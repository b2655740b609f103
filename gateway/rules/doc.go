// Package rules decides what one event does to a ticket: a received mail (Thread, Repeat,
// Identify, DecideMail), an expert's action (DecideAction), a reply or a solve from the status
// view (DecideWebReply, DecideWebSolve), and what becomes of a delivery (Settle, AfterAttempt,
// Bounce). Every step of a Decision names the docs/rules.md rule that took it, and the list of
// steps is the trace that `deskgate explain` prints.
//
// The package is pure: no I/O, no clock, no randomness. A decision depends only on what it is
// given, the ticket, the facts the caller gathered about the event and the Env, so that the
// same event always decides the same way and every rule is tested without a store or a
// network. To keep it so, it imports only the standard library and gateway/model
// (TestRulesImportOnlyTheModel checks); gathering the facts and applying a Decision are
// gateway/desk's.
package rules
