package test

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/deskgate/deskgate/internal/mailtest"
)

// sendAs sends a mail over SMTP as an agent's own mail client would write it: her client's
// display name for her and a Message-ID that names her machine.
func (d *daemon) sendAs(from, displayName, messageID string, to, cc []string, env []string, subject, inReplyTo, references, body string) {
	d.t.Helper()
	h := map[string]string{"From": fmt.Sprintf("%q <%s>", displayName, from), "To": strings.Join(to, ", "),
		"Subject": subject, "Message-ID": messageID}
	if len(cc) > 0 {
		h["Cc"] = strings.Join(cc, ", ")
	}
	if inReplyTo != "" {
		h["In-Reply-To"], h["References"] = inReplyTo, references
	}
	if err := sendSMTP(d.smtpAddr, from, env, mail(h, body+"\n")); err != nil {
		d.t.Fatalf("mail from %s: %v", from, err)
	}
}

// assertNothingOf checks that no header of any copy delivered to someone other than who
// names who's address, the machine her mail client names in its Message-IDs, or the
// display name it gives her.
func assertNothingOf(t *testing.T, list []delivered, who string, traces ...string) int {
	t.Helper()
	checked := 0
	for _, m := range list {
		if m.rcpt == who {
			continue
		}
		checked++
		if mailtest.HasAddress(m.head, who) {
			t.Errorf("%s's address is in a header of %s's copy:\n%s", who, m.rcpt, m.head)
		}
		for _, s := range traces {
			if strings.Contains(m.head, strings.ToLower(s)) {
				t.Errorf("%q of %s's own mail is in a header of %s's copy:\n%s", s, who, m.rcpt, m.head)
			}
		}
	}
	return checked
}

// TestH4_FollowerReplyAllKeepsHerMessageIDFromCustomers: a follower answers her masked copy
// with Reply-all; her mail client's Message-ID (her name and machine) must not reach the
// requester's or the CC's copy by In-Reply-To or References, nor may her client's display
// name. The customers' copies still thread: they reference the requester's first mail.
func TestH4_FollowerReplyAllKeepsHerMessageIDFromCustomers(t *testing.T) {
	d := startDaemon(t, options{})
	id := d.open(jane, []string{joe}, "Printer on fire", "It is burning.")
	root := d.ticket(id).Comments[0].MessageID
	d.must("", "followers", "add", fmt.Sprint(id), carol)
	d.must("Did you try turning it off?", "reply", fmt.Sprint(id), "--as", alice)
	note := lastTo(d.outbox(), carol)
	if note.rcpt == "" {
		t.Fatal("the follower got no copy of the public reply")
	}
	n := len(d.outbox())
	secretID := "<1733.follower-secret@carol-laptop.example.com>"
	masked := append(note.addresses("To"), note.addresses("Cc")...)
	d.sendAs(carol, "Carol at Home", secretID, note.addresses("Reply-To"), masked,
		append(note.addresses("Reply-To"), masked...), "Re: "+note.header.Get("Subject"),
		note.header.Get("Message-Id"), note.header.Get("References")+" "+note.header.Get("Message-Id"),
		"The vendor will send a technician.")
	if c := d.lastComment(id); !c.Public || c.Author != carol {
		t.Fatalf("the follower's Reply-all through masked addresses became %+v, want a public comment by her (F4, V3)", c)
	}
	if show := d.must("", "tickets", "show", fmt.Sprint(id)); strings.Contains(show, "Carol at Home") || !strings.Contains(show, "Carol <carol@example.com> via email") {
		t.Errorf("tickets show should name the follower as the config does:\n%s", show)
	}
	got := d.newSince(n)
	if len(to(got, jane)) != 1 || len(to(got, joe)) != 1 {
		t.Fatalf("the follower's public reply went to %v, want jane and joe once each", rcpts(got))
	}
	if checked := assertNothingOf(t, d.outbox(), carol, "carol-laptop", "follower-secret", "Carol at Home"); checked < 4 {
		t.Fatalf("only %d copies checked", checked)
	}
	for _, m := range append(to(got, jane), to(got, joe)...) {
		if !strings.Contains(m.header.Get("References"), root) {
			t.Errorf("%s's copy does not thread on the requester's first mail %s: References %q", m.rcpt, root, m.header.Get("References"))
		}
		if !strings.Contains(m.header.Get("From"), "Carol via Example Support") {
			t.Errorf("%s's copy: From %q, want the follower's configured name", m.rcpt, m.header.Get("From"))
		}
	}
	d.assertNoLeak()
}

