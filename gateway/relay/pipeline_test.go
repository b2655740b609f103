package relay

import (
	"bufio"
	"io"
	"net"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// scripted runs an upstream that answers each command line the client sends with the next
// reply of script (a reply per command; "354" also reads the message up to its dot), and
// returns the client's session and what the server received.
func scripted(t *testing.T, pipelining bool, script ...string) (*session, <-chan []string) {
	t.Helper()
	client, server := net.Pipe()
	got := make(chan []string, 1)
	go func() {
		defer server.Close()
		r := bufio.NewReader(server)
		var lines []string
		for i := 0; i < len(script); i++ {
			line, err := r.ReadString('\n')
			if err != nil {
				break
			}
			lines = append(lines, strings.TrimRight(line, "\r\n"))
			if script[i] == "" { // drop the connection instead of answering
				break
			}
			io.WriteString(server, script[i]+"\r\n")
			if strings.HasPrefix(script[i], "354") && i+1 < len(script) {
				// The message, up to its dot; the next reply answers it.
				for {
					l, err := r.ReadString('\n')
					if err != nil || l == ".\r\n" {
						break
					}
				}
				lines = append(lines, "<message>")
				i++
				io.WriteString(server, script[i]+"\r\n")
			}
		}
		got <- lines
	}()
	s := &session{raw: client, r: textproto.NewReader(bufio.NewReader(client)), w: bufio.NewWriter(client),
		pipelining: pipelining, timeout: 5 * time.Second}
	t.Cleanup(func() { client.Close() })
	return s, got
}

func code(err error) int {
	if se, ok := err.(*smtp.SMTPError); ok {
		return se.Code
	}
	return 0
}

func TestPipelinedTransactionWithOneRefusedRecipient(t *testing.T) {
	for _, pipelining := range []bool{true, false} {
		s, got := scripted(t, pipelining, "250 2.1.0 ok", "250 2.1.5 ok", "550 5.1.1 no such user", "354 go on", "250 2.0.0 queued")
		errs, usable := s.transact("bounce@example.com", []string{"a@x.test", "b@x.test"}, []byte("Subject: hi\r\n\r\nbody\r\n"), false)
		if errs[0] != nil || code(errs[1]) != 550 || !usable {
			t.Errorf("pipelining=%v: %v usable=%v", pipelining, errs, usable)
		}
		if se, _ := errs[1].(*smtp.SMTPError); se == nil || se.EnhancedCode != (smtp.EnhancedCode{5, 1, 1}) || se.Message != "no such user" {
			t.Errorf("pipelining=%v: the enhanced code is not read: %#v", pipelining, errs[1])
		}
		lines := <-got
		if strings.Join(lines, "|") != "MAIL FROM:<bounce@example.com>|RCPT TO:<a@x.test>|RCPT TO:<b@x.test>|DATA|<message>" {
			t.Errorf("pipelining=%v: the server saw %q", pipelining, lines)
		}
	}
}

func TestRefusedMAILSendsNoRecipientsWithoutPipelining(t *testing.T) {
	s, got := scripted(t, false, "451 4.3.0 try later", "250 2.0.0 reset")
	errs, usable := s.transact("b@example.com", []string{"a@x.test", "c@x.test"}, []byte("x\r\n"), false)
	if code(errs[0]) != 451 || code(errs[1]) != 451 || !usable {
		t.Errorf("errs %v usable %v", errs, usable)
	}
	if lines := <-got; strings.Join(lines, "|") != "MAIL FROM:<b@example.com>|RSET" {
		t.Errorf("the server saw %q", lines)
	}
}

func TestNoRecipientAcceptedSendsNoMessage(t *testing.T) {
	s, got := scripted(t, true, "250 ok", "550 5.1.1 no", "554 5.5.1 no valid recipients", "250 reset")
	errs, usable := s.transact("b@example.com", []string{"a@x.test"}, []byte("x\r\n"), false)
	if code(errs[0]) != 550 || !usable {
		t.Errorf("errs %v usable %v", errs, usable)
	}
	if lines := <-got; strings.Join(lines, "|") != "MAIL FROM:<b@example.com>|RCPT TO:<a@x.test>|DATA|RSET" {
		t.Errorf("the server saw %q", lines)
	}
}

func TestDATAWithoutRecipientsIsLeftUnsent(t *testing.T) {
	s, _ := scripted(t, true, "250 ok", "550 no", "354 go on anyway")
	errs, usable := s.transact("b@example.com", []string{"a@x.test"}, []byte("x\r\n"), false)
	if errs[0] == nil || usable {
		t.Errorf("an upstream that wants a message nobody is to get: errs %v usable %v", errs, usable)
	}
}

func TestConnectionLostMidTransaction(t *testing.T) {
	s, _ := scripted(t, true, "250 ok", "")
	errs, usable := s.transact("b@example.com", []string{"a@x.test", "c@x.test"}, []byte("x\r\n"), false)
	if errs[0] == nil || errs[1] == nil || usable {
		t.Errorf("errs %v usable %v", errs, usable)
	}
}

// FuzzTransact answers a transaction with arbitrary server output: the client neither panics
// nor hangs, and reports one result per recipient, with SMTPUTF8 and ORCPT or without.
func FuzzTransact(f *testing.F) {
	f.Add([]byte("250 ok\r\n250 ok\r\n354 go\r\n250 done\r\n"), true, false)
	f.Add([]byte("250-a\r\n250 b\r\n550 5.1.1 x\r\n554 no\r\n250 rset\r\n"), false, false)
	f.Add([]byte("421 4.4.2 bye\r\n"), true, true)
	f.Add([]byte("250 ok\r\n553 5.6.7 no utf-8\r\n250 ok\r\n354 go\r\n250 done\r\n"), true, true)
	f.Add([]byte("2"), true, false)
	f.Fuzz(func(t *testing.T, output []byte, pipelining, utf8 bool) {
		client, server := net.Pipe()
		defer client.Close()
		go func() {
			defer server.Close()
			go io.Copy(io.Discard, server)
			server.Write(output)
		}()
		s := &session{raw: client, r: textproto.NewReader(bufio.NewReader(client)), w: bufio.NewWriter(client),
			pipelining: pipelining, dsn: utf8, smtputf8: utf8, timeout: 200 * time.Millisecond}
		rcpts := []string{"a@x.test", "c@x.test"}
		if utf8 {
			rcpts[1] = "jöe@bücher.test"
		}
		errs, _ := s.transact("b@example.com", rcpts, []byte("Subject: x\r\n\r\nbody\r\n"), utf8)
		if len(errs) != 2 {
			t.Fatalf("%d results for 2 recipients", len(errs))
		}
	})
}
