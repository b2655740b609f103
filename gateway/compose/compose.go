// Package compose writes deskgate's outgoing mail: RFC 5322 messages whose headers follow
// docs/rules.md H1–H3. It never decides who gets what (that is gateway/rules); it only makes
// sure that what it is given shows nobody it must not.
package compose

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"

	"github.com/deskgate/deskgate/gateway/addr"
	"github.com/deskgate/deskgate/gateway/model"
	"github.com/deskgate/deskgate/gateway/rules"
)

// File is an attachment to send. A Damaged one did not decode (M1): it is named in the text
// and not attached, since what did decode of it is not the file its sender sent.
type File struct {
	Name        string
	ContentType string
	Data        []byte
	Damaged     bool
}

// Input is everything one message is made of.
type Input struct {
	Hostname    string
	SupportName string
	Book        *addr.Book
	Env         rules.Env
	Ticket      *model.Ticket // the state after the change
	Kind        model.NotificationKind
	Copy        model.Copy
	AuthorName  string // who wrote the comment or took the action
	Body        string // the comment's text, or "" for an event
	Internal    bool   // an internal note (agents' copies only)
	ThirdParty  bool
	History     []model.Comment // public comments before this one, oldest first (C4)
	Files       []File
	Automatic   bool
	MessageID   string // without brackets; NewMessageID makes one
	InReplyTo   string
	References  []string
	Date        time.Time
	// StatusURL is the one recipient's own request status view link (S1), "" for none.
	StatusURL string
}

// NewMessageID makes a fresh, unguessable Message-ID (H1) for a message made at `at`. It
// starts with the time in milliseconds, so that the ids deskgate sends sort in the order they
// were made: indexing them then appends at one end of the Message-ID index instead of
// touching a random page of it each time, which on a desk too large for memory was a disk read
// on the store's writer per message. The 128 random bits after it make it unguessable.
func NewMessageID(random io.Reader, at time.Time, hostname string) string {
	b := make([]byte, 22)
	binary.BigEndian.PutUint64(b[:8], uint64(at.UnixMilli())<<16)
	if random == nil {
		random = rand.Reader
	}
	if _, err := io.ReadFull(random, b[6:]); err != nil {
		// An id made of what a failed read left would repeat, and deskgate drops mail whose
		// Message-ID it has seen (T3): the system's generator, which cannot fail, steps in.
		rand.Read(b[6:])
	}
	return hex.EncodeToString(b) + "@" + hostname
}

// Support is the support address a ticket's mail goes out from.
func Support(b *addr.Book, t *model.Ticket) string {
	if t.Support != "" {
		return t.Support
	}
	return b.Supports()[0]
}

// shown is how a participant appears in a header of this copy; the rules say which
// addresses are masked (H2, H3).
func (in *Input) shown(p model.Person) *mail.Address {
	if !in.Env.Masked(in.Copy, p.Email) {
		return &mail.Address{Name: p.Name, Address: p.Email}
	}
	n := in.Ticket.Masks[model.AddressKey(p.Email)]
	return &mail.Address{Name: p.Name, Address: in.Book.MaskedAddress(Support(in.Book, in.Ticket), in.Ticket.ID, n)}
}

