package rules

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/deskgate/deskgate/gateway/model"
)

// Outcome is what became of one recipient of a delivery: its new state and the reply that
// says why (the upstream's, a DSN's, an operator's).
type Outcome struct {
	State model.DeliveryState
	Reply string
}

// Settlement is a delivery after outcomes: its recipients, its state, and the failures to flag
// on the ticket (T6).
type Settlement struct {
	Recipients []model.DeliveryRecipient
	State      model.DeliveryState
	Failures   []model.DeliveryFailure
}

// Settle applies outcomes (keyed by model.AddressKey) to the recipients of delivery id,
// which told of source. A recipient of an end user's copy that fails for the first time is a
// failure to flag on the ticket (T6): agents see it where they look, and no bounce becomes a
// comment that would notify followers.
func Settle(id, source uint64, recipients []model.DeliveryRecipient, outcomes map[string]Outcome, at time.Time) Settlement {
	s := Settlement{Recipients: append([]model.DeliveryRecipient(nil), recipients...)}
	for i, r := range s.Recipients {
		o, ok := outcomes[model.AddressKey(r.Email)]
		if !ok {
			continue
		}
		if o.State == model.DeliveryFailed && r.Visible && r.State != model.DeliveryFailed {
			s.Failures = append(s.Failures, model.DeliveryFailure{Email: r.Email, As: r.As, Delivery: id, SourceID: source, Reply: o.Reply, At: at})
		}
		s.Recipients[i].State, s.Recipients[i].Reply = o.State, o.Reply
	}
	s.State = DeliveryState(s.Recipients)
	return s
}

// DeliveryState is a delivery's state from its recipients': queued while any waits; partial
// when some were sent and some failed; failed, dropped or sent when all ended alike.
func DeliveryState(recipients []model.DeliveryRecipient) model.DeliveryState {
	var queued, sent, failed, dropped int
	for _, r := range recipients {
		switch r.State {
		case model.DeliveryQueued:
			queued++
		case model.DeliverySent:
			sent++
		case model.DeliveryFailed:
			failed++
		case model.DeliveryDropped:
			dropped++
		}
	}
	switch {
	case queued > 0:
		return model.DeliveryQueued
	case failed > 0 && sent > 0:
		return model.DeliveryPartial
	case failed > 0:
		return model.DeliveryFailed
	case dropped > 0 && sent == 0:
		return model.DeliveryDropped
	}
	return model.DeliverySent
}

// Retry says which recipients an operator's retry puts back on the queue: those waiting and
// those that failed. ok is false when there is nothing to retry.
func Retry(recipients []model.DeliveryRecipient) (outcomes map[string]Outcome, ok bool) {
	outcomes = map[string]Outcome{}
	for _, r := range recipients {
		if r.State == model.DeliveryQueued || r.State == model.DeliveryFailed {
			outcomes[model.AddressKey(r.Email)] = Outcome{model.DeliveryQueued, r.Reply}
		}
	}
	return outcomes, len(outcomes) > 0
}

// Drop takes a queued delivery's waiting recipients off the queue; a delivery that is not
// queued cannot be dropped.
func Drop(id uint64, state model.DeliveryState, recipients []model.DeliveryRecipient) (map[string]Outcome, *Refusal) {
	if state != model.DeliveryQueued {
		return nil, refuse(RefuseConflict, "", "delivery %d is not queued (state %s)", id, state)
	}
	outcomes := map[string]Outcome{}
	for _, r := range recipients {
		if r.State == model.DeliveryQueued {
			outcomes[model.AddressKey(r.Email)] = Outcome{model.DeliveryDropped, "dropped by an operator"}
		}
	}
	return outcomes, nil
}

// NothingToRetry is the refusal for a retry of a delivery with no waiting or failed recipient.
func NothingToRetry(id uint64, state model.DeliveryState) *Refusal {
	return &Refusal{Kind: RefuseConflict, Msg: fmt.Sprintf("delivery %d has nothing to retry (state %s)", id, state)}
}

// Answer is what the upstream said of one recipient of an attempt.
type Answer struct {
	Email     string
	Accepted  bool
	Permanent bool   // a 5xx: the recipient fails for good
	Reply     string // the upstream's words, for the record
}

// AfterAttempt decides each recipient's outcome after one attempt through via: accepted is
// sent, a permanent refusal failed, anything else waits for the next try, unless the delivery
// has been on the queue for its whole lifetime, which fails it. last is the reply to show for
// the delivery.
func AfterAttempt(answers []Answer, via string, age, lifetime time.Duration) (outcomes map[string]Outcome, last string) {
	outcomes = map[string]Outcome{}
	last = "accepted by " + via
	for _, a := range answers {
		key := model.AddressKey(a.Email)
		switch {
		case a.Accepted:
			outcomes[key] = Outcome{model.DeliverySent, "accepted by " + via}
		case a.Permanent:
			outcomes[key] = Outcome{model.DeliveryFailed, a.Reply}
			last = a.Reply
		case age >= lifetime:
			outcomes[key] = Outcome{model.DeliveryFailed, fmt.Sprintf("gave up after upstream.max_queue_lifetime (%s): %s", lifetime, a.Reply)}
			last = a.Reply
		default:
			outcomes[key] = Outcome{model.DeliveryQueued, a.Reply}
			last = a.Reply
		}
	}
	return outcomes, last
}

