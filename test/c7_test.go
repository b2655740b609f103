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

// TestC7_SecondCcFieldIsRead: a reply whose client wrote its CCs in two Cc: fields names
// them all, so C7 removes nobody it names (reading the first field only removed kim).
func TestC7_SecondCcFieldIsRead(t *testing.T) {
	d := startDaemon(t, options{extraYAML: "policy: {cc_removal: email}"})
	id := d.open(jane, []string{joe, kim}, "Invoice wrong", "Please fix.")
	d.must("Fixed.", "reply", fmt.Sprint(id), "--as", alice)
	note := lastTo(d.outbox(), jane)
	raw := fmt.Sprintf("From: %s\r\nTo: %s\r\nCc: %s\r\nCc: %s\r\nSubject: Re: %s\r\nMessage-ID: <two-cc-%d@customer.test>\r\nIn-Reply-To: %s\r\n\r\nThanks to both of you.\r\n",
		jane, note.header.Get("Reply-To"), joe, kim, note.header.Get("Subject"), time.Now().UnixNano(), note.header.Get("Message-Id"))
	if err := sendSMTP(d.smtpAddr, jane, note.addresses("Reply-To"), []byte(raw)); err != nil {
		t.Fatal(err)
	}
	var emails []string
	for _, cc := range d.ticket(id).CCs {
		emails = append(emails, cc.Email)
	}
	if len(emails) != 2 || !contains(emails, joe) || !contains(emails, kim) {
		t.Fatalf("after a reply naming joe and kim in two Cc fields the CCs are %v, want both", emails)
	}
	if c := d.lastComment(id); !c.Public {
		t.Fatalf("the requester's reply is not public: %+v", c)
	}
}
