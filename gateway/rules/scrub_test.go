package rules

import (
	"reflect"
	"strings"
	"testing"

	"github.com/deskgate/deskgate/gateway/model"
)

// testScrub takes ann@x.test out, finding her address as it is written (the store also finds
// the other forms an address takes).
func testScrub() Scrub {
	const ann, marker = "ann@x.test", "erased-1@erased.invalid"
	return Scrub{
		Marker:   marker,
		Same:     func(a string) bool { return strings.EqualFold(strings.TrimSpace(a), ann) },
		Contains: func(s string) bool { return strings.Contains(s, ann) },
		Replace:  func(s string) string { return strings.ReplaceAll(s, ann, marker) },
	}
}

func TestScrubTicketRemovesThePersonAndReplacesTheAddress(t *testing.T) {
	sc := testScrub()
	tk := &model.Ticket{
		Subject:   "about ann@x.test",
		CCs:       []model.Person{{Email: "ANN@x.test"}, {Email: "bob@x.test"}},
		Followers: []model.Person{{Email: "ann@x.test"}},
		Masks:     map[string]int{"ann@x.test": 1, "bob@x.test": 2},
		Welcomed:  map[string]bool{"ann@x.test": true},
		DeliveryFailures: []model.DeliveryFailure{
			{Email: "ann@x.test", Reply: "550 ann@x.test unknown"},
			{Email: "bob@x.test", Reply: "550 relaying for ann@x.test denied"},
			{Email: "carl@x.test", Reply: "550 no"},
		},
	}
	got := sc.Ticket(tk)
	if !got.Changed || !reflect.DeepEqual(got.RemovedAs, []string{"CC", "follower"}) {
		t.Errorf("decision %+v", got)
	}
	m := sc.Marker
	want := &model.Ticket{
		Subject:   "about " + m,
		CCs:       []model.Person{{Email: "bob@x.test"}},
		Followers: []model.Person{},
		Masks:     map[string]int{"bob@x.test": 2},
		Welcomed:  map[string]bool{},
		DeliveryFailures: []model.DeliveryFailure{
			{Email: m, Reply: "550 " + m + " unknown"},
			{Email: m, Reply: "550 relaying for " + m + " denied"},
			{Email: "carl@x.test", Reply: "550 no"},
		},
	}
	if !reflect.DeepEqual(tk, want) {
		t.Errorf("scrubbed ticket\n%+v\nwant\n%+v", tk, want)
	}
	if again := sc.Ticket(tk); again.Changed || len(again.RemovedAs) != 0 {
		t.Errorf("a scrubbed ticket changed again: %+v", again)
	}
}

func TestScrubCommentErasesWhatThePersonWrote(t *testing.T) {
	sc := testScrub()
	m := sc.Marker
	mine := &model.Comment{
		Author: "ann@x.test", AuthorName: "Ann", Body: "hello", Subject: "hi", EnvelopeFrom: "ann@x.test",
		Attachments:           []model.Attachment{{}},
		To:                    []model.Person{{Email: "support@example.com"}},
		Cc:                    []model.Person{{Name: "Ann", Email: "ann@x.test"}},
		Recipients:            []string{"ann@x.test", "support@example.com"},
		Notified:              []model.Notified{{Email: "ann@x.test", Reply: "250 ann@x.test ok"}},
		Trace:                 []model.TraceStep{{Detail: "From ann@x.test"}},
		AuthenticationResults: "smtp.mailfrom=ann@x.test",
	}
	if !sc.Comment(mine) {
		t.Error("ann's own comment is not hers")
	}
	want := &model.Comment{
		Author: m, Body: ErasedText, Subject: ErasedText, EnvelopeFrom: m,
		To:                    []model.Person{{Email: "support@example.com"}},
		Cc:                    []model.Person{{Email: m}},
		Recipients:            []string{m, "support@example.com"},
		Notified:              []model.Notified{{Email: m, Reply: "250 " + m + " ok"}},
		Trace:                 []model.TraceStep{{Detail: "From " + m}},
		AuthenticationResults: "smtp.mailfrom=" + m,
	}
	if !reflect.DeepEqual(mine, want) {
		t.Errorf("her comment\n%+v\nwant\n%+v", mine, want)
	}

	other := &model.Comment{Author: "bob@x.test", AuthorName: "Bob", Body: "ann@x.test said so", Subject: "re", Attachments: []model.Attachment{{}}}
	if sc.Comment(other) {
		t.Error("bob's comment counted as ann's")
	}
	if other.Author != "bob@x.test" || other.AuthorName != "Bob" || other.Body != m+" said so" || other.Subject != "re" || other.EnvelopeFrom != "" || len(other.Attachments) != 1 {
		t.Errorf("bob's comment: %+v", other)
	}
}

