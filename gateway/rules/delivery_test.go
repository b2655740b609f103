package rules

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/deskgate/deskgate/gateway/model"
)

func rcpt(email string, state model.DeliveryState, visible bool) model.DeliveryRecipient {
	return model.DeliveryRecipient{Email: email, As: "cc", Visible: visible, State: state}
}

func TestDeliveryState(t *testing.T) {
	q, s, f, d := model.DeliveryQueued, model.DeliverySent, model.DeliveryFailed, model.DeliveryDropped
	for _, tc := range []struct {
		states []model.DeliveryState
		want   model.DeliveryState
	}{
		{[]model.DeliveryState{q, s}, q},
		{[]model.DeliveryState{s, s}, s},
		{[]model.DeliveryState{s, f}, model.DeliveryPartial},
		{[]model.DeliveryState{f, f}, f},
		{[]model.DeliveryState{f, d}, f},
		{[]model.DeliveryState{d, d}, d},
		{[]model.DeliveryState{s, d}, s},
	} {
		var rs []model.DeliveryRecipient
		for _, st := range tc.states {
			rs = append(rs, rcpt("x@y", st, true))
		}
		if got := DeliveryState(rs); got != tc.want {
			t.Errorf("%v: %s, want %s", tc.states, got, tc.want)
		}
	}
}

// T6: a failure of an end user's copy is flagged once; an agent's copy or a second failure is not.
func TestT6_SettleFlagsEndUsersFailuresOnce(t *testing.T) {
	at := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	rs := []model.DeliveryRecipient{rcpt("Joe@customer.test", model.DeliveryQueued, true), rcpt("carol@example.com", model.DeliveryQueued, false)}
	s := Settle(7, 3, rs, map[string]Outcome{"joe@customer.test": {model.DeliveryFailed, "550 5.1.1"}, "carol@example.com": {model.DeliveryFailed, "550"}}, at)
	if s.State != model.DeliveryFailed || len(s.Failures) != 1 || s.Failures[0].Email != "Joe@customer.test" || s.Failures[0].Delivery != 7 || s.Failures[0].SourceID != 3 || !s.Failures[0].At.Equal(at) {
		t.Fatalf("settlement %+v", s)
	}
	if rs[0].State != model.DeliveryQueued {
		t.Errorf("Settle changed its input")
	}
	again := Settle(7, 3, s.Recipients, map[string]Outcome{"joe@customer.test": {model.DeliveryFailed, "550 again"}}, at)
	if len(again.Failures) != 0 {
		t.Errorf("a second failure flagged again: %+v", again.Failures)
	}
}

func TestAfterAttempt(t *testing.T) {
	answers := []Answer{{Email: "a@x", Accepted: true}, {Email: "b@x", Permanent: true, Reply: "550 no"}, {Email: "c@x", Reply: "450 later"}}
	out, last := AfterAttempt(answers, "relay:587", time.Hour, 120*time.Hour)
	if out["a@x"].State != model.DeliverySent || out["b@x"].State != model.DeliveryFailed || out["c@x"].State != model.DeliveryQueued || last != "450 later" {
		t.Errorf("within the lifetime: %+v %q", out, last)
	}
	out, _ = AfterAttempt(answers[2:], "relay:587", 121*time.Hour, 120*time.Hour)
	if out["c@x"].State != model.DeliveryFailed {
		t.Errorf("past the lifetime a deferral must fail: %+v", out)
	}
	if _, last := AfterAttempt(answers[:1], "maildir", 0, time.Hour); last != "accepted by maildir" {
		t.Errorf("all accepted: %q", last)
	}
}