// Backoff is the wait before retry number n (1-based): retryMin, doubled at each retry, never
// over retryMax.
func Backoff(n int, retryMin, retryMax time.Duration) time.Duration {
	d := retryMin
	for i := 1; i < n && d < retryMax; i++ {
		d *= 2
	}
	if d > retryMax {
		d = retryMax
	}
	return d
}

// Kinds of mail that reach a bounce address (T6).
const (
	BounceDSN       = "dsn"        // a delivery status notification (RFC 3464)
	BounceAutoReply = "auto_reply" // automatic mail that is not a DSN: out-of-office and the like
	BounceOther     = "other"      // anything else: a person's mail, a bounce in plain text
)

// BounceVerdict is what a mail to a delivery's bounce address does: its kind, the delivery's
// recipients it fails (by model.AddressKey) with the reply to record for each, those it reports
// delayed, whose state stays as it is but whose reply records the delay, and, when it
// changes nothing, why not.
type BounceVerdict struct {
	Kind    string
	Failed  map[string]string
	Delayed map[string]string
	Why     string
}

// maxBounceReply bounds what a DSN's sender gets recorded on a delivery and shown to agents.
const maxBounceReply = 300

// BounceKind sorts a mail to a bounce address. The bounce address is the envelope sender of
// every copy, so every recipient knows it, and out-of-office replies go there too: a mail
// is a DSN by its structure, never by an empty envelope sender or by what its text says.
func BounceKind(rep model.BounceReport) (kind, why string) {
	if rep.DSN {
		return BounceDSN, "a delivery status notification"
	}
	if auto := automaticHeader(rep.Header); auto != "" {
		return BounceAutoReply, "automatic mail (" + auto + "), not a delivery status notification"
	}
	return BounceOther, "not a delivery status notification (RFC 3464 multipart/report)"
}

// Bounce decides what a mail to the bounce address of a delivery to recipients does (T6):
// only a DSN's per-recipient report that names one of those recipients (by Final-Recipient
// or Original-Recipient) counts. Action: failed fails it; Action: delayed fails nobody, as
// the remote server is still trying, but its status is recorded on the recipient, so that
// agents see why an answer is late. Delivered, relayed and expanded change nothing.
func Bounce(recipients []string, rep model.BounceReport) BounceVerdict {
	kind, why := BounceKind(rep)
	v := BounceVerdict{Kind: kind, Failed: map[string]string{}, Delayed: map[string]string{}}
	if kind != BounceDSN {
		v.Why = why
		return v
	}
	known := map[string]bool{}
	for _, r := range recipients {
		known[bounceKey(r)] = true
	}
	var said []string
	strangers := 0
	for _, r := range rep.Recipients {
		email := ""
		for _, a := range []string{r.Email, r.Original} {
			if k := bounceKey(a); email == "" && a != "" && known[k] {
				email = k
			}
		}
		switch {
		case email == "":
			strangers++
		case r.Action == "failed":
			v.Failed[email] = bounceReply(r)
		case r.Action == "delayed":
			v.Delayed[email] = "delayed: " + bounceReply(r)
		default:
			action := r.Action
			if action == "" {
				action = "no action"
			}
			said = append(said, email+": "+action)
		}
	}
	if len(v.Failed) > 0 || len(v.Delayed) > 0 {
		return v
	}
	switch {
	case len(said) > 0:
		v.Why = "the DSN reports " + strings.Join(said, ", ") + "; only Action: failed or delayed counts"
	case strangers == 1:
		v.Why = "the DSN names no recipient of this delivery, only another address"
	case strangers > 1:
		v.Why = fmt.Sprintf("the DSN names no recipient of this delivery, only %d other addresses", strangers)
	default:
		v.Why = "the DSN names no recipient of this delivery"
	}
	return v
}

// bounceKey is an address as deliveries are keyed (Settle): model.AddressKey, as deskgate
// compares addresses everywhere.
func bounceKey(a string) string { return model.AddressKey(a) }

// bounceReply is the reply recorded for a recipient a DSN fails: its status and diagnostic,
// on one line, cut short on a character boundary.
func bounceReply(r model.BounceRecipient) string {
	s := strings.Join(strings.Fields(strings.Map(func(c rune) rune {
		if c < ' ' || c == 0x7f || (c >= 0x80 && c < 0xa0) {
			return ' '
		}
		return c
	}, strings.ToValidUTF8("DSN "+r.Status+" "+r.Diagnostic, ""))), " ")
	if len(s) > maxBounceReply {
		cut := maxBounceReply
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}