// TestH4_AgentOpenedTicketThreadsWithoutHerMessageID: an agent opens a ticket by mail for a
// customer she names in Cc. The customer's copies must not name the agent's Message-ID, and
// still share one thread (the ticket's anchor); the agent's own copies mask the customer (H3).
func TestH4_AgentOpenedTicketThreadsWithoutHerMessageID(t *testing.T) {
	d := startDaemon(t, options{extraYAML: "policy: {agent_cc_becomes_follower: false}"})
	d.sendAs(alice, "Alice Personal", "<42.agent-secret@alice-laptop.example.com>", []string{"support@example.com"}, []string{kim},
		[]string{"support@example.com"}, "Your new account", "", "", "I opened this for you.")
	id := d.tickets()[0].ID
	d.must("Anything else?", "reply", fmt.Sprint(id), "--as", dana)
	d.must("", "solve", fmt.Sprint(id))
	all := d.outbox()
	kims := to(all, kim)
	if len(kims) < 2 {
		t.Fatalf("kim got %d copies, want the reply and the solve", len(kims))
	}
	anchor := ""
	for _, m := range kims {
		refs := m.header.Get("References")
		if refs == "" {
			t.Fatalf("kim's copy has no References: nothing threads it:\n%s", m.head)
		}
		if anchor == "" {
			anchor = refs
		} else if !strings.Contains(refs, strings.Fields(anchor)[0]) {
			t.Errorf("kim's copies do not share one thread: %q and %q", anchor, refs)
		}
	}
	assertNothingOf(t, all, alice, "alice-laptop", "agent-secret", "Alice Personal")
	for _, m := range to(all, alice) {
		for _, a := range append(m.addresses("To"), m.addresses("Cc")...) {
			if a == kim {
				t.Errorf("the agent requester's copy shows the customer's real address, so her Reply-all would reach him directly:\n%s", m.head)
			}
		}
	}
	// A reply from the customer to any of his copies still threads into the ticket.
	n := len(d.tickets())
	d.reply(kims[0], kim, true, "Thanks!")
	if len(d.tickets()) != n || !strings.Contains(d.lastComment(id).Body, "Thanks!") {
		t.Fatal("the customer's reply did not thread into the ticket")
	}

	// Alice leaves the team: she is no longer in agents. What she mailed as an agent stays
	// hers: no later copy names her Message-ID either.
	raw, _ := os.ReadFile(d.configPath)
	cfg := strings.Replace(string(raw), "  - {email: alice@example.com, name: Alice, role: agent}\n", "", 1)
	if cfg == string(raw) {
		t.Fatal("the test config does not list alice as it did")
	}
	os.WriteFile(d.configPath, []byte(cfg), 0o600)
	d.must("", "reload")
	n = len(d.outbox())
	d.must("One more thing.", "reply", fmt.Sprint(id), "--as", dana)
	later := to(d.newSince(n), kim)
	if len(later) != 1 {
		t.Fatalf("kim got %d copies of the reply after alice left", len(later))
	}
	if strings.Contains(later[0].head, "alice-laptop") || strings.Contains(later[0].head, "agent-secret") {
		t.Errorf("after alice left agents, kim's copy names her Message-ID:\n%s", later[0].head)
	}
}

