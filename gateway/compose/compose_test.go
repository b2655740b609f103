package compose

import (
	"bytes"
	"io"
	"net/mail"
	"strings"
	"testing"
	"time"

	gomail "github.com/emersion/go-message/mail"

	"github.com/deskgate/deskgate/gateway/addr"
	"github.com/deskgate/deskgate/gateway/model"
	"github.com/deskgate/deskgate/gateway/rules"
)

var book = addr.NewBook([]byte("secret-secret-secret-secret-0001"), []string{"support@example.com"})

func testEnv() rules.Env {
	return rules.Env{Agents: map[string]model.Role{"alice@example.com": model.RoleAgent, "dana@example.com": model.RoleAgent},
		AgentNames: map[string]string{"alice@example.com": "Alice", "dana@example.com": "Dana"}}
}

func testTicket() *model.Ticket {
	return &model.Ticket{ID: 7, Subject: "Printer on fire", Support: "support@example.com", RootMessageID: "root@customer.test",
		Requester: model.Person{Email: "jane@customer.test", Name: "Jane"},
		CCs:       []model.Person{{Email: "joe@customer.test", Name: "Joe"}, {Email: "dana@example.com", Name: "Dana"}},
		Followers: []model.Person{{Email: "carol@example.com", Name: "Carol"}},
		Masks:     map[string]int{"jane@customer.test": 1, "joe@customer.test": 2, "dana@example.com": 3, "carol@example.com": 4}}
}

func build(t *testing.T, copyKind model.Copy, mod func(*Input)) (*mail.Message, string) {
	t.Helper()
	in := Input{Hostname: "mx.test", SupportName: "Example Support", Book: book, Env: testEnv(), Ticket: testTicket(),
		Kind: model.KindComment, Copy: copyKind, AuthorName: "Alice", Body: "Please unplug it.",
		MessageID: NewMessageID(nil, time.Now(), "mx.test"), InReplyTo: "root@customer.test", References: []string{"root@customer.test"},
		Date: time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)}
	if mod != nil {
		mod(&in)
	}
	raw, err := Message(in)
	if err != nil {
		t.Fatal(err)
	}
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("not RFC 5322: %v\n%s", err, raw)
	}
	return m, string(raw)
}

func TestH1_Headers(t *testing.T) {
	m, raw := build(t, model.CopyEndUser, nil)
	from, _ := mail.ParseAddress(m.Header.Get("From"))
	if from.Address != "support@example.com" || from.Name != "Alice via Example Support" {
		t.Errorf("From = %q", m.Header.Get("From"))
	}
	replyTo, _ := mail.ParseAddress(m.Header.Get("Reply-To"))
	if replyTo.Address != book.ReplyAddress("support@example.com", 7) {
		t.Errorf("Reply-To = %q", m.Header.Get("Reply-To"))
	}
	if id := m.Header.Get("Message-Id"); len(id) < 30 || !strings.HasSuffix(id, "@mx.test>") {
		t.Errorf("Message-ID = %q, want a long random id", id)
	}
	if m.Header.Get("In-Reply-To") != "<root@customer.test>" || !strings.Contains(m.Header.Get("References"), "<root@customer.test>") {
		t.Errorf("threading headers: %q %q", m.Header.Get("In-Reply-To"), m.Header.Get("References"))
	}
	if m.Header.Get("Auto-Submitted") != "" {
		t.Error("a person's reply marked automatic")
	}
	tag := book.Tag(7)
	body, _ := io.ReadAll(m.Body)
	if !strings.Contains(m.Header.Get("Subject"), tag) || !strings.Contains(string(body), tag) {
		t.Errorf("tag %s missing in subject %q or body", tag, m.Header.Get("Subject"))
	}
	if strings.Contains(raw, "alice@example.com") {
		t.Error("the agent's own address is in the message")
	}
	auto, _ := build(t, model.CopyEndUser, func(in *Input) { in.Kind, in.Automatic = model.KindSolved, true })
	if auto.Header.Get("Auto-Submitted") != "auto-generated" {
		t.Error("automatic mail lacks Auto-Submitted")
	}
	now := time.Now()
	if a, b := NewMessageID(nil, now, "h"), NewMessageID(nil, now, "h"); a == b {
		t.Error("Message-IDs repeat")
	}
	// Later ids sort after earlier ones, so that the Message-ID index grows at one end.
	if a, b := NewMessageID(nil, now, "h"), NewMessageID(nil, now.Add(time.Millisecond), "h"); a >= b {
		t.Errorf("Message-ID %s made later sorts before %s", b, a)
	}
}

