package rules

import (
	"fmt"
	"strings"

	"github.com/deskgate/deskgate/gateway/model"
)

// Addr is one address from a mail's To or Cc, as the gateway classified it.
type Addr struct {
	Email string
	Name  string
	// Own is set for deskgate's own addresses (support, reply, masked, bounce): they
	// never add anybody (C5).
	Own bool
	// MaskedOf is the participant a valid masked address of this ticket stands for.
	MaskedOf string
}

// Mail is one received mail, as far as the rules care.
type Mail struct {
	MessageID string
	From      model.Person
	// Role is the sender's role after authentication (A1); Identified is the A1 step
	// that says why, with the authentication results.
	Role       model.Role
	Identified model.TraceStep
	To, Cc     []Addr
	Subject    string
	// ReplyToDiffers is set when Reply-To names someone else than From (X2).
	ReplyToDiffers bool
	// Automatic is why the mail is automatic (T5), "" for a person's mail.
	Automatic string
	// Answered is the notification this mail replies to, when deskgate knows it.
	Answered *Answered
	// HasAttachments is set when the mail carries files (N6).
	HasAttachments bool
	// Support is the support address the mail came in on (for a new ticket).
	Support string
	// Problems is what could not be decoded; Unreadable says nothing readable is left (M1).
	Problems   []string
	Unreadable bool
	// NotRead is how many names To and Cc held past the first ReadLimit of each, which
	// the parser does not read (C1).
	NotRead, ReadLimit int
}

// Answered is a notification deskgate sent and a mail now answers: which CCs had it.
type Answered struct {
	SourceID uint64
	CCs      []string
}

func (m Mail) addresses() []Addr { return append(append([]Addr(nil), m.To...), m.Cc...) }

// directlyAddressed reports whether email was named by its real address in To/Cc, so
// that its own mail server already delivered the mail to it (N3).
func (m Mail) directlyAddressed(email string) bool {
	for _, a := range m.addresses() {
		if !a.Own && SameAddress(a.Email, email) {
			return true
		}
	}
	return false
}

// names reports whether To/Cc reach email, by its real or its masked address.
func (m Mail) names(email string) bool {
	for _, a := range m.addresses() {
		if SameAddress(a.Email, email) || SameAddress(a.MaskedOf, email) {
			return true
		}
	}
	return false
}

// DecideMail decides what a received mail does to ticket (nil: the mail opens one, T1).
// The ticket is not modified; the Decision carries the new state. A mail to a ticket is
// decided in steps: whether its comment is public (visibility, M1), whom it adds or removes
// (mailChangesPeople), whether it reopens the ticket, and whom it notifies (replyAudience).
func DecideMail(ticket *model.Ticket, m Mail, env Env) Decision {
	var d Decision
	if m.Identified.Rule != "" {
		d.Trace = append(d.Trace, m.Identified)
	}
	if ticket == nil {
		return newTicketFromMail(m, env, d)
	}
	t := copyTicket(ticket)
	d.Ticket = t
	from := m.From.Email
	isRequester := SameAddress(from, t.Requester.Email)
	isCC := IsCC(t, from)
	c := visibility(&d, t, m, isRequester, isCC)
	undecodable(&d, m)

	namesNotRead(&d, m)
	mailChangesPeople(&d, t, m, env, isRequester, isCC)
	reopen(&d, t, m.Role, c.Public, m.Automatic != "")
	notifyComment(&d, t, env, noteFacts{
		author: from, public: c.Public, endUsersOK: m.Automatic == "", ccs: replyAudience(&d, t, m, env, isRequester || isCC),
		direct: m.directlyAddressed, attachments: m.HasAttachments, automatic: false,
	})
	return d
}

