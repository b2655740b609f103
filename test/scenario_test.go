package test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/deskgate/deskgate/internal/mailtest"
)

const (
	jane  = "jane@customer.test"
	joe   = "joe@customer.test"
	kim   = "kim@customer.test"
	alice = "alice@example.com"
	bob   = "bob@example.com"
	carol = "carol@example.com"
	dana  = "dana@example.com"
)

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// lastTo is the newest message delivered to rcpt.
func lastTo(list []delivered, rcpt string) delivered {
	l := to(list, rcpt)
	if len(l) == 0 {
		return delivered{}
	}
	return l[len(l)-1]
}

// lastComment returns the newest comment of ticket id.
func (d *daemon) lastComment(id uint64) comment {
	d.t.Helper()
	cs := d.ticket(id).Comments
	return cs[len(cs)-1]
}

// TestScenario_AgentReplyVsReplyAll: an agent's Reply to its notification is an internal
// note (V3); Reply-all through the masked requester and CC is public and reaches them.
func TestScenario_AgentReplyVsReplyAll(t *testing.T) {
	d := startDaemon(t, options{})
	id := d.open(jane, []string{joe}, "Printer on fire", "It is burning.")
	d.must("", "followers", "add", fmt.Sprint(id), alice)
	d.must("Did you try turning it off?", "reply", fmt.Sprint(id), "--as", carol)
	note := to(d.outbox(), alice)
	if len(note) != 1 {
		t.Fatalf("follower alice got %d messages", len(note))
	}
	// H3: the follower's copy shows requester and CC masked, with their names.
	for _, a := range append(note[0].addresses("To"), note[0].addresses("Cc")...) {
		if !strings.HasPrefix(a, "support+") || !strings.Contains(a, "-p") {
			t.Fatalf("follower's copy shows %s unmasked", a)
		}
	}
	n := len(d.outbox())
	d.reply(note[0], alice, false, "Checking with the vendor.")
	if c := d.lastComment(id); c.Public || !strings.Contains(c.Body, "Checking with the vendor") {
		t.Fatalf("agent's Reply became %+v, want an internal note (V3)", c)
	}
	if got := rcpts(d.newSince(n)); contains(got, jane) || contains(got, joe) {
		t.Fatalf("internal note reached end users: %v", got)
	}
	n = len(d.outbox())
	d.reply(note[0], alice, true, "The vendor says: unplug it.")
	if c := d.lastComment(id); !c.Public {
		t.Fatalf("agent's Reply-all through masked addresses stayed internal")
	}
	got := d.newSince(n)
	if !contains(rcpts(got), jane) || !contains(rcpts(got), joe) || contains(rcpts(got), alice) {
		t.Fatalf("public reply went to %v, want jane and joe, not its author", rcpts(got))
	}
	for _, m := range to(got, jane) {
		if !strings.Contains(m.header.Get("From"), "Alice via Example Support") || mailtest.HasAddress(m.head, alice) {
			t.Fatalf("end user's copy: From %q", m.header.Get("From"))
		}
	}
	d.assertNoLeak()
}

// TestScenario_CCReplyVsReplyAll: V2.
func TestScenario_CCReplyVsReplyAll(t *testing.T) {
	d := startDaemon(t, options{})
	id := d.open(jane, []string{joe}, "Login broken", "Cannot log in.")
	d.must("Which browser?", "reply", fmt.Sprint(id), "--as", alice)
	note := to(d.outbox(), joe)[0]
	d.reply(note, joe, false, "Private aside to support.")
	if c := d.lastComment(id); c.Public {
		t.Fatal("CC's Reply became public")
	}
	n := len(d.outbox())
	d.reply(note, joe, true, "Firefox, for both of us.")
	if c := d.lastComment(id); !c.Public {
		t.Fatal("CC's Reply-all stayed internal")
	}
	// jane was a direct recipient of joe's reply-all (N3); nobody else is on the ticket.
	if got := rcpts(d.newSince(n)); contains(got, jane) || contains(got, joe) {
		t.Fatalf("reply-all re-sent to %v", got)
	}
	if !strings.Contains(d.lastComment(id).Body, "Firefox") {
		t.Fatal("comment body lost")
	}
}

