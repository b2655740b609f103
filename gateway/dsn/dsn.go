// Package dsn reads bounces: RFC 3464 delivery status notifications, and the plain
// text ones some servers still send. It never panics on what it is given.
package dsn

import (
	"bufio"
	"bytes"
	"github.com/deskgate/deskgate/gateway/model"
	"io"
	"net/textproto"
	"strings"

	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // bounces come in every charset
)

// Recipient and Report are the model's, so that the rules engine reads a bounce without this
// parser.
type (
	Recipient = model.BounceRecipient
	Report    = model.BounceReport
)

const maxText = 4096

// Parse reads a bounce; a message it cannot read yields an empty Report.
func Parse(raw []byte) (rep Report) {
	defer func() {
		if recover() != nil {
			rep = Report{Text: firstText(raw)}
		}
	}()
	ent, err := message.Read(bytes.NewReader(raw))
	if err != nil && ent == nil {
		return Report{Text: firstText(raw)}
	}
	walk(ent, &rep, 0)
	if rep.Text == "" && len(rep.Recipients) == 0 {
		rep.Text = firstText(raw)
	}
	return rep
}

func walk(e *message.Entity, rep *Report, depth int) {
	if depth > 10 {
		return
	}
	if mr := e.MultipartReader(); mr != nil {
		for i := 0; i < 50; i++ {
			p, err := mr.NextPart()
			if err != nil {
				return
			}
			walk(p, rep, depth+1)
		}
		return
	}
	ct, _, _ := e.Header.ContentType()
	switch {
	case ct == "message/delivery-status" || ct == "message/global-delivery-status":
		b, _ := io.ReadAll(io.LimitReader(e.Body, 1<<20))
		rep.Recipients = append(rep.Recipients, statusFields(b)...)
	case strings.HasPrefix(ct, "text/") && rep.Text == "":
		b, _ := io.ReadAll(io.LimitReader(e.Body, maxText))
		rep.Text = strings.ToValidUTF8(string(b), "")
	}
}

// statusFields reads the per-recipient blocks of a delivery-status body: header-like
// blocks separated by blank lines, the first one about the message as a whole.
func statusFields(b []byte) []Recipient {
	var out []Recipient
	r := textproto.NewReader(bufio.NewReader(bytes.NewReader(b)))
	for i := 0; i < 1000; i++ {
		h, err := r.ReadMIMEHeader()
		if len(h) > 0 {
			addr := h.Get("Final-Recipient")
			if addr == "" {
				addr = h.Get("Original-Recipient")
			}
			if addr != "" {
				if _, a, ok := strings.Cut(addr, ";"); ok {
					addr = a
				}
				out = append(out, Recipient{
					Email:      strings.Trim(strings.TrimSpace(addr), "<>"),
					Action:     strings.ToLower(strings.TrimSpace(h.Get("Action"))),
					Status:     strings.TrimSpace(h.Get("Status")),
					Diagnostic: strings.TrimSpace(h.Get("Diagnostic-Code")),
				})
			}
		}
		if err != nil {
			break
		}
	}
	return out
}

func firstText(raw []byte) string {
	if len(raw) > maxText {
		raw = raw[:maxText]
	}
	return strings.ToValidUTF8(string(raw), "")
}