func TestScrubEventReplacesTheAddress(t *testing.T) {
	sc := testScrub()
	m := sc.Marker
	e := &model.Event{Detail: "CC ann@x.test added", Notified: []model.Notified{{Email: "ann@x.test"}, {Email: "bob@x.test"}}, Trace: []model.TraceStep{{Detail: "ann@x.test"}}}
	sc.Event(e)
	want := &model.Event{Detail: "CC " + m + " added", Notified: []model.Notified{{Email: m}, {Email: "bob@x.test"}}, Trace: []model.TraceStep{{Detail: m}}}
	if !reflect.DeepEqual(e, want) {
		t.Errorf("event %+v, want %+v", e, want)
	}
}

func TestScrubDeliveryDropsThePersonStillWaiting(t *testing.T) {
	sc := testScrub()
	m := sc.Marker
	for _, tc := range []struct {
		name           string
		state          model.DeliveryState
		recipients     []model.DeliveryRecipient
		lastReply      string
		wantState      model.DeliveryState
		wantRecipients []model.DeliveryRecipient
		wantReply      string
		dropped        int
		changed        bool
	}{{
		name:           "queued for her alone: dropped",
		state:          model.DeliveryQueued,
		recipients:     []model.DeliveryRecipient{{Email: "ann@x.test", State: model.DeliveryQueued, Reply: "451 ann@x.test later"}},
		lastReply:      "451 ann@x.test later",
		wantState:      model.DeliveryDropped,
		wantRecipients: []model.DeliveryRecipient{{Email: m, State: model.DeliveryDropped, Reply: "erased"}},
		wantReply:      "451 " + m + " later",
		dropped:        1, changed: true,
	}, {
		name:           "queued for her and bob: bob still waits",
		state:          model.DeliveryQueued,
		recipients:     []model.DeliveryRecipient{{Email: "ann@x.test", State: model.DeliveryQueued}, {Email: "bob@x.test", State: model.DeliveryQueued}},
		wantState:      model.DeliveryQueued,
		wantRecipients: []model.DeliveryRecipient{{Email: m, State: model.DeliveryDropped, Reply: "erased"}, {Email: "bob@x.test", State: model.DeliveryQueued}},
		dropped:        1, changed: true,
	}, {
		name:           "sent to her: the address replaced",
		state:          model.DeliverySent,
		recipients:     []model.DeliveryRecipient{{Email: "ann@x.test", State: model.DeliverySent, Reply: "250 ann@x.test ok"}},
		wantState:      model.DeliverySent,
		wantRecipients: []model.DeliveryRecipient{{Email: m, State: model.DeliverySent, Reply: "250 " + m + " ok"}},
		changed:        true,
	}, {
		name:           "not hers",
		state:          model.DeliveryQueued,
		recipients:     []model.DeliveryRecipient{{Email: "bob@x.test", State: model.DeliveryQueued}},
		wantState:      model.DeliveryQueued,
		wantRecipients: []model.DeliveryRecipient{{Email: "bob@x.test", State: model.DeliveryQueued}},
	}} {
		state, reply := tc.state, tc.lastReply
		dropped, changed := sc.Delivery(&state, tc.recipients, &reply)
		if dropped != tc.dropped || changed != tc.changed || state != tc.wantState || reply != tc.wantReply || !reflect.DeepEqual(tc.recipients, tc.wantRecipients) {
			t.Errorf("%s: dropped %d changed %v state %s reply %q recipients %+v", tc.name, dropped, changed, state, reply, tc.recipients)
		}
	}
}