func TestRetryAndDrop(t *testing.T) {
	rs := []model.DeliveryRecipient{rcpt("a@x", model.DeliverySent, true), rcpt("b@x", model.DeliveryFailed, true), rcpt("c@x", model.DeliveryQueued, true)}
	out, ok := Retry(rs)
	if !ok || len(out) != 2 || out["b@x"].State != model.DeliveryQueued || out["c@x"].State != model.DeliveryQueued {
		t.Errorf("retry: %+v", out)
	}
	if _, ok := Retry(rs[:1]); ok {
		t.Errorf("a sent delivery has something to retry")
	}
	drop, ref := Drop(1, model.DeliveryQueued, rs)
	if ref != nil || len(drop) != 1 || drop["c@x"].State != model.DeliveryDropped {
		t.Errorf("drop: %+v %v", drop, ref)
	}
	if _, ref := Drop(1, model.DeliverySent, rs); ref == nil || ref.Kind != RefuseConflict {
		t.Errorf("dropping a sent delivery: %v", ref)
	}
}

// dsnFor is a delivery status notification as the parser reads one: per-recipient reports
// taken from a multipart/report of report-type delivery-status.
func dsnFor(rs ...model.BounceRecipient) model.BounceReport {
	return model.BounceReport{DSN: true, Recipients: rs, Text: "Your message could not be delivered.",
		Header: map[string]string{"Auto-Submitted": "auto-replied", "From": "MAILER-DAEMON@mx.customer.test"}}
}

func TestT6_DSNForARecipientMarksItFailed(t *testing.T) {
	v := Bounce([]string{"Joe@Customer.test", kim}, dsnFor(
		model.BounceRecipient{Email: "joe@CUSTOMER.TEST", Action: "failed", Status: "5.1.1", Diagnostic: "smtp; 550 5.1.1 User unknown"},
		model.BounceRecipient{Email: kim, Action: "delivered", Status: "2.0.0"}))
	if v.Kind != BounceDSN {
		t.Errorf("kind = %q, want dsn", v.Kind)
	}
	if len(v.Failed) != 1 || !strings.Contains(v.Failed[joe], "5.1.1") || !strings.Contains(v.Failed[joe], "User unknown") {
		t.Fatalf("failed = %v, want joe with the DSN's status", v.Failed)
	}
	// The delivery's outcome, settled by the same rules, flags joe on the ticket (T6).
	outcomes := map[string]Outcome{}
	for email, reply := range v.Failed {
		outcomes[email] = Outcome{model.DeliveryFailed, reply}
	}
	s := Settle(7, 3, []model.DeliveryRecipient{rcpt("Joe@Customer.test", model.DeliverySent, true), rcpt(kim, model.DeliverySent, true)}, outcomes, time.Now())
	if s.State != model.DeliveryPartial || len(s.Failures) != 1 || s.Failures[0].Email != "Joe@Customer.test" {
		t.Errorf("settlement = %+v", s)
	}
}

// Original-Recipient counts too: the Final-Recipient may be the address after the
// customer's aliases.
func TestT6_DSNMatchesOnOriginalRecipient(t *testing.T) {
	v := Bounce([]string{joe}, dsnFor(model.BounceRecipient{Email: "j.smith@mail.customer.test", Original: "JOE@customer.test", Action: "failed", Status: "5.2.2"}))
	if len(v.Failed) != 1 || v.Failed[joe] == "" {
		t.Fatalf("failed = %v", v.Failed)
	}
}

func TestT6_DSNNamingAnotherRecipientChangesNothing(t *testing.T) {
	v := Bounce([]string{joe}, dsnFor(model.BounceRecipient{Email: "lee@customer.test", Original: "lee@customer.test", Action: "failed", Status: "5.1.1"}))
	if v.Kind != BounceDSN || len(v.Failed) != 0 {
		t.Fatalf("verdict = %+v, want a DSN that fails nobody", v)
	}
	if !strings.Contains(v.Why, "no recipient of this delivery") {
		t.Errorf("why = %q", v.Why)
	}
	// Nor does one that looks like a DSN and names nobody at all.
	if v := Bounce([]string{joe}, model.BounceReport{DSN: true, Text: "joe@customer.test failed"}); len(v.Failed) != 0 {
		t.Fatalf("a DSN without recipients failed %v", v.Failed)
	}
}

