package test

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestC7_T5_OutOfOfficeChangesNobody: under cc_removal: email the requester's plain Reply
// removes the CCs (TestScenario_RequesterReplyDropsCCs), but her out-of-office, answering the
// same notification from the same address with nobody in Cc but a new colleague, removes and
// adds nobody (T5).
func TestC7_T5_OutOfOfficeChangesNobody(t *testing.T) {
	d := startDaemon(t, options{extraYAML: "policy: {cc_removal: email}"})
	id := d.open(jane, []string{joe, kim}, "Invoice wrong", "Please fix.")
	d.must("Fixed.", "reply", fmt.Sprint(id), "--as", alice)
	note := lastTo(d.outbox(), jane)
	h := map[string]string{"From": jane, "To": note.header.Get("Reply-To"), "Cc": "lee@customer.test",
		"Subject": "Out of office: " + note.header.Get("Subject"), "Auto-Submitted": "auto-replied",
		"Message-ID": fmt.Sprintf("<ooo-%d@customer.test>", time.Now().UnixNano()), "In-Reply-To": note.header.Get("Message-Id")}
	if err := sendSMTP(d.smtpAddr, jane, note.addresses("Reply-To"), mail(h, "I am away until Monday.\n")); err != nil {
		t.Fatal(err)
	}
	tk := d.ticket(id)
	c := tk.Comments[len(tk.Comments)-1]
	if !strings.Contains(c.Body, "away until Monday") || c.Public {
		t.Fatalf("the out-of-office was stored as %+v, want an internal note (T5)", c)
	}
	var emails []string
	for _, cc := range tk.CCs {
		emails = append(emails, cc.Email)
	}
	if len(emails) != 2 || !contains(emails, joe) || !contains(emails, kim) {
		t.Fatalf("the out-of-office changed the CCs to %v, want joe and kim", emails)
	}
}