// visibility decides whether a mail's comment on t is public, by who wrote it and to whom
// (V1 to V3, F4, X1; T5 keeps automatic mail internal), and makes it d's comment.
func visibility(d *Decision, t *model.Ticket, m Mail, isRequester, isCC bool) *CommentDecision {
	from := m.From.Email
	c := &CommentDecision{ReplyToDiffers: m.ReplyToDiffers, Automatic: m.Automatic}
	d.Comment = c

	switch {
	case m.Automatic != "":
		d.trace("T5", "internal", "automatic mail ("+m.Automatic+") is stored as an internal note and sends nothing to end users")
	case isRequester:
		c.Public = true
		d.trace("V1", "public", "the requester's mail")
	case m.Role == model.RoleLightAgent:
		d.trace("V3", "internal", "a light agent's mail is always an internal note")
	case m.Role == model.RoleAgent:
		if reachesEndUsers(t, m) {
			c.Public = true
			rule := "V3"
			if IsFollower(t, from) {
				rule = "F4"
			}
			d.trace(rule, "public", "the agent's To/Cc include the requester or a CC")
		} else {
			rule := "V3"
			if IsFollower(t, from) {
				rule = "F4"
			}
			d.trace(rule, "internal", "the agent wrote only to the ticket")
		}
	case isCC:
		if reachesEndUsers(t, m) {
			c.Public = true
			d.trace("V2", "public", "the CC replied to all: To/Cc include the requester or another CC")
		} else {
			d.trace("V2", "internal", "the CC wrote only to the ticket (Reply keeps it private)")
		}
	case IsParticipant(t, from):
		// A follower or assignee whose agent role is gone (or was not proven).
		d.trace("F4", "internal", from+" is a participant but not an agent: internal note")
	default:
		c.ThirdParty = true
		d.trace("X1", "internal, third party", fmt.Sprintf("%s takes no part in ticket %d; not made a CC, only followers and the assignee are told", from, t.ID))
	}
	return c
}

// mailChangesPeople decides whom a mail's To and Cc add to t as CCs, or remove from it: no one
// for automatic mail (T5), a third party's (X1) or a mail whose Reply-To differs (X2).
func mailChangesPeople(d *Decision, t *model.Ticket, m Mail, env Env, isRequester, isCC bool) {
	switch {
	case m.Automatic != "":
		notAdded(d, "T5", "automatic mail adds nobody", candidates(t, m))
	case d.Comment.ThirdParty:
		notAdded(d, "X1", "a third party adds nobody until an expert makes them a CC", candidates(t, m))
	case m.ReplyToDiffers:
		replyToDiffers(d, candidates(t, m))
	default:
		addCCsFromMail(d, t, m, env, isRequester || isCC || m.Role == model.RoleAgent)
		removeCCsByMail(d, t, m, env, isRequester, isCC)
	}
}

// replyAudience is the CCs a mail's comment reaches (N4): under reply_audience notification,
// the requester's or a CC's reply to a notification reaches only the CCs who had it (and those
// the reply names itself); otherwise every current CC.
func replyAudience(d *Decision, t *model.Ticket, m Mail, env Env, requesterOrCC bool) []model.Person {
	if !requesterOrCC || m.Answered == nil {
		return t.CCs
	}
	if env.Policy.ReplyAudience != "notification" {
		d.trace("N4", "audience", "a reply reaches all current CCs (reply_audience: ticket)")
		return t.CCs
	}
	var audience []model.Person
	for _, cc := range t.CCs {
		if containsFold(m.Answered.CCs, cc.Email) || m.directlyAddressed(cc.Email) {
			audience = append(audience, cc)
		} else {
			d.trace("N4", "not notified", cc.Email+" became a CC after the notification this mail answers")
		}
	}
	d.trace("N4", "audience", "a reply reaches the CCs who received the notification it answers (reply_audience: notification)")
	return audience
}

// undecodable records what could not be decoded, and keeps a mail of which nothing readable
// is left from reaching end users as an empty public comment (M1).
func undecodable(d *Decision, m Mail) {
	if len(m.Problems) == 0 {
		return
	}
	problems := strings.Join(m.Problems, "; ")
	if m.Unreadable && d.Comment.Public {
		d.Comment.Public = false
		d.trace("M1", "internal", "nothing readable is left of the body ("+problems+"); agents read the original")
		return
	}
	d.trace("M1", "decoding problems", problems+"; the original is kept with the comment")
}