// TestScenario_RequesterReplyDropsCCs: C7 under cc_removal: email, and not under expert_only.
func TestScenario_RequesterReplyDropsCCs(t *testing.T) {
	for _, policy := range []string{"email", "expert_only"} {
		t.Run(policy, func(t *testing.T) {
			d := startDaemon(t, options{extraYAML: "policy: {cc_removal: " + policy + "}"})
			id := d.open(jane, []string{joe, kim}, "Invoice wrong", "Please fix.")
			d.must("Fixed, see attached.", "reply", fmt.Sprint(id), "--as", alice)
			note := lastTo(d.outbox(), jane)
			d.reply(note, jane, false, "Thanks, only between us now.")
			ccs := d.ticket(id).CCs
			if policy == "email" && len(ccs) != 0 {
				t.Fatalf("cc_removal: email: CCs left %v", ccs)
			}
			if policy == "expert_only" && len(ccs) != 2 {
				t.Fatalf("cc_removal: expert_only: CCs %v", ccs)
			}
			var e struct {
				Trace []struct{ Rule, Step string }
			}
			out := d.must("", "explain", fmt.Sprint(d.lastComment(id).ID), "--json")
			json.Unmarshal([]byte(out), &e)
			found := false
			for _, s := range e.Trace {
				found = found || (s.Rule == "C7" && s.Step == "CC removed")
			}
			if found != (policy == "email") {
				t.Fatalf("explain trace C7 removed=%v under %s: %s", found, policy, out)
			}
		})
	}
}

func TestScenario_AgentCCBecomesFollower(t *testing.T) {
	d := startDaemon(t, options{})
	id := d.open(jane, []string{dana, joe}, "VPN down", "No VPN.")
	tk := d.ticket(id)
	if len(tk.Followers) != 1 || tk.Followers[0].Email != dana || len(tk.CCs) != 1 {
		t.Fatalf("agent CC: followers %v ccs %v", tk.Followers, tk.CCs)
	}
	d.must("Restarting the gateway.", "reply", fmt.Sprint(id), "--as", alice)
	for _, m := range to(d.outbox(), joe) {
		if mailtest.HasAddress(m.head, dana) {
			t.Fatal("follower dana shown to CC joe")
		}
	}
	if len(to(d.outbox(), dana)) != 1 {
		t.Fatal("follower dana not told of the reply")
	}
	d.assertNoLeak()
}

func TestScenario_LightAgentCannotAddCCs(t *testing.T) {
	d := startDaemon(t, options{})
	id := d.open(jane, nil, "Question", "Hi.")
	msg := mail(map[string]string{"From": bob, "To": jane, "Cc": kim, "Subject": "x", "Message-ID": "<bob-1@example.com>"}, "adding kim\n")
	if err := sendSMTP(d.smtpAddr, bob, []string{d.ticket(id).ReplyAddress}, msg); err != nil {
		t.Fatal(err)
	}
	tk := d.ticket(id)
	if len(tk.CCs) != 0 || tk.Comments[1].Public {
		t.Fatalf("light agent: ccs %v public %v", tk.CCs, tk.Comments[1].Public)
	}
	out := d.must("", "explain", fmt.Sprint(tk.Comments[1].ID))
	if !strings.Contains(out, "light agent cannot add CCs") {
		t.Fatalf("explain does not say why:\n%s", out)
	}
	_, errOut, code := d.cliIn("public please", "reply", fmt.Sprint(id), "--as", bob)
	if code == 0 || !strings.Contains(errOut, "422") {
		t.Fatalf("light agent's public reply: %d %s", code, errOut)
	}
}

func TestScenario_BlocklistedCC(t *testing.T) {
	d := startDaemon(t, options{extraYAML: `policy: {cc_blocklist: ["*@noreply.test"]}`})
	id := d.open(jane, []string{"robot@noreply.test", joe}, "Blocked", "x")
	tk := d.ticket(id)
	if len(tk.CCs) != 1 || tk.CCs[0].Email != joe {
		t.Fatalf("CCs %v", tk.CCs)
	}
	_, errOut, code := d.cli("cc", "add", fmt.Sprint(id), "other@noreply.test")
	if code == 0 || !strings.Contains(errOut, "cc_blocklist") || !strings.Contains(errOut, "422") {
		t.Fatalf("API add of a blocklisted CC: %d %s", code, errOut)
	}
	_, errOut, code = d.cli("followers", "add", fmt.Sprint(id), kim)
	if code == 0 || !strings.Contains(errOut, "422") {
		t.Fatalf("end user as follower: %d %s", code, errOut)
	}
}

