package rules

import (
	"testing"
	"time"

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