func newTicketFromMail(m Mail, env Env, d Decision) Decision {
	status := model.StatusNew
	if m.Role == model.RoleAgent && m.Automatic == "" {
		status = model.StatusOpen
	}
	t := &model.Ticket{
		Subject:   TicketSubject(m.Subject),
		Status:    status,
		Requester: env.Person(m.From.Email, m.From.Name),
		CCs:       []model.Person{},
		Followers: []model.Person{},
		Support:   m.Support,
		Masks:     map[string]int{},
		Welcomed:  map[string]bool{},
	}
	mask(t, m.From.Email)
	d.Ticket, d.NewTicket = t, true
	d.Comment = &CommentDecision{Public: m.Automatic == "", ReplyToDiffers: m.ReplyToDiffers, Automatic: m.Automatic}
	d.trace("T1", "opened ticket", "threads to no ticket; requester "+m.From.Email)
	if m.Automatic != "" {
		d.trace("T5", "internal", "automatic mail ("+m.Automatic+") is stored as an internal note and sends nothing to end users")
	} else {
		d.trace("V1", "public", "the requester's mail")
	}
	undecodable(&d, m)
	if status == model.StatusOpen {
		d.trace("T4", "status open", "opened by an agent")
	}
	namesNotRead(&d, m)
	switch {
	case m.Automatic != "":
		notAdded(&d, "T5", "automatic mail adds nobody", candidates(t, m))
	case m.ReplyToDiffers:
		replyToDiffers(&d, candidates(t, m))
	default:
		addCCsFromMail(&d, t, m, env, true)
		// The CCs of the first mail have the whole conversation: it is that mail.
		for _, cc := range t.CCs {
			t.Welcomed[lower(cc.Email)] = true
		}
	}
	// Everybody named in the first mail has it already; only the acknowledgement goes out.
	if m.Automatic == "" {
		notifyEvent(&d, t, env, model.KindTicketCreated, env.Notifications.TicketCreated, "")
	}
	return d
}

// reachesEndUsers: To/Cc name the requester or a CC other than the sender (V2, V3, F4).
func reachesEndUsers(t *model.Ticket, m Mail) bool {
	if !SameAddress(t.Requester.Email, m.From.Email) && m.names(t.Requester.Email) {
		return true
	}
	for _, cc := range t.CCs {
		if !SameAddress(cc.Email, m.From.Email) && m.names(cc.Email) {
			return true
		}
	}
	return false
}

// candidates are the names in To/Cc that could become CCs or followers, each once: not
// deskgate's own (C5), not the sender, not on the ticket already.
func candidates(t *model.Ticket, m Mail) []Addr {
	var out []Addr
	seen := map[string]bool{}
	for _, a := range m.addresses() {
		if a.Own || a.Email == "" || seen[lower(a.Email)] {
			continue
		}
		if SameAddress(a.Email, m.From.Email) || IsParticipant(t, a.Email) {
			continue
		}
		seen[lower(a.Email)] = true
		out = append(out, a)
	}
	return out
}

// shownNames is how many addresses a step names before it only counts the rest, so that a
// mail with thousands of names is still one line per decision.
const shownNames = 5

func listNames(as []Addr) string {
	n := min(len(as), shownNames)
	out := make([]string, n)
	for i := range out {
		out[i] = as[i].Email
	}
	list := strings.Join(out, ", ")
	if len(as) > n {
		list += fmt.Sprintf(" and %d more", len(as)-n)
	}
	return list
}

func ccsNotAdded(n int) string {
	if n == 1 {
		return "1 CC not added"
	}
	return fmt.Sprintf("%d CCs not added", n)
}

// notAdded traces the names of To/Cc that rule leaves out, as one step with their count.
func notAdded(d *Decision, rule, why string, names []Addr) {
	if len(names) == 0 {
		return
	}
	d.trace(rule, ccsNotAdded(len(names)), why+": "+listNames(names))
}

// replyToDiffers applies X2: one step, which also says how many names were left out.
func replyToDiffers(d *Decision, names []Addr) {
	detail := "Reply-To differs from From, so To/Cc change nobody"
	if len(names) > 0 {
		detail += " (" + ccsNotAdded(len(names)) + ": " + listNames(names) + ")"
	}
	d.trace("X2", "no participant changes", detail)
}

// namesNotRead accounts for the names past what the parser reads of To and Cc (C1): they
// are never seen by any rule, so the trace is the only place that can say they were there.
func namesNotRead(d *Decision, m Mail) {
	if m.NotRead <= 0 {
		return
	}
	step := fmt.Sprintf("%d names not read", m.NotRead)
	if m.NotRead == 1 {
		step = "1 name not read"
	}
	d.trace("C1", step, fmt.Sprintf("To/Cc name more addresses than deskgate reads (the first %d of each header); the rest add nobody", m.ReadLimit))
}

