// Package mailparse reads one received mail into the facts deskgate needs: addresses,
// Message-IDs, subject, the text body and a description of each attachment. It is built
// to never panic and to get what it can out of broken mail.
package mailparse

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // decode the charsets mail really uses
	gmail "github.com/emersion/go-message/mail"
	"golang.org/x/text/encoding/charmap"

	"github.com/deskgate/deskgate/gateway/addr"
)

// Limits on what one message can make deskgate do.
const (
	MaxHeaderBytes = 1 << 20
	maxParts       = 500
	maxDepth       = 20
	maxBodyRunes   = 1 << 20
	maxRefs        = 100
)

// MaxAddresses is how many addresses of each of To and Cc are read.
const MaxAddresses = 1000

// ErrHeaderTooLarge is returned for a header block over MaxHeaderBytes.
var ErrHeaderTooLarge = errors.New("message header block is too large")

// ErrNoHeader is returned for data that has no header block at all.
var ErrNoHeader = errors.New("message has no header")

// Address is a mailbox with its display name.
type Address struct {
	Email string
	Name  string
}

// Attachment describes one attached file.
type Attachment struct {
	Name        string
	ContentType string
	Size        int64
	Data        []byte
	Problem     string
}

// Message is what deskgate keeps of a received mail.
type Message struct {
	MessageID          string // without angle brackets
	MessageIDGenerated bool
	From               *Address
	ReplyTo            []Address
	To, Cc             []Address
	Subject            string
	Date               time.Time
	InReplyTo          string
	References         []string
	Text               string
	// HTML is the first text/html part as it came, "" without one: never to be shown as it
	// is (the desk sanitises it for its formatted view); Text is what the desk stores.
	HTML        string
	Attachments []Attachment
	// Header keeps the fields later rules read (Auto-Submitted, Precedence, ...).
	Header map[string]string
	// Problems notes what could not be decoded, for the comment and the log.
	Problems     []string
	NamesNotRead int
}

var keptHeaders = []string{"Auto-Submitted", "Precedence", "X-Autoreply", "X-Auto-Response-Suppress",
	"X-Loop", "List-Id", "Authentication-Results", "Return-Path"}

// Parse reads raw, a whole RFC 5322 message. hostname is used to make a Message-ID for a
// mail that has none; the made-up id is derived from the content, so that the same
// message delivered twice still gets the same id.
func Parse(raw []byte, hostname string) (msg *Message, err error) {
	defer func() {
		// go-message is robust, but a hostile message must never take the daemon down.
		if r := recover(); r != nil {
			msg, err = nil, fmt.Errorf("unparseable message: %v", r)
		}
	}()
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, ErrNoHeader
	}
	if headerEnd(raw) > MaxHeaderBytes {
		return nil, ErrHeaderTooLarge
	}
	ent, err := message.ReadWithOptions(bytes.NewReader(raw), &message.ReadOptions{MaxHeaderBytes: MaxHeaderBytes})
	m := &Message{Header: map[string]string{}}
	if err != nil && ent == nil {
		// A broken header: keep what comes before the damage by reading it line by
		// line with net/mail, which is more forgiving about the body.
		return parseFallback(raw, hostname, err)
	}
	if err != nil {
		m.problem(err.Error())
	}
	if ent.Header.Len() == 0 {
		m.problem("no header: the message begins with an empty line, so all of it is read as text")
	}
	h := gmail.Header{Header: ent.Header}
	m.readHeader(h)
	m.readBody(ent, 0, new(int))
	m.finish(raw, hostname)
	return m, nil
}

// headerEnd is the length of the header block: up to the first empty line, or all of raw.
func headerEnd(raw []byte) int {
	crlf := bytes.Index(raw, []byte("\r\n\r\n"))
	lf := bytes.Index(raw, []byte("\n\n"))
	switch {
	case crlf < 0 && lf < 0:
		return len(raw)
	case crlf < 0:
		return lf
	case lf < 0 || crlf < lf:
		return crlf
	}
	return lf
}

// textHeaders are the fields whose text deskgate shows: a subject, display names.
var textHeaders = []string{"From", "Reply-To", "To", "Cc", "Subject"}