// TestScenario_ThirdPartyAfterForward: X1.
func TestScenario_ThirdPartyAfterForward(t *testing.T) {
	d := startDaemon(t, options{})
	id := d.open(jane, nil, "Shipping", "Where is my parcel?")
	d.must("", "followers", "add", fmt.Sprint(id), carol)
	d.must("Asking the carrier.", "reply", fmt.Sprint(id), "--as", alice)
	// jane forwards alice's notification to the carrier, who answers with Reply-all.
	note := lastTo(d.outbox(), jane)
	n := len(d.outbox())
	d.reply(note, "desk@carrier.test", true, "Parcel is in Leeds.")
	c := d.lastComment(id)
	if c.Public || !c.ThirdParty {
		t.Fatalf("third party's mail: %+v", c)
	}
	got := rcpts(d.newSince(n))
	if contains(got, jane) || !contains(got, carol) {
		t.Fatalf("third party's note went to %v, want follower only", got)
	}
	if len(d.ticket(id).CCs) != 0 {
		t.Fatal("third party became a CC")
	}
	if out := d.must("", "tickets", "show", fmt.Sprint(id)); !strings.Contains(out, "third party") {
		t.Fatalf("tickets show hides the flag:\n%s", out)
	}
	// An expert makes it public: from then on it is part of the conversation.
	code, body := d.api("PATCH", fmt.Sprintf("/api/v1/tickets/%d/comments/%d", id, c.ID), strings.NewReader(`{"public": true}`), true)
	if code != 200 || !d.lastComment(id).Public {
		t.Fatalf("make public: %d %s", code, body)
	}
}

// TestScenario_ReplyToOldNotification: N4 under both reply_audience values.
func TestScenario_ReplyToOldNotification(t *testing.T) {
	for _, audience := range []string{"notification", "ticket"} {
		t.Run(audience, func(t *testing.T) {
			d := startDaemon(t, options{extraYAML: "policy: {reply_audience: " + audience + ", cc_removal: expert_only}"})
			id := d.open(jane, []string{joe}, "Old thread", "x")
			d.must("First answer.", "reply", fmt.Sprint(id), "--as", alice)
			old := lastTo(d.outbox(), jane)
			d.must("", "cc", "add", fmt.Sprint(id), kim)
			n := len(d.outbox())
			d.reply(old, jane, false, "Answering the old one.")
			got := rcpts(d.newSince(n))
			if audience == "notification" && contains(got, kim) {
				t.Fatalf("kim, added after the notification, got the reply: %v", got)
			}
			if audience == "ticket" && !contains(got, kim) {
				t.Fatalf("kim, a current CC, did not get the reply: %v", got)
			}
			if !contains(got, joe) {
				t.Fatalf("joe, who had the notification, did not get the reply: %v", got)
			}
		})
	}
}

func TestScenario_AssignAndSolveNotify(t *testing.T) {
	d := startDaemon(t, options{extraYAML: "notifications: {assigned: requester, solved: requester_and_ccs}"})
	id := d.open(jane, []string{joe}, "Broken chair", "x")
	n := len(d.outbox())
	d.must("", "assign", fmt.Sprint(id), alice)
	got := d.newSince(n)
	if r := rcpts(got); !contains(r, jane) || contains(r, joe) || !contains(r, alice) {
		t.Fatalf("assigned notified %v, want jane and alice", r)
	}
	for _, m := range got {
		if m.header.Get("Auto-Submitted") != "auto-generated" {
			t.Fatalf("assignment notice to %s not marked automatic", m.rcpt)
		}
	}
	n = len(d.outbox())
	d.must("", "solve", fmt.Sprint(id))
	if r := rcpts(d.newSince(n)); !contains(r, jane) || !contains(r, joe) {
		t.Fatalf("solved notified %v", r)
	}
	if st := d.ticket(id).Status; st != "solved" {
		t.Fatalf("status %q", st)
	}
	var shown struct {
		Events []struct {
			ID       uint64 `json:"id"`
			Action   string `json:"action"`
			Notified []any  `json:"notified"`
		} `json:"events"`
	}
	json.Unmarshal([]byte(d.must("", "tickets", "show", fmt.Sprint(id), "--json")), &shown)
	if len(shown.Events) != 2 || shown.Events[0].Action != "assign" || shown.Events[1].Action != "status" || len(shown.Events[0].Notified) != 2 {
		t.Fatalf("events in tickets show: %+v", shown.Events)
	}
	if out := d.must("", "explain", fmt.Sprint(shown.Events[0].ID)); !strings.Contains(out, "N5") || !strings.Contains(out, "Event") {
		t.Fatalf("explain of the assignment:\n%s", out)
	}
	// A reply reopens it (T4).
	d.reply(lastTo(d.outbox(), jane), jane, false, "Still broken.")
	if st := d.ticket(id).Status; st != "open" {
		t.Fatalf("reply to a solved ticket left it %q", st)
	}
	out := d.must("", "explain", fmt.Sprint(d.lastComment(id).ID))
	if !strings.Contains(out, "T4") {
		t.Fatalf("explain lacks T4:\n%s", out)
	}
}