func TestH2_EndUserCopyShowsRealAddressesAndMasksAgents(t *testing.T) {
	m, raw := build(t, model.CopyEndUser, nil)
	to, _ := mail.ParseAddress(m.Header.Get("To"))
	if to.Address != "jane@customer.test" {
		t.Errorf("To = %q", m.Header.Get("To"))
	}
	cc, _ := mail.ParseAddressList(m.Header.Get("Cc"))
	if len(cc) != 2 || cc[0].Address != "joe@customer.test" || cc[1].Address != book.MaskedAddress("support@example.com", 7, 3) {
		t.Errorf("Cc = %q: end users by real address, the agent CC masked", m.Header.Get("Cc"))
	}
	if strings.Contains(raw, "carol@example.com") || strings.Contains(raw, "dana@example.com") {
		t.Error("an agent's address reached an end user's copy")
	}
}

func TestH3_AgentCopyMasksEveryone(t *testing.T) {
	m, raw := build(t, model.CopyAgent, func(in *Input) { in.Internal = true })
	to, _ := mail.ParseAddress(m.Header.Get("To"))
	if to.Address != book.MaskedAddress("support@example.com", 7, 1) || to.Name != "Jane" {
		t.Errorf("To = %q", m.Header.Get("To"))
	}
	for _, real := range []string{"jane@customer.test", "joe@customer.test", "carol@example.com"} {
		if strings.Contains(raw, real) {
			t.Errorf("%s shown in an agent's copy", real)
		}
	}
	p, ok := book.Classify(to.Address)
	if !ok || p.Kind != addr.Masked || p.ID != 7 || p.Participant != 1 || !book.ValidTicketToken(7, p.Token) {
		t.Errorf("masked address does not come back to ticket 7: %+v", p)
	}
	if !strings.Contains(m.Header.Get("Subject"), "Internal note") {
		t.Errorf("internal note subject %q", m.Header.Get("Subject"))
	}
}

func TestC4_HistoryInBody(t *testing.T) {
	hist := []model.Comment{{Author: "jane@customer.test", AuthorName: "Jane", Body: "It is burning.", Public: true},
		{Author: "alice@example.com", Body: "On it.", Public: true}}
	_, raw := build(t, model.CopyEndUser, func(in *Input) { in.History = hist })
	if !strings.Contains(raw, "> It is burning.") || !strings.Contains(raw, "> On it.") || strings.Contains(raw, "alice@example.com") {
		t.Errorf("history:\n%s", raw)
	}
}

