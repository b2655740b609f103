package rules

import (
	"strings"

	"github.com/deskgate/deskgate/gateway/model"
)

type noteFacts struct {
	author      string
	public      bool
	endUsersOK  bool // false for automatic mail (T5)
	ccs         []model.Person
	direct      func(email string) bool
	attachments bool
	automatic   bool
}

// notifyComment decides who is sent a comment: N1/N2 audiences, F2 followers, C4
// history for new CCs, N3 direct recipients, N6 attachments, never the author.
func notifyComment(d *Decision, t *model.Ticket, env Env, f noteFacts) {
	if f.direct == nil {
		f.direct = func(string) bool { return false }
	}
	skip := func(email string, as model.As) bool {
		if SameAddress(email, f.author) {
			d.trace("N1", "not notified", email+" ("+string(as)+") wrote it")
			return true
		}
		if f.direct(email) {
			d.trace("N3", "not notified", email+" ("+string(as)+") was a direct recipient of the mail and has it already")
			return true
		}
		return false
	}

	if f.public && f.endUsersOK {
		var endUsers []Recipient
		if !skip(t.Requester.Email, model.AsRequester) {
			endUsers = append(endUsers, Recipient{Email: t.Requester.Email, Name: t.Requester.Name, As: model.AsRequester, Visible: true})
		}
		for _, cc := range f.ccs {
			if !skip(cc.Email, model.AsCC) {
				endUsers = append(endUsers, Recipient{Email: cc.Email, Name: cc.Name, As: model.AsCC, Visible: true})
			}
		}
		addEndUserCopies(d, t, env, model.KindComment, endUsers, f.attachments, f.automatic, "N1")
	} else if f.public {
		d.trace("T5", "not notified", "requester and CCs: automatic mail sends nothing to end users")
	} else {
		d.trace("N2", "not notified", "requester and CCs: an internal note goes to followers and the assignee only")
	}

	rule := "N1"
	if !f.public {
		rule = "N2"
	}
	// Agents share one copy: its headers mask every participant (F3, H3), so it shows
	// none of its recipients, who are told apart by the envelope alone.
	notified := map[string]bool{}
	var agents []Recipient
	for _, fl := range t.Followers {
		if skip(fl.Email, model.AsFollower) || notified[lower(fl.Email)] {
			continue
		}
		notified[lower(fl.Email)] = true
		agents = append(agents, Recipient{Email: fl.Email, Name: fl.Name, As: model.AsFollower})
		d.trace("F2", "notified (hidden)", fl.Email+" as follower, on the agents' copy with masked addresses (F3)")
	}
	if t.Assignee != "" && !notified[lower(t.Assignee)] && !skip(t.Assignee, model.AsAssignee) {
		agents = append(agents, Recipient{Email: t.Assignee, Name: env.AgentNames[lower(t.Assignee)], As: model.AsAssignee})
		d.trace(rule, "notified (hidden)", t.Assignee+" as assignee, on the agents' copy with masked addresses (H3)")
	}
	if len(agents) > 0 {
		d.Notifications = append(d.Notifications, Notification{Kind: model.KindComment, Copy: model.CopyAgent,
			Recipients: agents, Attachments: f.attachments, Automatic: f.automatic})
	}
}