func (m *Message) readHeader(h gmail.Header) {
	for _, k := range textHeaders {
		vals := h.Values(k)
		changed := false
		for i, v := range vals {
			if w, ok := windows1252(v); ok {
				vals[i], changed = w, true
			}
		}
		if !changed {
			continue
		}
		h.Del(k)
		// Add puts each value before the ones already there: add them last first.
		for i := len(vals) - 1; i >= 0; i-- {
			h.Add(k, vals[i])
		}
		m.problem(k + ": " + eightBitProblem)
	}
	if list, _ := addressList(h, "From"); len(list) > 0 {
		// An author whose address is not valid is no author: the desk takes the envelope
		// sender, as for a From it cannot read at all.
		if from := m.canonical("From", list[:1]); len(from) > 0 {
			m.From = &from[0]
		}
	}
	m.ReplyTo, _ = addressList(h, "Reply-To")
	m.ReplyTo = m.canonical("Reply-To", m.ReplyTo)
	var toLeft, ccLeft int
	m.To, toLeft = everyAddressList(h, "To")
	m.To = m.canonical("To", m.To)
	m.Cc, ccLeft = everyAddressList(h, "Cc")
	m.Cc = m.canonical("Cc", m.Cc)
	m.NamesNotRead = toLeft + ccLeft
	if s, err := h.Subject(); err == nil {
		m.Subject = s
	} else {
		m.Subject = h.Get("Subject")
	}
	if d, err := h.Date(); err == nil {
		m.Date = d
	}
	if id, err := h.MessageID(); err == nil && id != "" {
		m.MessageID = id
	} else if raw := strings.TrimSpace(h.Get("Message-Id")); raw != "" {
		m.MessageID = strings.Trim(raw, "<> \t")
	}
	if ids, err := h.MsgIDList("In-Reply-To"); err == nil && len(ids) > 0 {
		m.InReplyTo = ids[0]
	}
	if ids, err := h.MsgIDList("References"); err == nil {
		m.References = ids
	} else {
		m.References = looseMsgIDs(h.Get("References"))
	}
	if len(m.References) > maxRefs {
		// The newest references are the ones that name the conversation's tail.
		m.References = m.References[len(m.References)-maxRefs:]
	}
	for _, k := range keptHeaders {
		if v := h.Get(k); v != "" {
			m.Header[k] = clean(v)
		}
	}
}

// canonical puts each address of list in its canonical form (addr.Canonical), so that
// every spelling of one person (case, A-labels, NFD) is one participant. An address that is
// not valid (bad IDNA, control characters) is left out, as nobody could be written to there,
// and the comment's problems say so.
func (m *Message) canonical(field string, list []Address) []Address {
	out := list[:0]
	for _, a := range list {
		c, err := addr.Canonical(a.Email)
		if err != nil {
			// The reason quotes the address, control characters escaped.
			m.problem(fmt.Sprintf("%s: not a valid address, so not taken as a participant: %s",
				field, strings.TrimPrefix(err.Error(), addr.ErrInvalidAddress.Error()+": ")))
			continue
		}
		a.Email = c
		out = append(out, a)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// eightBitProblem is what is said of header text that is neither ASCII nor UTF-8.
const eightBitProblem = "8-bit text without a charset, read as Windows-1252"

// windows1252 reads the bytes of s that are not UTF-8 as Windows-1252, the charset that mail
// clients assume for 8-bit header text that declares none; valid UTF-8 in s (RFC 6532) is
// kept as it is. ok is false when s was valid UTF-8 already.
func windows1252(s string) (string, bool) {
	if utf8.ValidString(s) {
		return s, false
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b.WriteRune(charmap.Windows1252.DecodeByte(s[i]))
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String(), true
}

// addressList reads the addresses of a field, the first MaxAddresses of them, and says how
// many more it named.
func addressList(h gmail.Header, key string) ([]Address, int) {
	return addressValue(h.Get(key))
}

// everyAddressList reads the names of every key field in turn, within one MaxAddresses cap:
// RFC 5322 allows one To and one Cc, but a mail that has two names everybody in both, and
// whoever is named in the second is on the mail as much as whoever is in the first.
func everyAddressList(h gmail.Header, key string) ([]Address, int) {
	var out []Address
	left := 0
	for _, v := range h.Values(key) {
		list, l := addressValue(v)
		left += l
		if room := MaxAddresses - len(out); len(list) > room {
			left += len(list) - room
			list = list[:room]
		}
		out = append(out, list...)
	}
	return out, left
}

// addressValue reads the addresses of one header field's value, the first MaxAddresses of
// them, and counts the rest.
func addressValue(value string) ([]Address, int) {
	if value == "" {
		return nil, 0
	}
	h := gmail.Header{}
	h.Set("To", value)
	list, err := h.AddressList("To")
	if err != nil {
		// Fall back to the standard library, then to bare addresses in the text.
		list2, err2 := mail.ParseAddressList(value)
		if err2 != nil {
			// Not a decoding problem (M1): what the header names is read loosely, and the
			// header itself is shown as it is in the original.
			return looseAddresses(value)
		}
		for _, a := range list2 {
			list = append(list, &gmail.Address{Name: a.Name, Address: a.Address})
		}
	}
	out := make([]Address, 0, min(len(list), MaxAddresses))
	left := 0
	for _, a := range list {
		switch {
		case a.Address == "":
		case len(out) >= MaxAddresses:
			left++
		default:
			out = append(out, Address{Email: clean(a.Address), Name: clean(a.Name)})
		}
	}
	return out, left
}

// looseAddresses finds local@domain words in a header that does not parse. Where the
// header has <angle-addr>s, those are the addresses and the rest is display text:
// "alice@example.com <evil@x.test>" is from evil@x.test, as a mail client shows it.
func looseAddresses(s string) ([]Address, int) {
	var out []Address
	left := 0
	for span := range addr.Bracketed(s) {
		inner := strings.TrimSpace(span[1 : len(span)-1])
		if at := strings.IndexByte(inner, '@'); at > 0 && at < len(inner)-1 && !strings.ContainsAny(inner, " \t,;<\"") {
			if len(out) < MaxAddresses {
				out = append(out, Address{Email: clean(inner)})
			} else {
				left++
			}
		}
	}
	if len(out) > 0 {
		return out, left
	}
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return strings.ContainsRune(" \t,;<>\"()", r) }) {
		if strings.Count(f, "@") == 1 && !strings.HasPrefix(f, "@") && !strings.HasSuffix(f, "@") {
			if len(out) < MaxAddresses {
				out = append(out, Address{Email: clean(f)})
			} else {
				left++
			}
		}
	}
	return out, left
}

func looseMsgIDs(s string) []string {
	var out []string
	for _, f := range strings.Fields(s) {
		f = strings.Trim(f, "<>,")
		if strings.Contains(f, "@") {
			out = append(out, f)
		}
	}
	return out
}

func clean(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r == 0 {
			return -1
		}
		return r
	}, strings.TrimSpace(s))
}

