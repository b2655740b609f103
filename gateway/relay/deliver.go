package relay

import (
	"log/slog"
	"strings"
	"time"

	"github.com/deskgate/deskgate/config"
)

// A Deliverer hands messages over to where the relay sends them: the SMTP upstream
// (upstream), or a local Maildir (upstream.address "maildir:DIR"). SetConfig picks one, and
// nothing else in the worker asks which it has; chasquid's courier.Courier is the model.
type Deliverer interface {
	// Deliver hands one delivery over and returns each recipient's result in the order of
	// e.Rcpts: nil once accepted, an *smtp.SMTPError for a refusal (5xx fails the recipient
	// for good), any other error to try again later. The DKIM signature covers the message
	// as it is handed over, after whatever the Deliverer changed in it.
	Deliver(e Envelope) []error
	// Via names where mail goes, for the log and the "accepted by" reply.
	Via() string
	// Parallel is how many deliveries may be handed over at once.
	Parallel() int
	// Recover clears what a crash left behind; Run calls it once, before its first delivery.
	Recover(log *slog.Logger)
	// CloseIdle ends the connections unused for older or longer (every one for 0): an upstream
	// may time them out, and a stopping worker leaves none behind.
	CloseIdle(older time.Duration)
	// Close retires a Deliverer that a new config replaced: its idle connections end now,
	// the ones in use once their delivery is done.
	Close()
}

// chainer is a Deliverer that can hand several deliveries over one after another on one
// session, sharing the waits for the upstream between them.
type chainer interface {
	// DeliverChain is Deliver for each of es, in order; the results are Deliver's, one slice
	// per envelope.
	DeliverChain(es []Envelope) [][]error
}

// Envelope is one attempt of one delivery as a Deliverer gets it.
type Envelope struct {
	// ID is the delivery's: a Maildir names its files after it.
	ID uint64
	// MaybeDone says the delivery may have been handed over before (by this process, or by
	// one that died before recording it): a Maildir looks for the copy it would write.
	MaybeDone bool
	From      string
	Rcpts     []string
	// Msg is the message as queued, unsigned: the Deliverer signs what it sends.
	Msg []byte
}

// newDeliverer is the Deliverer for cfg's upstream.address, signing with sign (nil: no DKIM);
// now is the worker's clock.
func newDeliverer(cfg *config.Config, sign *signer, now func() time.Time) Deliverer {
	if dir, ok := strings.CutPrefix(cfg.Upstream.Address, config.MaildirPrefix); ok {
		return &Maildir{Dir: dir, Hostname: cfg.Hostname, sign: sign}
	}
	return newUpstream(cfg, sign, now)
}

// failAll gives each of n recipients err.
func failAll(n int, err error) []error {
	errs := make([]error, n)
	for i := range errs {
		errs[i] = err
	}
	return errs
}

// failRest gives err to each recipient of errs that has no error yet, and returns errs.
func failRest(errs []error, err error) []error {
	for i := range errs {
		if errs[i] == nil {
			errs[i] = err
		}
	}
	return errs
}