// addEndUserCopies groups the requester and CCs into copies: the plain one, one with the
// history for CCs who never had it (C4), and one without attachments for CCs when
// policy.cc_attachments is false (N6). An agent among them (a CC under C6, or the agent who
// opened the ticket) gets the agents' copy (H3), which masks every participant, so that her
// Reply-all comes back to deskgate instead of reaching customers from her own address.
func addEndUserCopies(d *Decision, t *model.Ticket, env Env, kind model.NotificationKind, endUsers []Recipient, attachments, automatic bool, rule string) {
	type key struct {
		history, attach bool
		copy            model.Copy
		viewer          string
	}
	groups := map[key][]Recipient{}
	var order []key
	for _, r := range endUsers {
		k := key{attach: attachments, copy: model.CopyEndUser}
		if _, ok := StatusViewer(t, r.Email, env); ok {
			// Her link opens her view of the ticket: it must reach nobody else (S1).
			k.viewer = r.Email
			d.trace("S1", "own copy", r.Email+" gets a copy of her own, with her request status view link")
		}
		if env.IsAgent(r.Email) {
			k.copy = model.CopyAgent
			d.trace("H3", "agents' copy", r.Email+" ("+string(r.As)+") is "+article(roleWord(env.AgentRole(r.Email)))+": the copy shows the requester and CCs by masked addresses")
		}
		if r.As == model.AsCC {
			if !t.Welcomed[lower(r.Email)] {
				k.history = true
				t.Welcomed[lower(r.Email)] = true
				d.trace("C4", "history", r.Email+" is a new CC: this first notification carries the public conversation so far")
			}
			if attachments && !env.Policy.CCAttachments {
				k.attach = false
				d.trace("N6", "no attachments", r.Email+": policy.cc_attachments is false")
			}
		}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
		d.trace(rule, "notified (visible)", r.Email+" as "+string(r.As))
	}
	for _, k := range order {
		d.Notifications = append(d.Notifications, Notification{Kind: kind, Copy: k.copy, Recipients: groups[k],
			History: k.history, Attachments: k.attach, Automatic: automatic, StatusViewFor: k.viewer})
	}
}

// notifyEvent sends an event (N5) to the audience that notifications.<event> sets.
func notifyEvent(d *Decision, t *model.Ticket, env Env, kind model.NotificationKind, audience, actor string) {
	if t.Welcomed == nil {
		t.Welcomed = map[string]bool{}
	}
	var endUsers []Recipient
	switch audience {
	case "requester", "requester_and_ccs":
		if env.IsAgent(t.Requester.Email) && SameAddress(t.Requester.Email, actor) {
			break
		}
		endUsers = append(endUsers, Recipient{Email: t.Requester.Email, Name: t.Requester.Name, As: model.AsRequester, Visible: true})
		if audience == "requester_and_ccs" {
			for _, cc := range t.CCs {
				endUsers = append(endUsers, Recipient{Email: cc.Email, Name: cc.Name, As: model.AsCC, Visible: true})
			}
		} else if len(t.CCs) > 0 {
			d.trace("N5", "not notified", "CCs: notifications."+string(kind)+" is requester")
		}
	default:
		d.trace("N5", "not notified", "requester and CCs: notifications."+string(kind)+" is none")
	}
	addEndUserCopies(d, t, env, kind, endUsers, false, true, "N5")
}

// MayReferenceMailOf reports whether the In-Reply-To and References of deskgate's copies may
// name the Message-ID of a mail that author sent (H4). Only end users' mail qualifies: an
// agent's own mail client names her machine (and often her) in its Message-IDs, and the
// mail itself reached nobody but deskgate, so naming it would show a follower's traces to
// people who must not see them and thread under a message they never had.
func (e Env) MayReferenceMailOf(author string) bool { return !e.IsAgent(author) }

// MailToThreadOn is one mail a copy may thread on: its Message-ID and its author.
type MailToThreadOn struct {
	MessageID, Author string
}

// ThreadHeaders decides the In-Reply-To and References of a copy (H1, H4): every copy
// references the ticket's first mail (root) and a copy that tells of a received mail answers
// it, so that the ticket is one thread in mail clients; only end users' mail is named. Where
// the first mail cannot be named, anchor (a Message-ID of the desk's own that no message
// has; mail clients thread on References all the same) stands in for it.
func (e Env) ThreadHeaders(root, answered MailToThreadOn, anchor string) (inReplyTo string, references []string) {
	if root.MessageID != "" && e.MayReferenceMailOf(root.Author) {
		inReplyTo, references = root.MessageID, []string{root.MessageID}
	} else {
		references = []string{anchor}
	}
	if answered.MessageID != "" && answered.MessageID != root.MessageID && e.MayReferenceMailOf(answered.Author) {
		references = append(references, answered.MessageID)
		inReplyTo = answered.MessageID
	}
	return inReplyTo, references
}

// article puts "a" or "an" before a role's word.
func article(word string) string {
	if strings.IndexByte("aeiou", word[0]) >= 0 {
		return "an " + word
	}
	return "a " + word
}