// TestC6_ExpertAddsAgentAsCC: `cc add` of an agent makes her a hidden follower under
// policy.agent_cc_becomes_follower (C3 on every path), named as the config names her; with the
// policy off she is a CC who gets the agents' copy with masked addresses (H3).
func TestC6_ExpertAddsAgentAsCC(t *testing.T) {
	t.Run("becomes a follower", func(t *testing.T) {
		d := startDaemon(t, options{})
		id := d.open(jane, []string{joe}, "Invoice", "Wrong amount.")
		out := d.must("", "cc", "add", fmt.Sprint(id), "Alice@Example.com")
		if !strings.Contains(out, "hidden follower") {
			t.Errorf("cc add told the expert %q; it should say that the agent became a hidden follower", out)
		}
		tk := d.ticket(id)
		for _, cc := range tk.CCs {
			if strings.EqualFold(cc.Email, alice) {
				t.Fatalf("alice became a CC (%s); want a follower", out)
			}
		}
		var follows bool
		for _, f := range tk.Followers {
			follows = follows || strings.EqualFold(f.Email, alice)
		}
		if !follows {
			t.Fatalf("alice is not a follower: %+v", tk.Followers)
		}
		var withEvents struct {
			Events []struct {
				ID uint64 `json:"id"`
			} `json:"events"`
		}
		d.getJSON(fmt.Sprintf("/api/v1/tickets/%d", id), &withEvents)
		if len(withEvents.Events) == 0 {
			t.Fatal("the ticket records no event for the expert's action")
		}
		show := d.must("", "explain", fmt.Sprint(withEvents.Events[len(withEvents.Events)-1].ID))
		if !strings.Contains(show, "C3") {
			t.Errorf("explain does not say C3 made her a follower:\n%s", show)
		}
		if ts := d.must("", "tickets", "show", fmt.Sprint(id)); !strings.Contains(ts, "made a hidden follower") {
			t.Errorf("tickets show records a plain cc_add:\n%s", ts)
		}
		d.must("Credit note sent.", "reply", fmt.Sprint(id), "--as", dana)
		mine := to(d.outbox(), alice)
		if len(mine) == 0 {
			t.Fatal("the follower got no copy of the reply")
		}
		assertNothingOf(t, d.outbox(), alice)
	})
	t.Run("policy off: agents' copy", func(t *testing.T) {
		d := startDaemon(t, options{extraYAML: "policy: {agent_cc_becomes_follower: false}"})
		id := d.open(jane, []string{joe}, "Invoice", "Wrong amount.")
		body := strings.NewReader(`{"email": "alice@example.com", "name": "Alice's laptop"}`)
		if code, resp := d.api("POST", fmt.Sprintf("/api/v1/tickets/%d/ccs", id), body, true); code/100 != 2 {
			t.Fatalf("API cc add: %d %s", code, resp)
		}
		var named bool
		for _, cc := range d.ticket(id).CCs {
			if strings.EqualFold(cc.Email, alice) {
				named = cc.Name == "Alice"
			}
		}
		if !named {
			t.Fatalf("alice is not a CC named as the config names her: %+v", d.ticket(id).CCs)
		}
		d.must("Credit note sent.", "reply", fmt.Sprint(id), "--as", dana)
		mine := to(d.outbox(), alice)
		if len(mine) == 0 {
			t.Fatal("the agent CC got no copy")
		}
		for _, m := range mine {
			for _, a := range append(m.addresses("To"), m.addresses("Cc")...) {
				if a == jane || a == joe {
					t.Fatalf("the agent CC's copy shows %s's real address:\n%s", a, m.head)
				}
			}
		}
		// Her Reply-all comes back to deskgate and becomes a public comment (V3).
		n := len(d.outbox())
		d.reply(mine[len(mine)-1], alice, true, "Also refunded the fee.")
		if c := d.lastComment(id); !c.Public {
			t.Fatalf("the agent CC's Reply-all through masked addresses stayed internal")
		}
		if got := rcpts(d.newSince(n)); !contains(got, jane) || !contains(got, joe) {
			t.Fatalf("her public reply went to %v", got)
		}
		d.assertNoLeak()
	})
}
