package relay

import (
	"bytes"
	"fmt"
	"mime"
	"net/mail"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message"

	"github.com/deskgate/deskgate/gateway/addr"
)

// addressFields are the header fields whose value is an address list (RFC 5322 3.6.2, 3.6.3,
// 3.6.6, and the common extensions): their non-ASCII addresses are rewritten one by one.
var addressFields = map[string]bool{
	"from": true, "sender": true, "reply-to": true, "to": true, "cc": true, "bcc": true,
	"resent-from": true, "resent-sender": true, "resent-to": true, "resent-cc": true, "resent-bcc": true,
	"resent-reply-to": true, "return-path": true, "delivered-to": true, "x-original-to": true,
	"disposition-notification-to": true, "return-receipt-to": true, "errors-to": true,
	"mail-followup-to": true, "mail-reply-to": true,
}

// msgIDFields hold lists of msg-ids (RFC 5322 3.6.4), where encoded words are not allowed.
var msgIDFields = map[string]bool{"message-id": true, "in-reply-to": true, "references": true, "resent-message-id": true}

// mediaFields carry MIME parameters, which RFC 2231 (not RFC 2047) encodes.
var mediaFields = map[string]bool{"content-type": true, "content-disposition": true}

// Downgrade7Bit is msg with its header in seven bits, for an upstream that lacks SMTPUTF8,
// in the manner of RFC 6857: a field that is ASCII is kept byte for byte; in an address field
// each address that has an ASCII form (addr.ASCIIForm: an IDN domain in A-labels) is written
// in it with its display name in RFC 2047 encoded words, and one that has none (a non-ASCII
// local part) becomes an empty group whose display name is the encoded words of
// "Name <address>" (RFC 6857 3.1.10), so that the reader still sees who it was; MIME
// parameters are written as RFC 2231 says; every other field with non-ASCII text is encoded
// as unstructured text. The body is left as it is: compose writes it in quoted-printable or
// base64. On a header that is ASCII already, the result is msg itself.
func Downgrade7Bit(msg []byte) []byte {
	end := headerEnd(msg)
	if addr.IsASCII(msg[:end]) {
		return msg
	}
	out := make([]byte, 0, len(msg)+len(msg[:end])/2)
	for _, f := range splitFields(msg[:end]) {
		if addr.IsASCII(f) {
			out = append(out, f...)
			continue
		}
		out = append(out, downgradeField(f)...)
	}
	return append(out, msg[end:]...)
}

// headerEnd is where the header of msg ends: after the line break that ends its last field,
// so that msg[end:] is the blank line and the body (or nothing).
func headerEnd(msg []byte) int {
	if bytes.HasPrefix(msg, []byte("\r\n")) || bytes.HasPrefix(msg, []byte("\n")) {
		return 0
	}
	// One pass over the header only: every delivery asks this (needsUTF8), and a search for
	// each kind of blank line ran through the whole body, attachments and all, whenever the
	// message had only the other kind.
	for i := 0; ; {
		nl := bytes.IndexByte(msg[i:], '\n')
		if nl < 0 {
			return len(msg)
		}
		i += nl + 1
		if rest := msg[i:]; len(rest) > 0 && rest[0] == '\n' || len(rest) > 1 && rest[0] == '\r' && rest[1] == '\n' {
			return i
		}
	}
}

// splitFields cuts a header into its fields, each with its continuation lines and line
// breaks, so that joining them gives the header back.
func splitFields(head []byte) [][]byte {
	var fields [][]byte
	start := 0
	for i := 0; i < len(head); {
		nl := bytes.IndexByte(head[i:], '\n')
		next := len(head)
		if nl >= 0 {
			next = i + nl + 1
		}
		if next < len(head) && (head[next] == ' ' || head[next] == '\t') {
			i = next
			continue
		}
		fields = append(fields, head[start:next])
		start, i = next, next
	}
	return fields
}

// downgradeField rewrites one field that has non-ASCII bytes.
func downgradeField(f []byte) []byte {
	colon := bytes.IndexByte(f, ':')
	name := ""
	if colon > 0 {
		name = string(f[:colon])
	}
	if colon <= 0 || !isFieldName(name) {
		// Not a field at all: what is not ASCII in it cannot be kept, so it is marked.
		return []byte(toASCII(strings.TrimRight(string(f), "\r\n")) + "\r\n")
	}
	value := unfold(string(f[colon+1:]))
	value = strings.ToValidUTF8(value, "\uFFFD")
	lower := strings.ToLower(name)
	var out string
	switch {
	case msgIDFields[lower]:
		ids := asciiMsgIDs(value)
		if ids == "" {
			return nil
		}
		out = ids
	case addressFields[lower]:
		out = downgradeAddresses(value)
	case mediaFields[lower]:
		out = downgradeMedia(value)
	default:
		out = encodeWords(value, false)
	}
	return []byte(fold(name, out))
}

// asciiMsgIDs keeps the msg-ids of value that are ASCII. An id in UTF-8 (one a customer's
// client made at an internationalised domain) cannot be written in seven bits, and encoded
// words in its place would be no id at all; deskgate's own ids, which thread its copies,
// are ASCII. "" when none is left, and the field is dropped.
func asciiMsgIDs(value string) string {
	var kept []string
	for id := range addr.Bracketed(value) {
		if addr.IsASCII(id) && !strings.ContainsAny(id, " \t\r\n") {
			kept = append(kept, id)
		}
	}
	return strings.Join(kept, " ")
}

func isFieldName(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return s != ""
}