func TestScenario_LateCCGetsHistory(t *testing.T) {
	d := startDaemon(t, options{})
	id := d.open(jane, nil, "Roof leak", "Water everywhere.")
	d.must("Sending someone.", "reply", fmt.Sprint(id), "--as", alice)
	d.must("Secret: the roofer is late.", "reply", fmt.Sprint(id), "--as", alice, "--internal")
	d.must("", "cc", "add", fmt.Sprint(id), kim)
	d.must("The roofer arrives at 3.", "reply", fmt.Sprint(id), "--as", alice)
	k := to(d.outbox(), kim)
	if len(k) != 1 {
		t.Fatalf("kim got %d messages", len(k))
	}
	body := k[0].body
	if !strings.Contains(body, "Water everywhere.") || !strings.Contains(body, "Sending someone.") || strings.Contains(body, "roofer is late") {
		t.Fatalf("late CC's history:\n%s", body)
	}
	// V5: a comment made internal leaves the history of later CCs.
	first := d.ticket(id).Comments[1].ID
	d.must("", "comments", "private", fmt.Sprint(id), fmt.Sprint(first))
	d.must("", "cc", "add", fmt.Sprint(id), "lee@customer.test")
	d.must("Done.", "reply", fmt.Sprint(id), "--as", alice)
	l := to(d.outbox(), "lee@customer.test")
	if len(l) != 1 || strings.Contains(l[0].body, "Sending someone.") || !strings.Contains(l[0].body, "Water everywhere.") {
		t.Fatalf("history after V5:\n%v", l)
	}
}

// TestScenario_FollowerReplyAllThroughMaskedAddresses: F3, F4, H3.
func TestScenario_FollowerReplyAllThroughMaskedAddresses(t *testing.T) {
	d := startDaemon(t, options{})
	id := d.open(jane, []string{joe}, "Slow laptop", "It is slow.")
	d.must("", "followers", "add", fmt.Sprint(id), carol)
	msg := mail(map[string]string{"From": jane, "To": "support@example.com", "Subject": "more", "Message-ID": "<more@customer.test>"}, "Really slow.\n")
	if err := sendSMTP(d.smtpAddr, jane, []string{d.ticket(id).ReplyAddress}, msg); err != nil {
		t.Fatal(err)
	}
	note := to(d.outbox(), carol)
	if len(note) != 1 {
		t.Fatalf("follower got %d", len(note))
	}
	n := len(d.outbox())
	d.reply(note[0], carol, true, "Reinstalling fixes it.")
	c := d.lastComment(id)
	if !c.Public {
		t.Fatal("follower's Reply-all through masked addresses stayed internal")
	}
	got := d.newSince(n)
	if r := rcpts(got); !contains(r, jane) || !contains(r, joe) || contains(r, carol) {
		t.Fatalf("follower's reply-all went to %v", r)
	}
	for _, m := range got {
		if mailtest.HasAddress(m.head, carol) {
			t.Fatalf("follower's address in %s's copy", m.rcpt)
		}
	}
	// Mail to a masked address is never relayed as is: nothing went to a masked address.
	for _, m := range d.outbox() {
		if strings.Contains(m.rcpt, "support+") {
			t.Fatalf("a masked address was relayed to: %s", m.rcpt)
		}
	}
	d.assertNoLeak()
}

