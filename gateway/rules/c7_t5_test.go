package rules

import (
	"testing"

	"github.com/deskgate/deskgate/gateway/model"
)

// C7 removes CCs on a requester's plain Reply too: Reply leaves every CC out of To/Cc, which
// under cc_removal: email means "only between us now", as Zendesk documents it. Automatic mail
// (an out-of-office answering the same notification) removes and adds nobody (T5).
func TestC7_T5_PlainReplyRemovesButAutoReplyNeverDoes(t *testing.T) {
	tk := ticket(model.StatusOpen)
	tk.CCs = append(tk.CCs, model.Person{Email: kim})
	ownOnly := []Addr{{Email: "support+5-tok@example.com", Own: true}}

	plain := mailFrom(jane, ownOnly, nil)
	plain.Answered = &Answered{CCs: []string{joe, kim}}
	d := DecideMail(tk, plain, env())
	if IsCC(d.Ticket, joe) || IsCC(d.Ticket, kim) || !traceHas(d.Trace, "C7", "CC removed") {
		t.Fatalf("the requester's plain Reply kept CCs %v: %v", d.Ticket.CCs, d.Trace)
	}

	for _, why := range []string{"Auto-Submitted: auto-replied", "Precedence: bulk", "empty envelope sender"} {
		auto := mailFrom(jane, ownOnly, addrs("lee@customer.test"))
		auto.Answered = &Answered{CCs: []string{joe, kim}}
		auto.Automatic = why
		d := DecideMail(tk, auto, env())
		if len(d.Changes) != 0 || !IsCC(d.Ticket, joe) || !IsCC(d.Ticket, kim) || IsCC(d.Ticket, "lee@customer.test") {
			t.Fatalf("%s: automatic mail changed participants: %+v", why, d.Changes)
		}
		if traceHas(d.Trace, "C7", "") || traceHas(d.Trace, "C1", "CC added") {
			t.Fatalf("%s: automatic mail has C1/C7 steps: %v", why, d.Trace)
		}
	}
}