// Message returns the message bytes.
func Message(in Input) ([]byte, error) {
	support := Support(in.Book, in.Ticket)
	tag := in.Book.Tag(in.Ticket.ID)
	var h mail.Header
	h.SetDate(in.Date)
	fromName := in.SupportName
	if in.AuthorName != "" {
		fromName = in.AuthorName + " via " + in.SupportName
	}
	h.SetAddressList("From", []*mail.Address{{Name: fromName, Address: support}})
	h.SetAddressList("Reply-To", []*mail.Address{{Name: in.SupportName, Address: in.Book.ReplyAddress(support, in.Ticket.ID)}})
	h.SetAddressList("To", []*mail.Address{in.shown(in.Ticket.Requester)})
	if len(in.Ticket.CCs) > 0 {
		cc := make([]*mail.Address, 0, len(in.Ticket.CCs))
		for _, p := range in.Ticket.CCs {
			cc = append(cc, in.shown(p))
		}
		h.SetAddressList("Cc", cc)
	}
	h.SetSubject(subject(in.Kind, in.Ticket.Subject, tag, in.Internal))
	h.SetMessageID(in.MessageID)
	if in.InReplyTo != "" {
		h.SetMsgIDList("In-Reply-To", []string{in.InReplyTo})
	}
	if len(in.References) > 0 {
		h.SetMsgIDList("References", in.References)
	}
	if in.Automatic {
		h.Set("Auto-Submitted", "auto-generated")
	}
	// Lets deskgate recognise its own mail coming back (T5).
	h.Set("X-Loop", support)
	h.Set("MIME-Version", "1.0")

	var files []File
	var damaged []string
	for _, f := range in.Files {
		if f.Damaged {
			damaged = append(damaged, f.Name)
		} else {
			files = append(files, f)
		}
	}
	text := body(in, tag, damaged)
	var buf bytes.Buffer
	if len(files) == 0 {
		h.SetContentType("text/plain", map[string]string{"charset": "utf-8"})
		h.Set("Content-Transfer-Encoding", "quoted-printable")
		w, err := message.CreateWriter(&buf, h.Header)
		if err != nil {
			return nil, err
		}
		io.WriteString(w, text)
		if err := w.Close(); err != nil {
			return nil, err
		}
		return buf.Bytes(), nil
	}
	h.SetContentType("multipart/mixed", nil)
	w, err := mail.CreateWriter(&buf, h)
	if err != nil {
		return nil, err
	}
	var th mail.InlineHeader
	th.SetContentType("text/plain", map[string]string{"charset": "utf-8"})
	th.Set("Content-Transfer-Encoding", "quoted-printable")
	tw, err := w.CreateSingleInline(th)
	if err != nil {
		return nil, err
	}
	io.WriteString(tw, text)
	tw.Close()
	for _, f := range files {
		var ah mail.AttachmentHeader
		ct := f.ContentType
		if ct == "" {
			ct = "application/octet-stream"
		}
		ah.SetContentType(ct, nil)
		ah.SetFilename(f.Name)
		ah.Set("Content-Transfer-Encoding", "base64")
		aw, err := w.CreateAttachment(ah)
		if err != nil {
			return nil, err
		}
		aw.Write(f.Data)
		aw.Close()
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func subject(kind model.NotificationKind, ticketSubject, tag string, internal bool) string {
	s := ticketSubject
	switch kind {
	case model.KindTicketCreated:
		s = "Received: " + s
	case model.KindAssigned:
		s = "Assigned: " + s
	case model.KindSolved:
		s = "Solved: " + s
	default:
		if internal {
			s = "Internal note: " + s
		} else {
			s = "Re: " + s
		}
	}
	return s + " " + tag
}

func body(in Input, tag string, damaged []string) string {
	var b strings.Builder
	id := in.Ticket.ID
	switch in.Kind {
	case model.KindTicketCreated:
		fmt.Fprintf(&b, "Your request #%d \"%s\" has reached %s.\nWe will answer by mail; reply to this message to add to it.\n", id, in.Ticket.Subject, in.SupportName)
	case model.KindAssigned:
		who := in.Env.AgentNames[model.AddressKey(in.Ticket.Assignee)]
		if who == "" || in.Copy == model.CopyEndUser {
			who = "an agent"
		}
		if in.Copy == model.CopyAgent {
			fmt.Fprintf(&b, "Ticket #%d \"%s\" is assigned to %s.\n", id, in.Ticket.Subject, who)
		} else {
			fmt.Fprintf(&b, "Your request #%d \"%s\" is now in the hands of %s.\n", id, in.Ticket.Subject, who)
		}
	case model.KindSolved:
		fmt.Fprintf(&b, "Request #%d \"%s\" is solved. Reply to this message if it is not, and it opens again.\n", id, in.Ticket.Subject)
	default:
		if in.Internal {
			b.WriteString("-- Internal note: not sent to the requester or CCs --\n")
			if in.ThirdParty {
				b.WriteString("-- From someone who takes no part in this ticket (a third party) --\n")
			}
			b.WriteString("\n")
		}
		if in.AuthorName != "" {
			fmt.Fprintf(&b, "%s wrote:\n\n", in.AuthorName)
		}
		b.WriteString(strings.TrimRight(in.Body, "\n"))
		b.WriteString("\n")
		for _, name := range damaged {
			fmt.Fprintf(&b, "\n-- The attachment %q arrived damaged and is not attached. --\n", name)
		}
	}
	// Before the history, where a reader still sees it.
	if in.StatusURL != "" {
		// On a line of its own: a quoted-printable line of over 76 characters would be broken
		// with a soft line break, which readers that do not decode it (a grep) trip over.
		fmt.Fprintf(&b, "\nSee your request and reply on the web:\n%s\n", in.StatusURL)
	}
	if len(in.History) > 0 {
		b.WriteString("\n-- The conversation so far --\n")
		for _, c := range in.History {
			fmt.Fprintf(&b, "\nOn %s, %s wrote:\n", c.CreatedAt.UTC().Format("2006-01-02 15:04 MST"), AuthorName(in.Env, c.Author, c.AuthorName))
			for _, line := range strings.Split(strings.TrimRight(c.Body, "\n"), "\n") {
				b.WriteString("> " + line + "\n")
			}
		}
	}
	if in.Copy == model.CopyAgent && !in.Internal && in.Kind == model.KindComment {
		b.WriteString("\n-- Reply to add an internal note; Reply all to answer the requester and CCs. --\n")
	}
	fmt.Fprintf(&b, "\n%s\n", tag)
	return b.String()
}

// AuthorName names the author of a comment without an address when the author is an
// agent: agents' addresses never reach end users (H1), and names are what people
// recognise. An agent goes by the name the desk gives her in agents, never by the display
// name of her own mail client, which may say more than the desk means to (H4). End users
// without a name go by their address, which H2 lets everyone see.
func AuthorName(env rules.Env, email, name string) string {
	switch p := env.Person(email, name); {
	case env.IsAgent(email) && env.AgentNames[model.AddressKey(email)] == "":
		return "An agent"
	case p.Name != "":
		return p.Name
	}
	return email
}
