package relay

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/deskgate/deskgate/config"
	"github.com/deskgate/deskgate/gateway/addr"
	"github.com/deskgate/deskgate/gateway/model"
	"github.com/deskgate/deskgate/store"
)

// A copy as compose writes it for a ticket whose requester and a CC have non-ASCII
// addresses: raw UTF-8 in the addresses, names and subject in encoded words.
const utf8Copy = "Date: Tue, 24 Nov 2026 10:00:00 +0000\r\n" +
	"From: \"Alice via Example Support\" <support@example.com>\r\n" +
	"Reply-To: \"Example Support\" <support+7-abc@example.com>\r\n" +
	"To: =?utf-8?q?J=C3=B6e?= <jöe@bücher.test>\r\n" +
	"Cc: =?utf-8?q?Zo=C3=AB?= <zoë@例え.テスト>, \"Kim\" <kim@bücher.test>, <a@customer.test>\r\n" +
	"Subject: =?utf-8?q?Re:_Gr=C3=BC=C3=9Fe_[#7-abc]?=\r\n" +
	"Message-Id: <0190aa@mx.test>\r\n" +
	"X-Loop: support@example.com\r\n" +
	"Mime-Version: 1.0\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"Content-Transfer-Encoding: quoted-printable\r\n" +
	"\r\n" +
	"Gr=C3=BC=C3=9Fe\r\n"

