// Package dsn reads mail sent to a bounce address: whether it is a delivery status
// notification (RFC 3464, and RFC 6533's internationalised kind), what such a notification
// says of each recipient, and the first human-readable text of any mail. It never panics on
// what it is given.
package dsn

import (
	"bytes"
	"io"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/deskgate/deskgate/gateway/addr"
	"github.com/deskgate/deskgate/gateway/model"

	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // bounces come in every charset
)

const (
	maxText       = 4096
	maxField      = 1000 // a per-recipient field, Diagnostic-Code included
	maxRecipients = 1000
	maxParts      = 50
)

// keptHeaders are the top-level fields the rules read to tell automatic mail (T5, T6), and
// From for the log.
var keptHeaders = []string{"Auto-Submitted", "Precedence", "X-Autoreply", "X-Autorespond", "X-Auto-Response-Suppress", "From"}

// Parse reads a mail to a bounce address; a message it cannot read yields a Report with
// its first bytes as Text and no recipients.
func Parse(raw []byte) (rep model.BounceReport) {
	defer func() {
		if recover() != nil {
			rep = model.BounceReport{Text: firstText(raw)}
		}
	}()
	ent, err := message.Read(bytes.NewReader(raw))
	if err != nil && ent == nil {
		return model.BounceReport{Text: firstText(raw)}
	}
	rep.Header = map[string]string{}
	for _, k := range keptHeaders {
		if v := ent.Header.Get(k); v != "" {
			rep.Header[k] = clean(v, maxField)
		}
	}
	ct, params, _ := ent.Header.ContentType()
	statusType := ""
	if ct == "multipart/report" {
		switch strings.ToLower(strings.TrimSpace(params["report-type"])) {
		case "delivery-status":
			statusType = "message/delivery-status"
		case "global-delivery-status":
			statusType = "message/global-delivery-status"
		}
	}
	if statusType == "" {
		walkText(ent, &rep, 0)
	} else if mr := ent.MultipartReader(); mr != nil {
		// RFC 6522: the report's machine-readable part is one of its own parts, never
		// deeper, and a report has one.
		seen := false
		for i := 0; i < maxParts; i++ {
			p, err := mr.NextPart()
			if err != nil {
				break
			}
			pt, _, _ := p.Header.ContentType()
			if pt == statusType && !seen {
				seen = true
				rep.DSN = true
				b, _ := io.ReadAll(io.LimitReader(p.Body, 1<<20))
				rep.Recipients = statusFields(b)
				continue
			}
			walkText(p, &rep, 1)
		}
	}
	if rep.Text == "" && len(rep.Recipients) == 0 {
		rep.Text = firstText(raw)
	}
	return rep
}

// walkText keeps the first text/plain part as the mail's text.
func walkText(e *message.Entity, rep *model.BounceReport, depth int) {
	if depth > 10 || rep.Text != "" {
		return
	}
	if mr := e.MultipartReader(); mr != nil {
		for i := 0; i < maxParts && rep.Text == ""; i++ {
			p, err := mr.NextPart()
			if err != nil {
				return
			}
			walkText(p, rep, depth+1)
		}
		return
	}
	ct, _, _ := e.Header.ContentType()
	if ct == "text/plain" || ct == "" {
		b, _ := io.ReadAll(io.LimitReader(e.Body, maxText))
		rep.Text = strings.ToValidUTF8(string(b), "")
	}
}

// statusFields reads the per-recipient blocks of a delivery-status body: header-like blocks
// separated by blank lines, the first one about the message as a whole. Its own reader,
// not net/textproto's, so that a field with a stray byte is cleaned rather than ending the
// block.
func statusFields(b []byte) []model.BounceRecipient {
	var out []model.BounceRecipient
	for _, block := range blocks(b) {
		final, orig := address(block["final-recipient"]), address(block["original-recipient"])
		if final == "" && orig == "" {
			continue
		}
		out = append(out, model.BounceRecipient{
			Email:      final,
			Original:   orig,
			Action:     action(block["action"]),
			Status:     clean(block["status"], maxField),
			Diagnostic: clean(block["diagnostic-code"], maxField),
		})
		if len(out) == maxRecipients {
			break
		}
	}
	return out
}

