package store

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/deskgate/deskgate/gateway/model"
)

func fullComment() model.Comment {
	return model.Comment{ID: 12345, TicketID: 999, Author: "jane@customer.test", AuthorName: "Jane Ü", Public: true, ThirdParty: true, Via: "email",
		MessageID: "a@x", InReplyTo: "b@x", References: []string{"r1@x", "r2@x"}, Subject: "Re: printer",
		To: []model.Person{{Email: "support@example.com"}}, Cc: []model.Person{{Email: "joe@customer.test", Name: "Joe"}}, Recipients: []string{"support@example.com"},
		EnvelopeFrom: "bounce@customer.test", CreatedAt: time.Date(2026, 11, 24, 12, 30, 1, 123456789, time.UTC), Body: "line one\r\nline \"two\" \x00 ✓",
		Attachments:    []model.Attachment{{Name: "a.pdf", ContentType: "application/pdf", Size: 1 << 40}, {Name: "x.pdf", ContentType: "application/pdf", Size: 3, Problem: "illegal base64 data at input byte 4"}},
		Notified:       []model.Notified{{Email: "joe@customer.test", As: "cc", Visible: true, Delivery: 77, Status: "sent", Reply: "250 ok"}, {Email: "alice@example.com", As: "follower", Delivery: 78}},
		Trace:          []model.TraceStep{{Rule: "T2", Step: "threaded", Detail: "In-Reply-To"}, {Rule: "V1", Step: "public"}},
		ReplyToDiffers: true, Automatic: "Auto-Submitted: auto-replied", AuthenticationResults: "mx; spf=pass", Problems: []string{"attachment: bad base64"}}
}

func TestCommentRecordsRoundTrip(t *testing.T) {
	for _, c := range []model.Comment{fullComment(), {ID: 1, Notified: []model.Notified{}}} {
		var got model.Comment
		if err := decodeComment(encodeComment(&c), &got); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, c) {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, c)
		}
	}
}

// Records of the first binary layout, whose attachments have no problem field, are still read.
func TestCommentRecordsV1AreStillRead(t *testing.T) {
	c := fullComment()
	c.Attachments = []model.Attachment{{Name: "a.pdf", ContentType: "application/pdf", Size: 9}}
	with := encodeComment(&c)
	without := c
	without.Attachments = nil
	rest := encodeComment(&without)
	k := 0
	for with[k] == rest[k] {
		k++
	}
	// with is rest with its attachment count replaced by the attachment, whose last byte is
	// the empty problem's length: drop that byte and mark the record as the first layout.
	problemAt := k + len(with) - len(rest)
	v1 := append(append([]byte{commentV1}, with[1:problemAt]...), with[problemAt+1:]...)
	var got model.Comment
	if err := decodeComment(v1, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, c) {
		t.Errorf("V1 record:\n got %+v\nwant %+v", got, c)
	}
}

// Comments written before the binary layout are JSON and still read as they were.
func TestCommentRecordsInJSONAreStillRead(t *testing.T) {
	c := fullComment()
	raw, _ := json.Marshal(c)
	var got model.Comment
	if err := decodeComment(raw, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, c) {
		t.Errorf("JSON record:\n got %+v\nwant %+v", got, c)
	}
}

// A record cut short anywhere is an error, never a panic or a comment made up of the rest.
func TestCommentRecordsCutShortAreRefused(t *testing.T) {
	c := fullComment()
	raw := encodeComment(&c)
	for n := 0; n < len(raw); n++ {
		var got model.Comment
		if err := decodeComment(raw[:n], &got); err == nil {
			t.Fatalf("a record cut to %d of %d bytes decoded without an error", n, len(raw))
		}
	}
}

func FuzzDecodeComment(f *testing.F) {
	c := fullComment()
	f.Add(encodeComment(&c))
	raw, _ := json.Marshal(c)
	f.Add(raw)
	f.Fuzz(func(t *testing.T, raw []byte) {
		var got model.Comment
		if decodeComment(raw, &got) != nil || (raw[0] != commentV1 && raw[0] != commentV2) {
			return // a JSON record only has to decode without a panic
		}
		// Whatever decodes encodes to a record that decodes to the same comment.
		var again model.Comment
		if err := decodeComment(encodeComment(&got), &again); err != nil || !reflect.DeepEqual(again, got) {
			t.Fatalf("re-encoded record: %v\n%+v\n%+v", err, again, got)
		}
	})
}

func fullDelivery() Delivery {
	at := time.Date(2026, 11, 24, 12, 0, 0, 5, time.UTC)
	return Delivery{ID: 9, TicketID: 3, SourceID: 7, Kind: "comment", Copy: "agent", MessageID: "m@x", From: "support+bounce-9-t@example.com",
		Recipients: []model.DeliveryRecipient{{Email: "a@x", As: "cc", Visible: true, State: model.DeliverySent, Reply: "250 ok"}, {Email: "b@x", As: "follower", State: model.DeliveryQueued}},
		State:      model.DeliveryQueued, Attempts: 3, NextTry: at.Add(time.Hour), LastReply: "451 later", CreatedAt: at, Size: 1234}
}

func TestDeliveryRecordsRoundTripAndReadJSON(t *testing.T) {
	d := fullDelivery()
	var got Delivery
	if err := decodeDelivery(encodeDelivery(&d), &got); err != nil || !reflect.DeepEqual(got, d) {
		t.Fatalf("round trip: %v\n got %+v\nwant %+v", err, got, d)
	}
	raw, _ := json.Marshal(d)
	got = Delivery{}
	if err := decodeDelivery(raw, &got); err != nil || !reflect.DeepEqual(got, d) {
		t.Fatalf("JSON record: %v\n got %+v\nwant %+v", err, got, d)
	}
	// The strings read are the record's own copy: bbolt's value is valid only within its
	// transaction.
	bin := encodeDelivery(&d)
	got = Delivery{}
	if err := decodeDelivery(bin, &got); err != nil {
		t.Fatal(err)
	}
	for i := range bin {
		bin[i] = 'x'
	}
	if !reflect.DeepEqual(got, d) {
		t.Fatalf("the delivery read changed with the bytes it was read from:\n got %+v\nwant %+v", got, d)
	}
	bin = encodeDelivery(&d)
	for n := 0; n < len(bin); n++ {
		if err := decodeDelivery(bin[:n], &got); err == nil {
			t.Fatalf("a record cut to %d of %d bytes decoded without an error", n, len(bin))
		}
	}
}

func FuzzDecodeDelivery(f *testing.F) {
	d := fullDelivery()
	f.Add(encodeDelivery(&d))
	f.Fuzz(func(t *testing.T, raw []byte) {
		var got Delivery
		if decodeDelivery(raw, &got) != nil || raw[0] != deliveryV1 {
			return
		}
		var again Delivery
		if err := decodeDelivery(encodeDelivery(&got), &again); err != nil || !reflect.DeepEqual(again, got) {
			t.Fatalf("re-encoded record: %v\n%+v\n%+v", err, again, got)
		}
	})
}

func BenchmarkDecodeDelivery(b *testing.B) {
	d := fullDelivery()
	raw := encodeDelivery(&d)
	b.ReportAllocs()
	for b.Loop() {
		var got Delivery
		if err := decodeDelivery(raw, &got); err != nil {
			b.Fatal(err)
		}
	}
}
