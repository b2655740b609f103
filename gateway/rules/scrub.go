package rules

import "github.com/deskgate/deskgate/gateway/model"

// ErasedText stands where an erased person's text was.
const ErasedText = "[erased]"

// Scrub takes one person out of a ticket they are on but did not open (ScrubPerson): it says
// which records and fields are the person's, and what stands in their place. Finding the
// address in stored text, in every form and case it may be written in, is the caller's (the
// store's): Same, Contains and Replace. Each method changes the record it is given, a copy the
// caller owns and writes back when it changed.
type Scrub struct {
	// Marker stands where the person's address was.
	Marker string
	// Same reports whether a stored address (a participant, an author) is the person's.
	Same func(address string) bool
	// Contains reports whether the person's address stands in text.
	Contains func(text string) bool
	// Replace puts Marker wherever the person's address stands in text.
	Replace func(text string) string
}

// TicketScrub is what Scrub.Ticket did to a ticket record.
type TicketScrub struct {
	// RemovedAs names, in order, what each entry the person was removed from the ticket as was
	// ("CC", "follower").
	RemovedAs []string
	// Changed says whether the record changed.
	Changed bool
}

// Ticket takes the person off tk: out of its CCs and followers, its masks and welcomes; in its
// delivery failures and its subject their address becomes the marker.
func (s Scrub) Ticket(tk *model.Ticket) TicketScrub {
	var out TicketScrub
	keep := func(list []model.Person, as string) []model.Person {
		kept := list[:0]
		for _, p := range list {
			if s.Same(p.Email) {
				out.RemovedAs = append(out.RemovedAs, as)
				out.Changed = true
				continue
			}
			kept = append(kept, p)
		}
		return kept
	}
	tk.CCs = keep(tk.CCs, "CC")
	tk.Followers = keep(tk.Followers, "follower")
	for k := range tk.Masks {
		if s.Same(k) {
			delete(tk.Masks, k)
			out.Changed = true
		}
	}
	for k := range tk.Welcomed {
		if s.Same(k) {
			delete(tk.Welcomed, k)
			out.Changed = true
		}
	}
	for i, f := range tk.DeliveryFailures {
		if s.Same(f.Email) || s.Contains(f.Reply) {
			tk.DeliveryFailures[i].Email, tk.DeliveryFailures[i].Reply = s.Marker, s.Replace(f.Reply)
			out.Changed = true
		}
	}
	if subject := s.Replace(tk.Subject); subject != tk.Subject {
		tk.Subject, out.Changed = subject, true
	}
	return out
}

// Comment takes the person out of c, and says whether they wrote it (authored). What they wrote
// is theirs: its author becomes the marker, its text ErasedText and its attachments go (the
// caller deletes their bytes, and the original mail, too). In a comment someone else wrote only
// their address is replaced. In either, their address becomes the marker among the comment's
// participants, recipients, notifications, traces and authentication results.
func (s Scrub) Comment(c *model.Comment) (authored bool) {
	if s.Same(c.Author) {
		c.Author, c.AuthorName, c.Body, c.Subject = s.Marker, "", ErasedText, ErasedText
		if c.EnvelopeFrom != "" {
			c.EnvelopeFrom = s.Marker
		}
		c.Attachments = nil
		authored = true
	} else {
		c.Body, c.Subject, c.EnvelopeFrom = s.Replace(c.Body), s.Replace(c.Subject), s.Replace(c.EnvelopeFrom)
	}
	s.people(c.To)
	s.people(c.Cc)
	for i, r := range c.Recipients {
		c.Recipients[i] = s.Replace(r)
	}
	s.notified(c.Notified)
	s.traced(c.Trace)
	c.AuthenticationResults = s.Replace(c.AuthenticationResults)
	return authored
}

// Event replaces the person's address in e's detail, notifications and traces.
func (s Scrub) Event(e *model.Event) {
	e.Detail = s.Replace(e.Detail)
	s.notified(e.Notified)
	s.traced(e.Trace)
}

// Delivery takes the person out of one delivery: as a recipient their address becomes the
// marker, and one still waiting to be sent to is dropped instead ("erased"), as is the whole
// delivery (state) once it was queued and nobody is left waiting; in its last reply their
// address is replaced. It returns how many recipients were dropped, and whether the record
// changed.
func (s Scrub) Delivery(state *model.DeliveryState, recipients []model.DeliveryRecipient, lastReply *string) (dropped int, changed bool) {
	waiting := 0
	for i, r := range recipients {
		if s.Same(r.Email) {
			recipients[i].Email, recipients[i].Reply = s.Marker, s.Replace(r.Reply)
			if r.State == model.DeliveryQueued {
				recipients[i].State, recipients[i].Reply = model.DeliveryDropped, "erased"
				dropped++
			}
			changed = true
		}
		if recipients[i].State == model.DeliveryQueued {
			waiting++
		}
	}
	if *state == model.DeliveryQueued && waiting == 0 && changed {
		*state = model.DeliveryDropped
	}
	if reply := s.Replace(*lastReply); reply != *lastReply {
		*lastReply, changed = reply, true
	}
	return dropped, changed
}

// people replaces the person, in a comment's To or Cc, with the marker and no name.
func (s Scrub) people(list []model.Person) {
	for i := range list {
		if s.Same(list[i].Email) {
			list[i] = model.Person{Email: s.Marker}
		}
	}
}

func (s Scrub) notified(list []model.Notified) {
	for i := range list {
		if s.Same(list[i].Email) {
			list[i].Email, list[i].Reply = s.Marker, s.Replace(list[i].Reply)
		}
	}
}

func (s Scrub) traced(list []model.TraceStep) {
	for i := range list {
		list[i].Detail = s.Replace(list[i].Detail)
	}
}