// blocks splits a delivery-status body into its field blocks (names lowercased, folded
// lines joined, the first occurrence of a field kept).
func blocks(b []byte) []map[string]string {
	var out []map[string]string
	cur := map[string]string{}
	last := ""
	flush := func() {
		if len(cur) > 0 {
			out = append(out, cur)
		}
		cur, last = map[string]string{}, ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimRight(line, "\r")
		switch {
		case strings.TrimSpace(line) == "":
			flush()
		case line[0] == ' ' || line[0] == '\t':
			if last != "" && len(cur[last]) < maxField {
				cur[last] += " " + strings.TrimSpace(line)
			}
		default:
			name, value, ok := strings.Cut(line, ":")
			if !ok {
				last = ""
				continue
			}
			last = strings.ToLower(strings.TrimSpace(name))
			if _, dup := cur[last]; dup {
				last = ""
				continue
			}
			cur[last] = strings.TrimSpace(value)
		}
		if len(out) > maxRecipients {
			break
		}
	}
	flush()
	return out
}

// address is the mailbox of an RFC 3464 address field, "rfc822; joe@customer.test" (or
// RFC 6533's "utf-8; ..."); a field of another address type names no mailbox.
func address(v string) string {
	if v == "" {
		return ""
	}
	typ, a, ok := strings.Cut(v, ";")
	if !ok {
		a, typ = v, "rfc822"
	}
	typ = strings.ToLower(strings.TrimSpace(typ))
	if typ != "rfc822" && typ != "utf-8" {
		return ""
	}
	a = strings.Trim(strings.TrimSpace(clean(a, maxField)), "<>")
	if typ == "utf-8" {
		var ok bool
		if a, ok = unescape(a); !ok {
			return ""
		}
	}
	if a == "" || strings.ContainsAny(a, " \t") {
		return ""
	}
	// The canonical form, so that a report naming joe@xn--bcher-kva.test or JOE@BÜCHER.TEST
	// matches the delivery to joe@bücher.test. An address that is not valid is kept as it
	// came, for the log; it matches no delivery.
	if c, err := addr.Canonical(a); err == nil {
		return c
	}
	return a
}

// unescape decodes the \x{HEX} escapes of RFC 6533's utf-8 address type (its unitext and
// xtext forms, section 3). ok is false for an escape that is cut short or names no
// character, or a control character: such a field names no mailbox.
func unescape(s string) (string, bool) {
	if !strings.Contains(s, `\x{`) {
		return s, true
	}
	var b strings.Builder
	for {
		i := strings.Index(s, `\x{`)
		if i < 0 {
			b.WriteString(s)
			return b.String(), true
		}
		b.WriteString(s[:i])
		s = s[i+3:]
		end := strings.IndexByte(s, '}')
		if end < 1 || end > 6 {
			return "", false
		}
		n, err := strconv.ParseUint(s[:end], 16, 32)
		r := rune(n)
		if err != nil || !utf8.ValidRune(r) || unicode.IsControl(r) {
			return "", false
		}
		b.WriteRune(r)
		s = s[end+1:]
	}
}

// action is an Action field's value, one lowercased word: "Failed (permanent failure)" is
// failed.
func action(v string) string {
	f := strings.Fields(strings.ToLower(clean(v, maxField)))
	if len(f) == 0 {
		return ""
	}
	return strings.TrimRight(f[0], ";,")
}

// clean makes text from a remote server fit for records and logs: valid UTF-8 without
// control characters, on one line, cut short.
func clean(s string, max int) string {
	if len(s) > max {
		s = s[:max]
	}
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, ""))
	return strings.Join(strings.Fields(s), " ")
}

func firstText(raw []byte) string {
	if len(raw) > maxText {
		raw = raw[:maxText]
	}
	return strings.ToValidUTF8(string(raw), "")
}