// unfold joins a field's lines and trims the space around its value.
func unfold(s string) string {
	s = strings.NewReplacer("\r\n", "", "\n", "", "\r", "").Replace(s)
	return strings.TrimSpace(s)
}

// toASCII replaces every non-ASCII byte by a question mark.
func toASCII(s string) string {
	b := []byte(s)
	for i := range b {
		if b[i] >= utf8.RuneSelf {
			b[i] = '?'
		}
	}
	return string(b)
}

var wordDecoder = &mime.WordDecoder{CharsetReader: message.CharsetReader}

// downgradeAddresses rewrites an address list. A list that does not parse is shown whole as
// one empty group, which every reader parses and shows.
func downgradeAddresses(value string) string {
	list, err := (&mail.AddressParser{WordDecoder: wordDecoder}).ParseList(value)
	if err != nil || len(list) == 0 {
		return encodeWords(value, true) + ":;"
	}
	parts := make([]string, len(list))
	for i, a := range list {
		parts[i] = downgradeAddress(a)
	}
	return strings.Join(parts, ", ")
}

func downgradeAddress(a *mail.Address) string {
	if ascii, ok := addr.ASCIIForm(a.Address); ok && addr.IsASCII(ascii) {
		spec := (&mail.Address{Address: ascii}).String()
		switch {
		case a.Name == "":
			return spec
		case addr.IsASCII(a.Name) && printable(a.Name):
			return (&mail.Address{Name: a.Name, Address: ascii}).String()
		}
		return encodeWords(a.Name, true) + " " + spec
	}
	shown := a.Address
	if a.Name != "" {
		shown = a.Name + " <" + a.Address + ">"
	}
	return encodeWords(shown, true) + ":;"
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if (s[i] < ' ' && s[i] != '\t') || s[i] == 0x7f {
			return false
		}
	}
	return true
}

// downgradeMedia rewrites a Content-Type or Content-Disposition so that its parameters are
// RFC 2231 encoded; one that does not parse is encoded as text, which keeps it visible.
func downgradeMedia(value string) string {
	t, params, err := mime.ParseMediaType(value)
	if err == nil && addr.IsASCII(t) {
		if s := mime.FormatMediaType(t, params); s != "" && addr.IsASCII(s) {
			return s
		}
	}
	return encodeWords(value, false)
}

// maxWordText is how many bytes of text one encoded word carries at most, so that with its
// "=?utf-8?q?" and "?=" and three bytes per encoded byte it stays within the 75 characters of
// RFC 2047 2.
const maxWordText = 63

// encodeWords writes s as RFC 2047 "Q" encoded words in UTF-8, as many as its length needs,
// none cutting a character in two. In a phrase (a display name) only letters, digits and
// "!*+-/" stand for themselves (RFC 2047 5(3)); elsewhere every printable ASCII character
// but "=", "?" and "_" does.
func encodeWords(s string, phrase bool) string {
	var words []string
	var w strings.Builder
	width := 0
	flush := func() {
		if w.Len() > 0 {
			words = append(words, "=?utf-8?q?"+w.String()+"?=")
			w.Reset()
			width = 0
		}
	}
	for _, r := range s {
		var enc strings.Builder
		var buf [utf8.UTFMax]byte
		n := utf8.EncodeRune(buf[:], r)
		for _, c := range buf[:n] {
			switch {
			case c == ' ':
				enc.WriteByte('_')
			case literal(c, phrase):
				enc.WriteByte(c)
			default:
				fmt.Fprintf(&enc, "=%02X", c)
			}
		}
		if width+enc.Len() > maxWordText {
			flush()
		}
		w.WriteString(enc.String())
		width += enc.Len()
	}
	flush()
	if len(words) == 0 {
		return `""`
	}
	return strings.Join(words, " ")
}

func literal(c byte, phrase bool) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	case phrase:
		return strings.IndexByte("!*+-/", c) >= 0
	}
	return c > ' ' && c < 0x7f && c != '=' && c != '?' && c != '_'
}

// fold writes a field with its value, breaking lines between words (encoded words,
// addresses) so that none is longer than 78 characters where it can be helped.
func fold(name, value string) string {
	var b strings.Builder
	b.WriteString(name + ":")
	width := len(name) + 1
	for _, word := range strings.Split(value, " ") {
		if word != "" && width > len(name)+1 && width+1+len(word) > 78 {
			b.WriteString("\r\n")
			width = 0
		}
		b.WriteString(" " + word)
		width += 1 + len(word)
	}
	b.WriteString("\r\n")
	return b.String()
}

// needsUTF8 reports whether a delivery cannot travel in seven bits as it is: a non-ASCII
// envelope address, or a non-ASCII byte in the header (RFC 6531 3.4).
func needsUTF8(from string, rcpts []string, msg []byte) bool {
	if !addr.IsASCII(from) {
		return true
	}
	for _, r := range rcpts {
		if !addr.IsASCII(r) {
			return true
		}
	}
	return !addr.IsASCII(msg[:headerEnd(msg)])
}

// utf8AddrXtext encodes an address for ORCPT=utf-8; as RFC 6533 3 says (utf-8-addr-xtext):
// printable ASCII but "+", "=" and "\" stands for itself, every other character is \x{HEX}.
// It is ASCII, so it travels whatever the next hops speak.
func utf8AddrXtext(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r > ' ' && r < 0x7f && r != '+' && r != '=' && r != '\\' {
			b.WriteRune(r)
		} else {
			fmt.Fprintf(&b, `\x{%02X}`, r)
		}
	}
	return b.String()
}