func TestScenario_AttachmentsFollowN6(t *testing.T) {
	for _, ccAttach := range []bool{true, false} {
		t.Run(fmt.Sprint(ccAttach), func(t *testing.T) {
			d := startDaemon(t, options{extraYAML: fmt.Sprintf("policy: {cc_attachments: %v}", ccAttach)})
			id := d.open(jane, []string{joe}, "Scan", "see next")
			d.must("", "followers", "add", fmt.Sprint(id), carol)
			raw := "From: " + jane + "\r\nTo: support@example.com\r\nSubject: scan\r\nMessage-ID: <scan@customer.test>\r\nMIME-Version: 1.0\r\n" +
				"Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nHere it is.\r\n--B\r\n" +
				"Content-Type: application/pdf; name=scan.pdf\r\nContent-Disposition: attachment; filename=scan.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--B--\r\n"
			if err := sendSMTP(d.smtpAddr, jane, []string{d.ticket(id).ReplyAddress}, []byte(raw)); err != nil {
				t.Fatal(err)
			}
			joeCopies := to(d.outbox(), joe)
			carolCopies := to(d.outbox(), carol)
			last := func(l []delivered) delivered { return l[len(l)-1] }
			if got := len(last(joeCopies).files) == 1; got != ccAttach {
				t.Fatalf("CC got attachment=%v with cc_attachments=%v", got, ccAttach)
			}
			if len(last(carolCopies).files) != 1 {
				t.Fatal("follower lost the attachment")
			}
		})
	}
}

func TestAPIErrorsAndExplainByMessageID(t *testing.T) {
	d := startDaemon(t, options{})
	id := d.open(jane, nil, "API", "x")
	cases := []struct {
		method, path, body string
		code               int
	}{
		{"POST", "/api/v1/tickets/%d/ccs", `{"email": "not an address"}`, 400},
		{"POST", "/api/v1/tickets/%d/ccs", `{"email": "joe@customer.test", "bogus": 1}`, 400},
		{"POST", "/api/v1/tickets/999/ccs", `{"email": "joe@customer.test"}`, 404},
		{"POST", "/api/v1/tickets/%d/ccs", `{"email": "jane@customer.test"}`, 409},
		{"POST", "/api/v1/tickets/%d/ccs", `{"email": "support@example.com"}`, 422},
		{"DELETE", "/api/v1/tickets/%d/ccs/nobody@customer.test", ``, 404},
		{"POST", "/api/v1/tickets/%d/comments", `{"author": "jane@customer.test", "body": "hi", "public": true}`, 422},
		{"POST", "/api/v1/tickets/%d/comments", `{"author": "alice@example.com", "body": "hi"}`, 400},
		{"PATCH", "/api/v1/tickets/%d", `{"status": "closed"}`, 400},
		{"PATCH", "/api/v1/tickets/%d", `{"assignee": "bob@example.com"}`, 422},
		{"PATCH", "/api/v1/tickets/%d/comments/424242", `{"public": false}`, 404},
		{"POST", "/api/v1/tickets/%d/ccs", `{"email": "joe@customer.test"}`, 201},
		{"POST", "/api/v1/tickets/%d/ccs", `{"email": "joe@customer.test"}`, 409},
	}
	for _, c := range cases {
		path := c.path
		if strings.Contains(path, "%d") {
			path = fmt.Sprintf(path, id)
		}
		code, body := d.api(c.method, path, strings.NewReader(c.body), true)
		if code != c.code || !strings.Contains(string(body), "{") {
			t.Errorf("%s %s %s: %d %s, want %d", c.method, path, c.body, code, body, c.code)
		}
	}
	if code, _ := d.api("POST", fmt.Sprintf("/api/v1/tickets/%d/ccs", id), strings.NewReader(`{"email": "x@y.test"}`), false); code != 401 {
		t.Errorf("no token: %d", code)
	}
	d.must("hello", "reply", fmt.Sprint(id), "--as", alice)
	m := to(d.outbox(), jane)
	sent := m[len(m)-1].header.Get("Message-Id")
	out := d.must("", "explain", sent)
	if !strings.Contains(out, "V4") || !strings.Contains(out, "N1") {
		t.Fatalf("explain by the Message-ID of a sent notification:\n%s", out)
	}
	if out := d.must("", "queue", "list"); !strings.Contains(out, "sent") || !strings.Contains(out, jane) {
		t.Fatalf("queue list:\n%s", out)
	}
}