// queueMsg stores a delivery of msg to rcpts (canonical addresses) and returns its id.
func queueMsg(t *testing.T, st *store.Store, msg string, rcpts ...string) uint64 {
	t.Helper()
	var id uint64
	err := st.Update(context.Background(), func(tx *store.Tx) error {
		tk := &model.Ticket{Subject: "s", Status: "open"}
		if err := tx.CreateTicket(tk); err != nil {
			return err
		}
		id = st.NewIds().Delivery()
		d := &store.Delivery{ID: id, TicketID: tk.ID, From: "support+bounce-1-x@example.com", State: model.DeliveryQueued, CreatedAt: time.Now()}
		for _, r := range rcpts {
			d.Recipients = append(d.Recipients, model.DeliveryRecipient{Email: r, As: "cc", Visible: true, State: model.DeliveryQueued})
		}
		return tx.QueueDelivery(d, []byte(msg))
	})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func states(d *store.Delivery) map[string]model.DeliveryRecipient {
	out := map[string]model.DeliveryRecipient{}
	for _, r := range d.Recipients {
		out[r.Email] = r
	}
	return out
}

func headOf(data []byte) string { return string(data[:headerEnd(data)]) }

// SMTPUTF8 goes on MAIL exactly when the delivery needs it and the upstream offers it; a
// seven-bit delivery goes as it always did, whatever the upstream offers.
func TestSMTPUTF8OnlyWhenNeededAndOffered(t *testing.T) {
	ascii := "From: Support <support@example.com>\r\nTo: a@customer.test\r\nSubject: hello\r\nMessage-Id: <x@y>\r\n\r\nbody\r\n"
	for _, c := range []struct {
		name    string
		offered bool
		msg     string
		rcpts   []string
		want    bool
	}{
		{"seven bits, offered", true, ascii, []string{"a@customer.test"}, false},
		{"seven bits, not offered", false, ascii, []string{"a@customer.test"}, false},
		{"UTF-8 recipient", true, utf8Copy, []string{"jöe@bücher.test", "a@customer.test"}, true},
		// The envelope is ASCII, a header is not: still an internationalised message.
		{"UTF-8 header only", true, utf8Copy, []string{"a@customer.test"}, true},
	} {
		up := &upstreamServer{utf8: c.offered, dsn: true}
		w, st := newWorker(t, testConfig(t, serve(t, up), nil))
		id := queueMsg(t, st, c.msg, c.rcpts...)
		w.RunOnce(context.Background())
		if d := delivery(t, st, id); d.State != "sent" {
			t.Fatalf("%s: delivery %s (%q)", c.name, d.State, d.LastReply)
		}
		up.mu.Lock()
		if len(up.mails) != 1 || up.mails[0] != c.want || len(up.got) != 1 {
			t.Errorf("%s: MAIL with SMTPUTF8: %v, want [%v]", c.name, up.mails, c.want)
		} else if strings.Join(up.got[0].rcpts, " ") != strings.Join(c.rcpts, " ") || string(up.got[0].data) != c.msg {
			t.Errorf("%s: the upstream got %q and\n%s", c.name, up.got[0].rcpts, up.got[0].data)
		}
		// RFC 6533: a UTF-8 recipient's ORCPT has the utf-8 type, an ASCII one rfc822.
		if strings.Join(up.orcpts, " ") != strings.Join(c.rcpts, " ") {
			t.Errorf("%s: ORCPTs %q", c.name, up.orcpts)
		}
		if c.rcpts[0] == "jöe@bücher.test" && strings.Join(up.types, " ") != "UTF-8 RFC822" {
			t.Errorf("%s: ORCPT types %q", c.name, up.types)
		}
		up.mu.Unlock()
	}
}

// The utf-8-addr-xtext of RFC 6533 leaves printable ASCII but "+", "=" and "\" alone.
func TestUTF8AddrXtext(t *testing.T) {
	if got := utf8AddrXtext(`jöe+x=y\z@例え.test`); got != `j\x{F6}e\x{2B}x\x{3D}y\x{5C}z@\x{4F8B}\x{3048}.test` {
		t.Errorf("got %s", got)
	}
}

// An upstream without SMTPUTF8: the recipients that have an ASCII form get a copy with a
// seven-bit header in one transaction that has no 8-bit byte anywhere, and the recipient
// whose local part is not ASCII fails at once, with the reason.
func TestWithoutSMTPUTF8TheHeaderIsDowngradedAndUTF8LocalPartsFail(t *testing.T) {
	up := &upstreamServer{dsn: true}
	w, st := newWorker(t, testConfig(t, serve(t, up), nil))
	id := queueMsg(t, st, utf8Copy, "jöe@bücher.test", "kim@bücher.test", "a@customer.test")
	w.RunOnce(context.Background())
	d := delivery(t, st, id)
	got := states(d)
	joe := got["jöe@bücher.test"]
	if joe.State != "failed" || !strings.HasPrefix(joe.Reply, "553 5.6.7 ") || !strings.Contains(joe.Reply, "does not offer SMTPUTF8") ||
		!strings.Contains(joe.Reply, "jöe@bücher.test cannot be written in ASCII") {
		t.Errorf("the UTF-8 recipient: %s %q", joe.State, joe.Reply)
	}
	if got["kim@bücher.test"].State != "sent" || got["a@customer.test"].State != "sent" {
		t.Errorf("the ASCII recipients: %+v", got)
	}
	up.mu.Lock()
	defer up.mu.Unlock()
	if len(up.got) != 1 || len(up.mails) != 1 || up.mails[0] {
		t.Fatalf("transactions %d, MAIL SMTPUTF8 %v", len(up.got), up.mails)
	}
	tx := up.got[0]
	if strings.Join(tx.rcpts, " ") != "kim@xn--bcher-kva.test a@customer.test" || strings.Join(up.orcpts, " ") != "kim@xn--bcher-kva.test a@customer.test" {
		t.Errorf("RCPTs %q ORCPTs %q, want the IDN domain in A-labels", tx.rcpts, up.orcpts)
	}
	head := headOf(tx.data)
	if !addr.IsASCII(head) {
		t.Fatalf("an 8-bit header went to an upstream without SMTPUTF8:\n%s", head)
	}
	m, err := mail.ReadMessage(bytes.NewReader(tx.data))
	if err != nil {
		t.Fatal(err)
	}
	// The requester's address has no ASCII form: To shows it as an empty group.
	if shown, _ := wordDecoder.DecodeHeader(m.Header.Get("To")); shown != "Jöe <jöe@bücher.test>:;" {
		t.Errorf("To: %q shows %q", m.Header.Get("To"), shown)
	}
	cc, err := goHeader(m.Header).AddressList("Cc")
	if err != nil || len(cc) != 2 || cc[0].Address != "kim@xn--bcher-kva.test" || cc[1].Address != "a@customer.test" {
		t.Errorf("Cc %q: %v %v", m.Header.Get("Cc"), cc, err)
	}
	if shown, _ := wordDecoder.DecodeHeader(m.Header.Get("Cc")); !strings.Contains(shown, "Zoë <zoë@例え.テスト>:;") {
		t.Errorf("Cc shows %q", shown)
	}
	if m.Header.Get("Message-Id") != "<0190aa@mx.test>" || m.Header.Get("Reply-To") != `"Example Support" <support+7-abc@example.com>` {
		t.Errorf("deskgate's own fields changed: %q %q", m.Header.Get("Message-Id"), m.Header.Get("Reply-To"))
	}
}

// When nobody is left to send to, no transaction is opened at all.
func TestWithoutSMTPUTF8OnlyUTF8RecipientsSendsNothing(t *testing.T) {
	up := &upstreamServer{}
	w, st := newWorker(t, testConfig(t, serve(t, up), nil))
	id := queueMsg(t, st, utf8Copy, "jöe@bücher.test", "zoë@例え.テスト")
	w.RunOnce(context.Background())
	if d := delivery(t, st, id); d.State != "failed" || !strings.Contains(d.LastReply, "does not offer SMTPUTF8") {
		t.Errorf("delivery %s %q", d.State, d.LastReply)
	}
	up.mu.Lock()
	defer up.mu.Unlock()
	if len(up.mails) != 0 || len(up.got) != 0 {
		t.Errorf("a transaction for nobody: MAIL %v, messages %d", up.mails, len(up.got))
	}
}

func ed25519Key(t *testing.T) (file, txt string) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	file = filepath.Join(t.TempDir(), "ed.key")
	os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	return file, "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)
}

