package inbound

import (
	"strings"
	"testing"

	"github.com/deskgate/deskgate/gateway/model"
	"github.com/deskgate/deskgate/store"
)

// requesters is the requester of each stored ticket, in order.
func requesters(t *testing.T, srv *Server) []model.Person {
	t.Helper()
	var out []model.Person
	err := srv.desk.Store().View(func(tx *store.Tx) error {
		for id := uint64(1); ; id++ {
			tk, err := tx.Ticket(id)
			if err != nil || tk == nil {
				return nil
			}
			out = append(out, tk.Requester)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// A customer whose address is not ASCII opens a ticket over SMTP and LMTP with SMTPUTF8, in
// raw UTF-8 headers (RFC 6532), and the ticket's requester is the canonical address
// whichever form the client wrote.
func TestSMTPUTF8OpensATicket(t *testing.T) {
	for _, lmtp := range []bool{false, true} {
		srv := testServer(t)
		hello := map[bool]string{false: "EHLO c", true: "LHLO c"}[lmtp]
		out := run(srv, lmtp, hello+"\r\n"+
			"MAIL FROM:<JÖE@XN--BCHER-KVA.TEST> SMTPUTF8 BODY=8BITMIME\r\n"+
			"RCPT TO:<SUPPORT@EXAMPLE.COM>\r\n"+
			"DATA\r\n"+
			"From: Jöe Bäcker <jöe@BÜCHER.test>\r\nTo: support@example.com\r\nSubject: Grüße\r\nMessage-ID: <1@bücher.test>\r\n\r\nHallo\r\n.\r\nQUIT\r\n")
		if !strings.Contains(out, "SMTPUTF8\r\n") {
			t.Errorf("lmtp=%v: SMTPUTF8 not offered: %q", lmtp, out)
		}
		replies := replyLines(out)
		want := []string{"220", "250", "250 2.1.0", "250 2.1.5", "354", "250 2.0.0", "221"}
		if len(replies) != len(want) {
			t.Fatalf("lmtp=%v: replies %q, want %q", lmtp, replies, want)
		}
		for i, w := range want {
			if !strings.HasPrefix(replies[i], w) {
				t.Errorf("lmtp=%v: reply %d %q, want %q", lmtp, i, replies[i], w)
			}
		}
		got := requesters(t, srv)
		if len(got) != 1 || got[0].Email != "jöe@bücher.test" || got[0].Name != "Jöe Bäcker" {
			t.Errorf("lmtp=%v: requesters %+v, want Jöe Bäcker <jöe@bücher.test>", lmtp, got)
		}
	}
}

// A From that is no valid address leaves the envelope sender, canonical, as the author.
func TestInvalidFromFallsBackToTheEnvelopeSender(t *testing.T) {
	srv := testServer(t)
	out := run(srv, false, "EHLO c\r\nMAIL FROM:<Jöe@Bücher.TEST> SMTPUTF8\r\nRCPT TO:<support@example.com>\r\nDATA\r\n"+
		"From: Mallory <jöe@xn--zz.test>\r\nSubject: s\r\n\r\nx\r\n.\r\n")
	if !strings.Contains(out, "250 2.0.0 Ok: queued") {
		t.Fatalf("not accepted: %q", out)
	}
	if got := requesters(t, srv); len(got) != 1 || got[0].Email != "Jöe@bücher.test" {
		t.Errorf("requesters %+v, want the envelope sender Jöe@bücher.test", got)
	}
}