// readBody walks the MIME tree: the first text/plain part is the body (text/html only
// when there is no plain text), everything with a file name or a non-text type is an
// attachment.
func (m *Message) readBody(ent *message.Entity, depth int, parts *int) {
	*parts++
	if depth > maxDepth || *parts > maxParts {
		m.problem("MIME tree too deep or too large; rest ignored")
		return
	}
	if mr := ent.MultipartReader(); mr != nil {
		for {
			p, err := mr.NextPart()
			if err == io.EOF {
				return
			}
			if err != nil {
				if p == nil {
					m.problem(named("multipart", err))
					return
				}
				m.problem(err.Error())
			}
			m.readBody(p, depth+1, parts)
		}
	}
	ctype, params, err := ent.Header.ContentType()
	if err != nil || ctype == "" {
		ctype = "text/plain"
	}
	disp, dparams, _ := ent.Header.ContentDisposition()
	name := dparams["filename"]
	if name == "" {
		name = params["name"]
	}
	if w, ok := windows1252(name); ok {
		name = w
		m.problem("attachment name: " + eightBitProblem)
	}
	name = decodeWord(name)
	isText := ctype == "text/plain" || ctype == "text/html"
	if disp == "attachment" || (name != "" && !isText) || (!isText && !strings.HasPrefix(ctype, "multipart/")) {
		data, err := io.ReadAll(ent.Body)
		a := Attachment{Name: clean(name), ContentType: ctype, Size: int64(len(data)), Data: data}
		if err != nil {
			// The file is listed with what is wrong with it, not as a smaller file that
			// looks whole; what did decode is kept, and the original has all of it.
			a.Problem = bounded(clean(err.Error()))
			m.problem(fmt.Sprintf("attachment %q (%s): %s", a.Name, ctype, a.Problem))
		}
		m.Attachments = append(m.Attachments, a)
		return
	}
	body, err := io.ReadAll(io.LimitReader(ent.Body, 4*maxBodyRunes))
	if err != nil {
		m.problem(named("body", err))
	}
	switch {
	case ctype == "text/plain" && !m.hasPlain():
		m.Text = string(body)
		m.Header[plainMark] = "1"
	case ctype == "text/html" && m.Text == "":
		m.Text = HTMLToText(string(body))
	}
	if ctype == "text/html" && m.HTML == "" {
		m.HTML = string(body)
	}
}

// maxProblems bounds the list: a broken message can repeat one fault in every part.
const maxProblems = 10

// named is err's text with where it happened in front, unless the text says so already
// (go-message's "multipart: ..." errors do).
func named(where string, err error) string {
	s := err.Error()
	if strings.HasPrefix(s, where+":") {
		return s
	}
	return where + ": " + s
}

// maxProblemBytes bounds one problem's text, which can quote the sender's bytes.
const maxProblemBytes = 200