func TestN6_AttachmentsAreSent(t *testing.T) {
	_, raw := build(t, model.CopyEndUser, func(in *Input) {
		in.Files = []File{{Name: "invoice.pdf", ContentType: "application/pdf", Data: []byte("%PDF-1.4 data")}}
	})
	mr, err := gomail.CreateReader(strings.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for {
		p, err := mr.NextPart()
		if err != nil {
			break
		}
		if h, ok := p.Header.(*gomail.AttachmentHeader); ok {
			name, _ := h.Filename()
			data, _ := io.ReadAll(p.Body)
			found = name == "invoice.pdf" && string(data) == "%PDF-1.4 data"
		}
	}
	if !found {
		t.Fatalf("attachment missing:\n%s", raw)
	}
}

// An attachment that arrived damaged (M1) is not passed on as if whole: the copy says that
// it is not attached, and carries the files that did decode.
func TestM1_DamagedAttachmentIsNotSentAsIfWhole(t *testing.T) {
	_, raw := build(t, model.CopyEndUser, func(in *Input) {
		in.Files = []File{{Name: "x.pdf", ContentType: "application/pdf", Data: []byte("%PDF-1"), Damaged: true},
			{Name: "ok.txt", ContentType: "text/plain", Data: []byte("fine")}}
	})
	mr, err := gomail.CreateReader(strings.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	var text string
	for {
		p, err := mr.NextPart()
		if err != nil {
			break
		}
		data, _ := io.ReadAll(p.Body)
		switch h := p.Header.(type) {
		case *gomail.AttachmentHeader:
			name, _ := h.Filename()
			names = append(names, name)
		case *gomail.InlineHeader:
			text += string(data)
		}
	}
	if strings.Join(names, ",") != "ok.txt" {
		t.Errorf("attached %v, want only ok.txt", names)
	}
	if !strings.Contains(text, "x.pdf") || !strings.Contains(text, "not attached") {
		t.Errorf("the text does not say that x.pdf is not attached:\n%s", text)
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, io.ErrUnexpectedEOF }

// A random source that fails must not make every Message-ID the same.
func TestMessageIDsStayUniqueWhenTheRandomSourceFails(t *testing.T) {
	a, b := NewMessageID(failingReader{}, time.Now(), "mx.test"), NewMessageID(failingReader{}, time.Now(), "mx.test")
	if a == b || strings.HasPrefix(a, "000000") {
		t.Errorf("ids %s and %s", a, b)
	}
}

// Internationalised participants: raw UTF-8 appears only in the addresses of To and Cc (what
// SMTPUTF8 carries, and what the relay rewrites for an upstream without it); names and the
// subject are RFC 2047 encoded words, the body quoted-printable, a file name RFC 2231, and
// deskgate's own addresses ASCII. An agent's copy, where everyone is masked, is all ASCII.
func TestUTF8OnlyInAddressFields(t *testing.T) {
	utf8Ticket := func(in *Input) {
		in.SupportName = "Support für Kunden"
		in.AuthorName = "Zoë"
		in.Body = "Grüße, 例え"
		in.Ticket.Subject = "Drucker brennt – schnell!"
		in.Ticket.Requester = model.Person{Email: "jöe@bücher.test", Name: "Jöe Müller"}
		in.Ticket.CCs = []model.Person{{Email: "zoë@例え.テスト", Name: "Zoë, die Zweite"}, {Email: "kim@bücher.test"}, {Email: "dana@example.com", Name: "Dana"}}
		in.Ticket.Masks = map[string]int{"jöe@bücher.test": 1, "zoë@例え.テスト": 2, "kim@bücher.test": 5, "dana@example.com": 3}
		in.History = []model.Comment{{Author: "jöe@bücher.test", AuthorName: "Jöe Müller", Body: "Es brennt.", Public: true}}
		in.Files = []File{{Name: "Rechnung-März.pdf", ContentType: "application/pdf", Data: []byte("%PDF")}}
	}
	m, raw := build(t, model.CopyEndUser, utf8Ticket)
	field := ""
	for _, line := range strings.Split(raw, "\r\n") {
		if line == "" {
			field = "body" // the top header has ended; part headers and bodies follow
			continue
		}
		if field != "body" && line[0] != ' ' && line[0] != '\t' {
			field = strings.ToLower(line[:strings.IndexByte(line, ':')])
		}
		if !addr.IsASCII(line) && field != "to" && field != "cc" {
			t.Errorf("raw UTF-8 outside an address field (%s): %q", field, line)
		}
	}
	to, err := gomail.ParseAddress(m.Header.Get("To"))
	if err != nil || to.Address != "jöe@bücher.test" || to.Name != "Jöe Müller" {
		t.Errorf("To %q: %v %v", m.Header.Get("To"), to, err)
	}
	cc, err := gomail.ParseAddressList(m.Header.Get("Cc"))
	if err != nil || len(cc) != 3 || cc[0].Address != "zoë@例え.テスト" || cc[0].Name != "Zoë, die Zweite" || cc[1].Address != "kim@bücher.test" {
		t.Errorf("Cc %q: %v %v", m.Header.Get("Cc"), cc, err)
	}
	for _, f := range []string{"From", "Reply-To", "X-Loop", "Message-Id", "Subject"} {
		if v := m.Header.Get(f); v == "" || !addr.IsASCII(v) {
			t.Errorf("%s: %q", f, v)
		}
	}
	if _, raw := build(t, model.CopyAgent, utf8Ticket); !addr.IsASCII(raw) {
		t.Errorf("an agent's copy with every participant masked is not ASCII:\n%s", raw)
	}
}