// addCCsFromMail applies C1, C2, C3, C5 and C8 to the To/Cc of a mail.
func addCCsFromMail(d *Decision, t *model.Ticket, m Mail, env Env, mayAdd bool) {
	names := candidates(t, m)
	switch {
	case len(names) == 0:
		return
	case !env.Policy.CCsEnabled:
		notAdded(d, "C1", "policy.ccs_enabled is false: To/Cc are ignored", names)
		return
	case m.Role == model.RoleLightAgent:
		notAdded(d, "C1", "a light agent cannot add CCs", names)
		return
	case !mayAdd:
		notAdded(d, "C1", "only the requester, a CC or an agent can add CCs", names)
		return
	}
	var blocked, over []Addr
	for _, a := range names {
		p := env.Person(a.Email, a.Name)
		switch {
		case env.Blocked(a.Email):
			blocked = append(blocked, a)
		case env.IsAgent(a.Email) && env.Policy.AgentCCBecomesFollower && env.Policy.FollowersEnabled:
			t.Followers = append(t.Followers, p)
			mask(t, a.Email)
			d.Changes = append(d.Changes, Change{Op: OpAddFollower, Person: p, Rule: "C3"})
			d.trace("C3", "follower added", a.Email+" is an agent named in To/Cc: a hidden follower, not a CC")
		case len(t.CCs) >= env.MaxCCs:
			over = append(over, a)
		default:
			t.CCs = append(t.CCs, p)
			mask(t, a.Email)
			d.Changes = append(d.Changes, Change{Op: OpAddCC, Person: p, Rule: "C1"})
			d.trace("C1", "CC added", a.Email+" named in To/Cc by "+m.From.Email)
		}
	}
	notAdded(d, "C2", "they match policy.cc_blocklist", blocked)
	notAdded(d, "C8", fmt.Sprintf("the ticket has limits.max_ccs=%d CCs", env.MaxCCs), over)
}

// removeCCsByMail applies C7.
func removeCCsByMail(d *Decision, t *model.Ticket, m Mail, env Env, isRequester, isCC bool) {
	if env.Policy.CCRemoval != "email" || m.Answered == nil {
		return
	}
	var missing []string
	for _, email := range m.Answered.CCs {
		if IsCC(t, email) && !m.names(email) && !SameAddress(email, m.From.Email) {
			missing = append(missing, email)
		}
	}
	if len(missing) == 0 {
		return
	}
	if !isRequester && !isCC {
		d.trace("C7", "no CC removed", "the sender is neither requester nor CC")
		return
	}
	if !isRequester && !m.names(t.Requester.Email) {
		d.trace("C7", "no CC removed", "the requester is not on the mail")
		return
	}
	for _, email := range missing {
		var p model.Person
		for _, cc := range t.CCs {
			if SameAddress(cc.Email, email) {
				p = cc
			}
		}
		t.CCs = remove(t.CCs, email)
		d.Changes = append(d.Changes, Change{Op: OpRemoveCC, Person: p, Rule: "C7"})
		d.trace("C7", "CC removed", email+" received the notification answered and is missing from the reply's To/Cc (cc_removal: email)")
	}
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if SameAddress(x, s) {
			return true
		}
	}
	return false
}

// reopen applies T4 to a comment, from mail or from an expert alike: a pending or solved
// ticket opens again on a public comment or on anything an end user writes (an agent's
// internal note is work on the ticket, not a reply); a new ticket opens at the first
// agent comment. Automatic mail changes nothing.
func reopen(d *Decision, t *model.Ticket, role model.Role, public, automatic bool) {
	switch {
	case automatic:
		return
	case (t.Status == model.StatusPending || t.Status == model.StatusSolved) && (public || role == model.RoleEndUser):
		d.Status = model.StatusOpen
		d.trace("T4", "status open", "a reply to a "+string(t.Status)+" ticket")
	case t.Status == model.StatusNew && role == model.RoleAgent:
		d.Status = model.StatusOpen
		d.trace("T4", "status open", "the first agent comment on a new ticket")
	}
	if d.Status != "" {
		t.Status = d.Status
	}
}