func bounded(s string) string {
	if len(s) <= maxProblemBytes {
		return s
	}
	cut := maxProblemBytes
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// problem notes what could not be decoded, once each, on one line.
func (m *Message) problem(p string) {
	p = bounded(clean(p))
	if len(m.Problems) >= maxProblems {
		return
	}
	for _, q := range m.Problems {
		if q == p {
			return
		}
	}
	m.Problems = append(m.Problems, p)
}

// Unreadable reports that decoding failed and left no text and no file: nothing a person
// could read is left but the original.
func (m *Message) Unreadable() bool {
	return len(m.Problems) > 0 && strings.TrimSpace(m.Text) == "" && len(m.Attachments) == 0
}

// plainMark notes internally that the body came from a text/plain part.
const plainMark = "\x00plain"

func (m *Message) hasPlain() bool { return m.Header[plainMark] != "" }

func decodeWord(s string) string {
	dec := new(mime.WordDecoder)
	if out, err := dec.DecodeHeader(s); err == nil {
		return out
	}
	return s
}

func (m *Message) finish(raw []byte, hostname string) {
	delete(m.Header, plainMark)
	m.Text = strings.ToValidUTF8(m.Text, "\uFFFD")
	m.Text = strings.ReplaceAll(m.Text, "\r\n", "\n")
	if utf8.RuneCountInString(m.Text) > maxBodyRunes {
		m.Text = string([]rune(m.Text)[:maxBodyRunes])
	}
	m.Subject = clean(m.Subject)
	m.MessageID = clean(m.MessageID)
	if m.MessageID == "" || len(m.MessageID) > 900 {
		sum := sha256.Sum256(raw)
		m.MessageID = "deskgate." + hex.EncodeToString(sum[:16]) + "@" + hostname
		m.MessageIDGenerated = true
	}
	m.InReplyTo = clean(m.InReplyTo)
	refs := m.References[:0]
	for _, r := range m.References {
		if r = clean(r); r != "" && len(r) <= 900 {
			refs = append(refs, r)
		}
	}
	m.References = refs
}

// parseFallback handles mail whose header go-message refuses.
func parseFallback(raw []byte, hostname string, cause error) (*Message, error) {
	mm, err := mail.ReadMessage(bytes.NewReader(raw))
	m := &Message{Header: map[string]string{}}
	if err != nil {
		// Not even the standard library finds a header: keep the whole as text.
		switch n, line := badHeaderLine(raw); {
		case n == 1:
			m.problem(fmt.Sprintf("no header: the first line is not a header field (%s), so all of it is read as text", line))
		case n > 1:
			m.problem(fmt.Sprintf("header: line %d is not a header field (%s), so all of it is read as text", n, line))
		default:
			m.problem(headerProblem(cause) + ", so all of it is read as text")
		}
		m.Text = string(raw)
		m.finish(raw, hostname)
		return m, nil
	}
	m.problem(headerProblem(cause))
	h := gmail.HeaderFromMap(mm.Header)
	m.readHeader(h)
	body, err := io.ReadAll(io.LimitReader(mm.Body, 4*maxBodyRunes))
	if err != nil {
		m.problem("body: " + err.Error())
	}
	m.Text = string(body)
	m.finish(raw, hostname)
	return m, nil
}

// headerProblem says plainly what go-message found wrong with a header it refused.
func headerProblem(err error) string {
	s := err.Error()
	if line, ok := strings.CutPrefix(s, "message: malformed MIME header line: "); ok {
		return fmt.Sprintf("header: a line is not a header field (%s)", quoteLine(line))
	}
	return named("header", err)
}

// badHeaderLine finds the first line of the header block that is neither a field ("Name:")
// nor the continuation of one, counting from 1, and quotes it.
func badHeaderLine(raw []byte) (int, string) {
	rest := string(raw[:min(len(raw), MaxHeaderBytes)])
	for n := 1; rest != ""; n++ {
		line, next, _ := strings.Cut(rest, "\n")
		line = strings.TrimRight(line, "\r")
		if line == "" {
			break
		}
		if !isFieldLine(line) && !(n > 1 && (line[0] == ' ' || line[0] == '\t')) {
			return n, quoteLine(line)
		}
		rest = next
	}
	return 0, ""
}

// isFieldLine reports whether line starts a header field: a name of printable ASCII other
// than ':' (RFC 5322 2.2), then ':'.
func isFieldLine(line string) bool {
	name, _, ok := strings.Cut(line, ":")
	if !ok || name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		if name[i] < 33 || name[i] > 126 {
			return false
		}
	}
	return true
}

// quoteLine quotes the start of a line of the sender's, for a problem's text.
func quoteLine(line string) string {
	line = strings.TrimRight(line, "\r\n")
	if r := []rune(strings.ToValidUTF8(line, "\uFFFD")); len(r) > 40 {
		line = string(r[:40]) + "…"
	}
	return strconv.Quote(line)
}