func TestT6_PlainTextBounceFromAStrangerChangesNothing(t *testing.T) {
	for _, rep := range []model.BounceReport{
		{Text: "no mailbox <joe@customer.test> here", Header: map[string]string{"From": "mallory@evil.test"}},
		{Text: "something failed"},
		// Old qmail's plain bounces look exactly like this, and so can anybody's mail.
		{Text: "Hi. This is the qmail-send program.\n<joe@customer.test>:\nSorry, no mailbox here by that name. (#5.1.1)",
			Header: map[string]string{"From": "MAILER-DAEMON@old.test"}},
	} {
		v := Bounce([]string{joe}, rep)
		if len(v.Failed) != 0 || v.Kind != BounceOther {
			t.Errorf("%q: verdict %+v, want other, failing nobody", rep.Text, v)
		}
		if !strings.Contains(v.Why, "not a delivery status notification") {
			t.Errorf("why = %q", v.Why)
		}
	}
}

func TestT6_AutoReplyChangesNothing(t *testing.T) {
	for _, h := range []map[string]string{
		{"Auto-Submitted": "auto-replied"},
		{"Auto-Submitted": "Auto-Generated"},
		{"X-Autoreply": "yes"},
		{"Precedence": "bulk"},
	} {
		v := Bounce([]string{joe}, model.BounceReport{Text: "I am out of the office until Monday. joe@customer.test", Header: h})
		if len(v.Failed) != 0 || v.Kind != BounceAutoReply {
			t.Errorf("%v: verdict %+v, want auto_reply, failing nobody", h, v)
		}
	}
	// Auto-Submitted: no is a person's mail.
	if v := Bounce([]string{joe}, model.BounceReport{Text: "x", Header: map[string]string{"Auto-Submitted": "no"}}); v.Kind != BounceOther || len(v.Failed) != 0 {
		t.Errorf("Auto-Submitted: no: %+v", v)
	}
}

// A DSN that says delayed counts (T6): it fails nobody, as the remote server is still
// trying, but records what it said on the recipient, so that agents see why a customer has
// not answered yet. Delivered, relayed, expanded or no action change nothing.
func TestT6_DelayedDSNRecordsTheDelayAndFailsNobody(t *testing.T) {
	v := Bounce([]string{joe}, dsnFor(model.BounceRecipient{Email: joe, Action: "delayed", Status: "4.4.1", Diagnostic: "smtp; 451 try later"}))
	if v.Kind != BounceDSN || len(v.Failed) != 0 || !strings.Contains(v.Delayed[joe], "4.4.1") || !strings.Contains(v.Delayed[joe], "delayed") {
		t.Errorf("delayed: verdict %+v", v)
	}
	for _, action := range []string{"delivered", "relayed", "expanded", ""} {
		v := Bounce([]string{joe}, dsnFor(model.BounceRecipient{Email: joe, Action: action, Status: "2.0.0"}))
		if v.Kind != BounceDSN || len(v.Failed) != 0 || len(v.Delayed) != 0 {
			t.Errorf("Action %q: verdict %+v", action, v)
		}
		if !strings.Contains(v.Why, joe) {
			t.Errorf("Action %q: why %q does not name the recipient", action, v.Why)
		}
	}
}

// What a DSN's sender wrote is recorded, cut short and without control characters.
func TestT6_DSNReplyIsBounded(t *testing.T) {
	v := Bounce([]string{joe}, dsnFor(model.BounceRecipient{Email: joe, Action: "failed", Status: "5.1.1", Diagnostic: strings.Repeat("é", 2000) + "\x1b[2J"}))
	r := v.Failed[joe]
	if r == "" || len(r) > 600 || !utf8.ValidString(r) || strings.ContainsAny(r, "\x1b\r\n") {
		t.Fatalf("reply (%d bytes) = %q", len(r), r)
	}
}