// The DKIM signature covers the header as sent: downgraded for an upstream without
// SMTPUTF8, in UTF-8 for one with it; both verify.
func TestDKIMSignsTheHeaderAsSent(t *testing.T) {
	file, txt := ed25519Key(t)
	for _, offered := range []bool{false, true} {
		up := &upstreamServer{utf8: offered}
		w, st := newWorker(t, testConfig(t, serve(t, up), func(c *config.Config) {
			c.DKIM = config.DKIM{Domain: "example.com", Selector: "ed", PrivateKeyFile: file}
		}))
		queueMsg(t, st, utf8Copy, "kim@bücher.test")
		w.RunOnce(context.Background())
		up.mu.Lock()
		if len(up.got) != 1 {
			up.mu.Unlock()
			t.Fatalf("SMTPUTF8 %v: %d messages", offered, len(up.got))
		}
		data := up.got[0].data
		up.mu.Unlock()
		if addr.IsASCII(headOf(data)) == offered {
			t.Errorf("SMTPUTF8 %v: header sent:\n%s", offered, headOf(data))
		}
		vs, err := dkim.VerifyWithOptions(bytes.NewReader(data), &dkim.VerifyOptions{LookupTXT: func(string) ([]string, error) { return []string{txt}, nil }})
		if err != nil || len(vs) != 1 || vs[0].Err != nil {
			t.Fatalf("SMTPUTF8 %v: DKIM of the message as sent: %v %+v\n%s", offered, err, vs, data)
		}
		if h := strings.Join(vs[0].HeaderKeys, ":"); !strings.Contains(h, "To") || !strings.Contains(h, "Cc") {
			t.Errorf("SMTPUTF8 %v: signed fields %s", offered, h)
		}
	}
}

// The Maildir upstream takes UTF-8 as it is: no downgrade, every recipient delivered.
func TestMaildirTakesUTF8AsItIs(t *testing.T) {
	dir := t.TempDir()
	w, st := newWorker(t, testConfig(t, config.MaildirPrefix+dir, nil))
	id := queueMsg(t, st, utf8Copy, "jöe@bücher.test", "a@customer.test")
	w.RunOnce(context.Background())
	if d := delivery(t, st, id); d.State != "sent" {
		t.Fatalf("delivery %s %q", d.State, d.LastReply)
	}
	files, _ := os.ReadDir(filepath.Join(dir, "new"))
	if len(files) != 2 {
		t.Fatalf("%d files", len(files))
	}
	var delivered []string
	for _, f := range files {
		b, _ := os.ReadFile(filepath.Join(dir, "new", f.Name()))
		if !bytes.HasSuffix(b, []byte(utf8Copy)) {
			t.Errorf("the copy changed on the way:\n%s", b)
		}
		m, _ := mail.ReadMessage(bytes.NewReader(b))
		delivered = append(delivered, m.Header.Get("Delivered-To"))
	}
	if !strings.Contains(strings.Join(delivered, " "), "jöe@bücher.test") {
		t.Errorf("Delivered-To %q", delivered)
	}
}

// An envelope sender that needs UTF-8 (deskgate's own are ASCII, but a configured one might
// not be): in A-labels without SMTPUTF8 when it can be, else every recipient fails with why.
func TestPlanEnvelopeSenderWithoutSMTPUTF8(t *testing.T) {
	tr, errs := plan("bounce@bücher.test", []string{"a@customer.test"}, []byte("Subject: x\r\n\r\nx\r\n"), false, "up:25")
	if tr.from != "bounce@xn--bcher-kva.test" || tr.utf8 || errs[0] != nil || len(tr.rcpts) != 1 {
		t.Errorf("IDN sender: %+v %v", tr, errs)
	}
	tr, errs = plan("bounce@bücher.test", []string{"a@customer.test"}, []byte("Subject: x\r\n\r\nx\r\n"), true, "up:25")
	if tr.from != "bounce@bücher.test" || !tr.utf8 || errs[0] != nil {
		t.Errorf("IDN sender with SMTPUTF8: %+v %v", tr, errs)
	}
	tr, errs = plan("bøunce@example.com", []string{"a@customer.test", "b@customer.test"}, []byte("Subject: x\r\n\r\nx\r\n"), false, "up:25")
	if len(tr.rcpts) != 0 || !permanent(errs[0]) || !permanent(errs[1]) || !strings.Contains(replyText(errs[1]), "envelope sender bøunce@example.com cannot be written in ASCII") {
		t.Errorf("UTF-8 sender: %+v %v", tr, errs)
	}
}
